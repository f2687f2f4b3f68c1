//! [`ReplayLog`]: which dead-letter records were replayed, and where to;
//! and the replay batches begun but not yet known to have landed.

use super::Catalog;
use crate::sql::{insert_many, read, write, Row, Tx, Value};
use crate::{params, CatalogError, PendingReplay, ReplayLog, ReplayRecord, Result};

fn replay_rows(replays: &[ReplayRecord]) -> Vec<Vec<Value>> {
    replays
        .iter()
        .map(|r| {
            vec![
                r.dlq_topic.as_str().into(),
                r.partition.into(),
                r.offset.into(),
                r.target_topic.as_str().into(),
                r.target_partition.into(),
                r.target_offset.into(),
                r.replayed_ms.into(),
            ]
        })
        .collect()
}

fn insert_replays(tx: &mut dyn Tx, replays: &[ReplayRecord]) -> Result<()> {
    if replays.is_empty() {
        return Ok(());
    }
    insert_many(
        tx,
        "dlq_replays (dlq_topic, partition, dlq_offset, target_topic, target_partition, target_offset, replayed_ms)",
        "ON CONFLICT (dlq_topic, partition, dlq_offset, replayed_ms) DO UPDATE SET
           target_topic = excluded.target_topic, target_partition = excluded.target_partition,
           target_offset = excluded.target_offset",
        &replay_rows(replays),
    )
}

fn pending_from(r: &Row) -> Result<PendingReplay> {
    let offsets = r.text(3)?;
    let dlq_offsets = offsets
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<i64>()
                .map_err(|_| CatalogError::Corrupt(format!("pending replay offsets '{offsets}'")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PendingReplay {
        producer_id: r.int(0)?,
        dlq_topic: r.text(1)?,
        partition: r.int32(2)?,
        dlq_offsets,
        target_topic: r.text(4)?,
        target_partition: r.int32(5)?,
        created_ms: r.int(6)?,
    })
}

impl ReplayLog for Catalog {
    fn record_replays(&self, replays: &[ReplayRecord]) -> Result<()> {
        if replays.is_empty() {
            return Ok(());
        }
        write(&*self.db, |tx| insert_replays(tx, replays))
    }

    fn replayed(&self, dlq_topic: &str) -> Result<Vec<(i32, i64)>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT DISTINCT partition, dlq_offset FROM dlq_replays WHERE dlq_topic = $1",
                params![dlq_topic],
            )
        })?;
        rows.iter().map(|r| Ok((r.int32(0)?, r.int(1)?))).collect()
    }

    fn begin_replays(&self, pending: &[PendingReplay]) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<Value>> = pending
            .iter()
            .map(|p| {
                let offsets: Vec<String> = p.dlq_offsets.iter().map(|o| o.to_string()).collect();
                vec![
                    p.producer_id.into(),
                    p.dlq_topic.as_str().into(),
                    p.partition.into(),
                    offsets.join(",").into(),
                    p.target_topic.as_str().into(),
                    p.target_partition.into(),
                    p.created_ms.into(),
                ]
            })
            .collect();
        write(&*self.db, |tx| {
            insert_many(
                tx,
                "dlq_replay_pending (producer_id, dlq_topic, partition, dlq_offsets, target_topic, target_partition, created_ms)",
                "",
                &rows,
            )
        })
    }

    fn pending_replays(&self, dlq: Option<(&str, i32)>) -> Result<Vec<PendingReplay>> {
        const COLUMNS: &str = "producer_id, dlq_topic, partition, dlq_offsets, target_topic, target_partition, created_ms";
        let rows = read(&*self.db, |tx| {
            match dlq {
            Some((topic, partition)) => tx.query(
                &format!(
                    "SELECT {COLUMNS} FROM dlq_replay_pending WHERE dlq_topic = $1 AND partition = $2
                     ORDER BY created_ms, producer_id"
                ),
                params![topic, partition],
            ),
            None => tx.query(
                &format!("SELECT {COLUMNS} FROM dlq_replay_pending ORDER BY created_ms, producer_id"),
                &[],
            ),
        }
        })?;
        rows.iter().map(pending_from).collect()
    }

    fn finish_replays(&self, done: &[i64], replays: &[ReplayRecord]) -> Result<()> {
        write(&*self.db, |tx| {
            insert_replays(tx, replays)?;
            for id in done {
                tx.execute(
                    "DELETE FROM dlq_replay_pending WHERE producer_id = $1",
                    params![*id],
                )?;
            }
            Ok(())
        })
    }
}
