//! [`CredentialStore`]: SASL users' SCRAM credentials.

use super::Catalog;
use crate::sql::{read, write, Row};
use crate::{params, CredentialRecord, CredentialStore, Result};

const COLUMNS: &str = "username, mechanism, salt, iterations, stored_key, server_key, updated_ms";

fn record(r: &Row) -> Result<CredentialRecord> {
    Ok(CredentialRecord {
        user: r.text(0)?,
        mechanism: r.text(1)?,
        salt: r.text(2)?,
        iterations: r.int(3)?,
        stored_key: r.text(4)?,
        server_key: r.text(5)?,
        updated_ms: r.int(6)?,
    })
}

impl CredentialStore for Catalog {
    fn put_credential(&self, c: &CredentialRecord) -> Result<()> {
        write(&*self.db, |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO scram_credentials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (username, mechanism) DO UPDATE SET salt = excluded.salt,
                       iterations = excluded.iterations, stored_key = excluded.stored_key,
                       server_key = excluded.server_key, updated_ms = excluded.updated_ms"
                ),
                params![
                    c.user.as_str(),
                    c.mechanism.as_str(),
                    c.salt.as_str(),
                    c.iterations,
                    c.stored_key.as_str(),
                    c.server_key.as_str(),
                    c.updated_ms
                ],
            )?;
            Ok(())
        })
    }

    fn delete_credentials(&self, user: &str, mechanism: Option<&str>) -> Result<usize> {
        write(&*self.db, |tx| {
            let n = match mechanism {
                Some(m) => tx.execute(
                    "DELETE FROM scram_credentials WHERE username = $1 AND mechanism = $2",
                    params![user, m],
                )?,
                None => tx.execute(
                    "DELETE FROM scram_credentials WHERE username = $1",
                    params![user],
                )?,
            };
            Ok(n as usize)
        })
    }

    fn credentials(&self, user: &str) -> Result<Vec<CredentialRecord>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                &format!("SELECT {COLUMNS} FROM scram_credentials WHERE username = $1 ORDER BY mechanism"),
                params![user],
            )
        })?;
        rows.iter().map(record).collect()
    }

    fn all_credentials(&self) -> Result<Vec<CredentialRecord>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                &format!("SELECT {COLUMNS} FROM scram_credentials ORDER BY username, mechanism"),
                &[],
            )
        })?;
        rows.iter().map(record).collect()
    }
}
