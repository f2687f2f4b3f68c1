//! [`OffsetStore`]: consumer groups' committed offsets.

use super::Catalog;
use crate::sql::{insert_many, read, write, Value};
use crate::{params, CommittedOffset, Fence, OffsetStore, Result};

/// A committed offset from the columns starting at `at` (topic,
/// partition, offset, leader epoch, metadata, commit time).
fn offset_from_row(r: &crate::sql::Row, at: usize) -> Result<CommittedOffset> {
    Ok(CommittedOffset {
        topic: r.text(at)?,
        partition: r.int32(at + 1)?,
        offset: r.int(at + 2)?,
        leader_epoch: r.int32(at + 3)?,
        metadata: r.opt_string_or_bytes(at + 4)?,
        commit_ms: r.int(at + 5)?,
    })
}

impl OffsetStore for Catalog {
    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[CommittedOffset],
        fence: Option<Fence>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<Value>> = offsets
            .iter()
            .map(|o| {
                vec![
                    group.into(),
                    o.topic.as_str().into(),
                    o.partition.into(),
                    o.offset.into(),
                    o.leader_epoch.into(),
                    // Bytes: Kafka strings may hold NUL (see schema v3).
                    o.metadata
                        .as_ref()
                        .map(|m| Value::Bytes(m.as_bytes().to_vec()))
                        .unwrap_or(Value::Null),
                    o.commit_ms.into(),
                ]
            })
            .collect();
        write(&*self.db, |tx| {
            if let Some(f) = &fence {
                super::brokers::check_fence(tx, f)?;
            }
            insert_many(
                tx,
                "group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms)",
                "ON CONFLICT (group_id, topic, partition) DO UPDATE SET
                   committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                   metadata = excluded.metadata, commit_ms = excluded.commit_ms",
                &rows,
            )
        })
    }

    fn group_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_ms
                 FROM group_offsets WHERE group_id = $1 ORDER BY topic, partition",
                params![group],
            )
        })?;
        rows.iter().map(|r| offset_from_row(r, 0)).collect()
    }

    fn all_offsets(&self) -> Result<Vec<(String, CommittedOffset)>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms
                 FROM group_offsets ORDER BY group_id, topic, partition",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, offset_from_row(r, 1)?)))
            .collect()
    }

    fn offset_groups(&self) -> Result<Vec<String>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id",
                &[],
            )
        })?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    fn delete_offsets(&self, group: &str, only: Option<&[(String, i32)]>) -> Result<()> {
        write(&*self.db, |tx| {
            match only {
                None => {
                    tx.execute(
                        "DELETE FROM group_offsets WHERE group_id = $1",
                        params![group],
                    )?;
                }
                Some(pairs) => {
                    for (t, p) in pairs {
                        tx.execute(
                            "DELETE FROM group_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
                            params![group, t.as_str(), *p],
                        )?;
                    }
                }
            }
            Ok(())
        })
    }
}
