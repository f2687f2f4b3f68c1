//! [`BrokerRegistry`]: the brokers of a cluster and their leases, judged by
//! the database's clock so that brokers' clocks need not agree.

use super::Catalog;
use crate::changes::MetaChange;
use crate::sql::{read, write, Tx};
use crate::{params, BrokerRecord, BrokerRegistry, CatalogError, Fence, JobRecord, Result};

/// Allocated broker ids start above the range operators set by hand, as
/// Kafka's `reserved.broker.max.id` (1000) does.
pub const FIRST_ALLOCATED_BROKER_ID: i64 = 1001;

fn broker_from_row(r: &crate::sql::Row) -> Result<BrokerRecord> {
    Ok(BrokerRecord {
        broker_id: r.int32(0)?,
        host: r.text(1)?,
        port: r.int32(2)?,
        rack: r.opt_text(3)?,
        epoch: r.int(4)?,
        lease_expires_ms: r.int(5)?,
        lease_age_ms: r.int(6)?,
    })
}

/// The columns [`broker_from_row`] reads, the last one computed against
/// the database's clock (`{now}` is replaced by [`crate::sql::Dialect::now_ms`]).
const BROKER_COLUMNS: &str =
    "broker_id, host, port, rack, epoch, lease_expires_ms, {now} - renewed_ms";

fn broker_columns(now: &str) -> String {
    BROKER_COLUMNS.replace("{now}", now)
}

/// Inside a write: fails with [`CatalogError::Fenced`] unless the fence's
/// broker holds an unexpired lease under its epoch (the row stays locked
/// against a takeover until the transaction ends).
pub(crate) fn check_fence(tx: &mut dyn Tx, fence: &Fence) -> Result<()> {
    let now = tx.dialect().now_ms();
    let sql = format!(
        "SELECT epoch, lease_expires_ms > {now} FROM brokers WHERE broker_id = $1{}",
        tx.dialect().for_share()
    );
    match tx.query_opt(&sql, params![fence.broker_id])? {
        Some(r) if r.int(0)? == fence.epoch && r.int(1)? != 0 => Ok(()),
        Some(r) if r.int(0)? == fence.epoch => Err(CatalogError::Fenced(format!(
            "broker {}'s lease (epoch {}) ran out",
            fence.broker_id, fence.epoch
        ))),
        Some(r) => Err(CatalogError::Fenced(format!(
            "broker {} registered again (epoch {}, this write holds {})",
            fence.broker_id,
            r.int(0)?,
            fence.epoch
        ))),
        None => Err(CatalogError::Fenced(format!(
            "broker {} is not registered",
            fence.broker_id
        ))),
    }
}

/// Whether `broker_id` still holds its lease under `epoch`.
fn holder_alive(tx: &mut dyn Tx, broker_id: i32, epoch: i64) -> Result<bool> {
    let now = tx.dialect().now_ms();
    Ok(tx
        .query_opt(
            &format!(
                "SELECT 1 FROM brokers WHERE broker_id = $1 AND epoch = $2 AND lease_expires_ms > {now}"
            ),
            params![broker_id, epoch],
        )?
        .is_some())
}

impl BrokerRegistry for Catalog {
    fn allocate_broker_id(&self) -> Result<i32> {
        let id = write(&*self.db, |tx| {
            tx.query_opt(
                "INSERT INTO counters (name, value) VALUES ('broker_id', $1)
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                params![FIRST_ALLOCATED_BROKER_ID],
            )?
            .ok_or_else(|| CatalogError::Corrupt("no broker id returned".into()))?
            .int(0)
        })?;
        i32::try_from(id).map_err(|_| CatalogError::Corrupt(format!("broker id {id} overflows")))
    }

    fn register_broker(&self, b: &BrokerRecord, lease_ms: i64) -> Result<BrokerRecord> {
        write(&*self.db, |tx| {
            let now = tx.dialect().now_ms();
            let sql = format!(
                "SELECT host, port, epoch, lease_expires_ms, {now} FROM brokers WHERE broker_id = $1{}",
                tx.dialect().for_update()
            );
            let mut epoch = 1;
            if let Some(r) = tx.query_opt(&sql, params![b.broker_id])? {
                let (host, port) = (r.text(0)?, r.int32(1)?);
                let live = r.int(3)? > r.int(4)?;
                // Another process at another address holds this id and is
                // alive: two brokers with one id would each think it owns
                // the other's groups.
                if live && (host != b.host || port != b.port) {
                    return Err(CatalogError::Conflict(format!(
                        "broker id {} is held by a live broker at {host}:{port}; choose another --broker-id or wait for its lease to run out",
                        b.broker_id
                    )));
                }
                epoch = r.int(2)? + 1;
            }
            let row = tx
                .query_opt(
                    &format!(
                        "INSERT INTO brokers (broker_id, host, port, rack, epoch, started_ms, lease_expires_ms, renewed_ms)
                         VALUES ($1, $2, $3, $4, $5, {now}, {now} + $6, {now})
                         ON CONFLICT (broker_id) DO UPDATE SET host = excluded.host, port = excluded.port,
                           rack = excluded.rack, epoch = excluded.epoch, started_ms = excluded.started_ms,
                           lease_expires_ms = excluded.lease_expires_ms, renewed_ms = excluded.renewed_ms
                         RETURNING {}", broker_columns(now)
                    ),
                    params![b.broker_id, b.host.as_str(), b.port, b.rack.clone(), epoch, lease_ms],
                )?
                .ok_or_else(|| CatalogError::Corrupt("registration returned nothing".into()))?;
            MetaChange::Brokers.send(tx)?;
            broker_from_row(&row)
        })
    }

