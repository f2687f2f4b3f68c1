//! [`ReplayLog`]: which dead-letter records were replayed, and where to.

use super::Catalog;
use crate::sql::{insert_many, read, write, Value};
use crate::{params, ReplayLog, ReplayRecord, Result};

impl ReplayLog for Catalog {
    fn record_replays(&self, replays: &[ReplayRecord]) -> Result<()> {
        if replays.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<Value>> = replays
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
            .collect();
        write(&*self.db, |tx| {
            insert_many(
                tx,
                "dlq_replays (dlq_topic, partition, dlq_offset, target_topic, target_partition, target_offset, replayed_ms)",
                "ON CONFLICT (dlq_topic, partition, dlq_offset, replayed_ms) DO UPDATE SET
                   target_topic = excluded.target_topic, target_partition = excluded.target_partition,
                   target_offset = excluded.target_offset",
                &rows,
            )
        })
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
}
