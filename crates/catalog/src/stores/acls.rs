//! [`AclStore`]: authorization rules (Kafka's ACL bindings).

use super::Catalog;
use crate::changes::MetaChange;
use crate::sql::{read, write, Row, Value};
use crate::{AclRecord, AclStore, Result};

const COLUMNS: &str =
    "resource_type, resource_name, pattern_type, principal, host, operation, permission";

/// A rule's columns, in `COLUMNS` order (together they are its key).
fn values(a: &AclRecord) -> Vec<Value> {
    vec![
        (a.resource_type as i64).into(),
        a.resource_name.as_str().into(),
        (a.pattern_type as i64).into(),
        a.principal.as_str().into(),
        a.host.as_str().into(),
        (a.operation as i64).into(),
        (a.permission as i64).into(),
    ]
}

fn record(r: &Row) -> Result<AclRecord> {
    Ok(AclRecord {
        resource_type: r.int(0)? as i8,
        resource_name: r.text(1)?,
        pattern_type: r.int(2)? as i8,
        principal: r.text(3)?,
        host: r.text(4)?,
        operation: r.int(5)? as i8,
        permission: r.int(6)? as i8,
    })
}

impl AclStore for Catalog {
    fn put_acls(&self, acls: &[AclRecord]) -> Result<()> {
        write(&*self.db, |tx| {
            for a in acls {
                tx.execute(
                    &format!(
                        "INSERT INTO acls ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT DO NOTHING"
                    ),
                    &values(a),
                )?;
            }
            MetaChange::Acls.send(tx)
        })
    }

    fn delete_acls(&self, acls: &[AclRecord]) -> Result<usize> {
        write(&*self.db, |tx| {
            let mut n = 0;
            for a in acls {
                n += tx.execute(
                    "DELETE FROM acls WHERE resource_type = $1 AND resource_name = $2
                       AND pattern_type = $3 AND principal = $4 AND host = $5
                       AND operation = $6 AND permission = $7",
                    &values(a),
                )? as usize;
            }
            if n > 0 {
                MetaChange::Acls.send(tx)?;
            }
            Ok(n)
        })
    }

    fn all_acls(&self) -> Result<Vec<AclRecord>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                &format!("SELECT {COLUMNS} FROM acls ORDER BY {COLUMNS}"),
                &[],
            )
        })?;
        rows.iter().map(record).collect()
    }
}
