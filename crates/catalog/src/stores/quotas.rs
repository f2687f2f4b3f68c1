//! [`QuotaStore`]: client quotas by entity and key.

use super::Catalog;
use crate::changes::MetaChange;
use crate::sql::{read, write};
use crate::{params, CatalogError, QuotaStore, Result};

impl QuotaStore for Catalog {
    fn alter_quotas(&self, entity: &str, changes: &[(String, Option<f64>)]) -> Result<()> {
        write(&*self.db, |tx| {
            for (key, value) in changes {
                match value {
                    Some(v) => tx.execute(
                        "INSERT INTO client_quotas (entity, quota_key, value) VALUES ($1, $2, $3)
                         ON CONFLICT (entity, quota_key) DO UPDATE SET value = excluded.value",
                        params![entity, key.as_str(), v.to_string()],
                    )?,
                    None => tx.execute(
                        "DELETE FROM client_quotas WHERE entity = $1 AND quota_key = $2",
                        params![entity, key.as_str()],
                    )?,
                };
            }
            MetaChange::Quotas.send(tx)
        })
    }

    fn all_quotas(&self) -> Result<Vec<(String, String, f64)>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT entity, quota_key, value FROM client_quotas ORDER BY entity, quota_key",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let value = r.text(2)?;
                let v = value.parse::<f64>().map_err(|_| {
                    CatalogError::Corrupt(format!("quota value {value:?} is not a number"))
                })?;
                Ok((r.text(0)?, r.text(1)?, v))
            })
            .collect()
    }
}
