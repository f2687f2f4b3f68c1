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

    fn set_user_attribute(&self, user: &str, attr: &str, value: Option<&str>) -> Result<()> {
        write(&*self.db, |tx| {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO user_attributes (username, attr, value) VALUES ($1, $2, $3)
                     ON CONFLICT (username, attr) DO UPDATE SET value = excluded.value",
                    params![user, attr, v],
                )?,
                None => tx.execute(
                    "DELETE FROM user_attributes WHERE username = $1 AND attr = $2",
                    params![user, attr],
                )?,
            };
            Ok(())
        })
    }

    fn user_attributes(&self, user: &str) -> Result<Vec<(String, String)>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT attr, value FROM user_attributes WHERE username = $1 ORDER BY attr",
                params![user],
            )
        })?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    fn all_user_attributes(&self) -> Result<Vec<(String, String, String)>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT username, attr, value FROM user_attributes ORDER BY username, attr",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
            .collect()
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