    fn renew_lease(&self, broker_id: i32, epoch: i64, lease_ms: i64) -> Result<bool> {
        write(&*self.db, |tx| {
            let now = tx.dialect().now_ms();
            let n = tx.execute(
                &format!(
                    "UPDATE brokers SET lease_expires_ms = {now} + $3, renewed_ms = {now}
                     WHERE broker_id = $1 AND epoch = $2 AND lease_expires_ms > {now}"
                ),
                params![broker_id, epoch, lease_ms],
            )?;
            Ok(n == 1)
        })
    }

    fn deregister_broker(&self, broker_id: i32, epoch: i64) -> Result<()> {
        write(&*self.db, |tx| {
            tx.execute(
                "DELETE FROM brokers WHERE broker_id = $1 AND epoch = $2",
                params![broker_id, epoch],
            )?;
            MetaChange::Brokers.send(tx)
        })
    }

    fn claim_store(&self, token: &str) -> Result<String> {
        write(&*self.db, |tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('store_token', $1) ON CONFLICT (key) DO NOTHING",
                params![token],
            )?;
            tx.query_opt("SELECT value FROM meta WHERE key = 'store_token'", &[])?
                .ok_or_else(|| CatalogError::Corrupt("the store token vanished".into()))?
                .text(0)
        })
    }

    fn claim_job(&self, name: &str, fence: Fence) -> Result<bool> {
        write(&*self.db, |tx| {
            check_fence(tx, &fence)?;
            let lock = tx.dialect().for_update();
            let job = tx.query_opt(
                &format!("SELECT broker_id, epoch FROM jobs WHERE name = $1{lock}"),
                params![name],
            )?;
            if let Some(j) = &job {
                let (holder, epoch) = (j.int32(0)?, j.int(1)?);
                if holder == fence.broker_id && epoch == fence.epoch {
                    return Ok(true);
                }
                if holder_alive(tx, holder, epoch)? {
                    return Ok(false);
                }
            }
            let now = tx.dialect().now_ms();
            tx.execute(
                &format!(
                    "INSERT INTO jobs (name, broker_id, epoch, since_ms) VALUES ($1, $2, $3, {now})
                     ON CONFLICT (name) DO UPDATE SET broker_id = excluded.broker_id,
                       epoch = excluded.epoch, since_ms = excluded.since_ms"
                ),
                params![name, fence.broker_id, fence.epoch],
            )?;
            Ok(true)
        })
    }

    fn release_job(&self, name: &str, fence: Fence) -> Result<()> {
        write(&*self.db, |tx| {
            tx.execute(
                "DELETE FROM jobs WHERE name = $1 AND broker_id = $2 AND epoch = $3",
                params![name, fence.broker_id, fence.epoch],
            )?;
            Ok(())
        })
    }

    fn jobs(&self) -> Result<Vec<JobRecord>> {
        read(&*self.db, |tx| {
            let rows = tx.query("SELECT name, broker_id, epoch FROM jobs ORDER BY name", &[])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let (broker_id, epoch) = (r.int32(1)?, r.int(2)?);
                out.push(JobRecord {
                    name: r.text(0)?,
                    broker_id,
                    epoch,
                    held: holder_alive(tx, broker_id, epoch)?,
                });
            }
            Ok(out)
        })
    }

    fn live_brokers(&self) -> Result<Vec<BrokerRecord>> {
        let rows = read(&*self.db, |tx| {
            let now = tx.dialect().now_ms();
            tx.query(
                &format!(
                    "SELECT {} FROM brokers WHERE lease_expires_ms > {now} ORDER BY broker_id",
                    broker_columns(now)
                ),
                &[],
            )
        })?;
        rows.iter().map(broker_from_row).collect()
    }
}
