//! [`TxnStore`]: transaction coordinators' state, one row per transactional
//! id (its partitions, groups and pending offsets as a JSON detail column),
//! and the partitions' transaction index that uploads save.

use super::Catalog;
use crate::sql::{insert_many, read, write, Row, Tx, Value};
use crate::{
    params, CatalogError, PartitionTxns, Result, TxnIndexEntry, TxnOffset, TxnRecord, TxnState,
    TxnStore,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The variable-length part of a transaction's row.
#[derive(Serialize, Deserialize, Default)]
struct Detail {
    partitions: Vec<(String, i32)>,
    groups: Vec<String>,
}

const TXN_COLUMNS: &str =
    "transactional_id, producer_id, epoch, state, timeout_ms, started_ms, updated_ms, detail";

fn txn_from_row(r: &Row) -> Result<TxnRecord> {
    let state = r.text(3)?;
    let detail: Detail = serde_json::from_str(&r.text(7)?)
        .map_err(|e| CatalogError::Corrupt(format!("transaction detail: {e}")))?;
    Ok(TxnRecord {
        transactional_id: r.text(0)?,
        producer_id: r.int(1)?,
        epoch: i16::try_from(r.int(2)?)
            .map_err(|_| CatalogError::Corrupt("transaction epoch".into()))?,
        state: TxnState::from_name(&state)
            .ok_or_else(|| CatalogError::Corrupt(format!("transaction state {state:?}")))?,
        timeout_ms: r.int32(4)?,
        started_ms: r.int(5)?,
        updated_ms: r.int(6)?,
        partitions: detail.partitions,
        groups: detail.groups,
    })
}

impl TxnStore for Catalog {
    fn put_txn(&self, t: &TxnRecord) -> Result<()> {
        let detail = serde_json::to_string(&Detail {
            partitions: t.partitions.clone(),
            groups: t.groups.clone(),
        })
        .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        write(&*self.db, |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO transactions ({TXN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (transactional_id) DO UPDATE SET producer_id = excluded.producer_id,
                     epoch = excluded.epoch, state = excluded.state, timeout_ms = excluded.timeout_ms,
                     started_ms = excluded.started_ms, updated_ms = excluded.updated_ms,
                     detail = excluded.detail"
                ),
                params![
                    t.transactional_id.as_str(),
                    t.producer_id,
                    t.epoch,
                    t.state.name(),
                    t.timeout_ms,
                    t.started_ms,
                    t.updated_ms,
                    detail.as_str()
                ],
            )?;
            Ok(())
        })
    }

    fn txn(&self, transactional_id: &str) -> Result<Option<TxnRecord>> {
        read(&*self.db, |tx| {
            tx.query_opt(
                &format!("SELECT {TXN_COLUMNS} FROM transactions WHERE transactional_id = $1"),
                params![transactional_id],
            )
        })?
        .as_ref()
        .map(txn_from_row)
        .transpose()
    }

    fn put_txn_offsets(&self, transactional_id: &str, offsets: &[TxnOffset]) -> Result<()> {
        write(&*self.db, |tx| {
            for o in offsets {
                tx.execute(
                    "INSERT INTO txn_offsets (transactional_id, group_id, topic, partition,
                     committed_offset, leader_epoch, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (transactional_id, group_id, topic, partition) DO UPDATE SET
                     committed_offset = excluded.committed_offset,
                     leader_epoch = excluded.leader_epoch, metadata = excluded.metadata",
                    params![
                        transactional_id,
                        o.group.as_str(),
                        o.topic.as_str(),
                        o.partition,
                        o.offset,
                        o.leader_epoch,
                        o.metadata.as_deref()
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn txn_offsets(&self, transactional_id: &str) -> Result<Vec<TxnOffset>> {
        read(&*self.db, |tx| {
            tx.query(
                "SELECT group_id, topic, partition, committed_offset, leader_epoch, metadata
                 FROM txn_offsets WHERE transactional_id = $1
                 ORDER BY group_id, topic, partition",
                params![transactional_id],
            )
        })?
        .iter()
        .map(|r| {
            Ok(TxnOffset {
                group: r.text(0)?,
                topic: r.text(1)?,
                partition: r.int32(2)?,
                offset: r.int(3)?,
                leader_epoch: r.int32(4)?,
                metadata: r.opt_text(5)?,
            })
        })
        .collect()
    }

    fn clear_txn_offsets(&self, transactional_id: &str) -> Result<()> {
        write(&*self.db, |tx| {
            tx.execute(
                "DELETE FROM txn_offsets WHERE transactional_id = $1",
                params![transactional_id],
            )?;
            Ok(())
        })
    }

    fn announce_offsets(&self) -> Result<()> {
        write(&*self.db, |tx| crate::changes::MetaChange::Offsets.send(tx))
    }

    fn all_txns(&self) -> Result<Vec<TxnRecord>> {
        read(&*self.db, |tx| {
            tx.query(
                &format!("SELECT {TXN_COLUMNS} FROM transactions ORDER BY transactional_id"),
                &[],
            )
        })?
        .iter()
        .map(txn_from_row)
        .collect()
    }
}

/// Replaces the transaction index of each partition in `txns` (inside an
/// upload's commit).
pub(super) fn save_partition_txns(tx: &mut dyn Tx, txns: &[PartitionTxns]) -> Result<()> {
    for pt in txns {
        let topic = pt.topic.to_string();
        tx.execute(
            "DELETE FROM txn_index WHERE topic_id = $1 AND partition = $2",
            params![topic.as_str(), pt.partition],
        )?;
        let rows: Vec<Vec<Value>> = pt
            .entries
            .iter()
            .map(|e| {
                vec![
                    topic.as_str().into(),
                    pt.partition.into(),
                    e.producer_id.into(),
                    e.first_offset.into(),
                    e.last_offset.into(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            insert_many(
                tx,
                "txn_index (topic_id, partition, producer_id, first_offset, last_offset)",
                "",
                &rows,
            )?;
        }
    }
    Ok(())
}

/// Every partition's saved transaction index.
pub(super) fn load_partition_txns(catalog: &Catalog) -> Result<Vec<PartitionTxns>> {
    let rows = read(&*catalog.db, |tx| {
        tx.query(
            "SELECT topic_id, partition, producer_id, first_offset, last_offset FROM txn_index
             ORDER BY topic_id, partition, first_offset",
            &[],
        )
    })?;
    let mut by_partition: BTreeMap<(uuid::Uuid, i32), Vec<TxnIndexEntry>> = BTreeMap::new();
    for r in &rows {
        by_partition
            .entry((r.uuid(0)?, r.int32(1)?))
            .or_default()
            .push(TxnIndexEntry {
                producer_id: r.int(2)?,
                first_offset: r.int(3)?,
                last_offset: r.opt_int(4)?,
            });
    }
    Ok(by_partition
        .into_iter()
        .map(|((topic, partition), entries)| PartitionTxns {
            topic,
            partition,
            entries,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogIndex, ProducerStore, UploadCommit};
    use uuid::Uuid;

    #[test]
    fn transactions_and_partition_indexes_round_trip() {
        let c = Catalog::in_memory().unwrap();
        assert!(c.txn("t1").unwrap().is_none());
        let mut t = TxnRecord {
            transactional_id: "t1".into(),
            producer_id: 1001,
            epoch: 3,
            state: TxnState::Ongoing,
            timeout_ms: 60_000,
            started_ms: 5,
            updated_ms: 6,
            partitions: vec![("orders".into(), 2)],
            groups: vec!["g".into()],
        };
        let offset = TxnOffset {
            group: "g".into(),
            topic: "in".into(),
            partition: 0,
            offset: 42,
            leader_epoch: -1,
            metadata: Some("m".into()),
        };
        c.put_txn_offsets("t1", std::slice::from_ref(&offset))
            .unwrap();
        c.put_txn_offsets(
            "t1",
            &[TxnOffset {
                offset: 43,
                ..offset.clone()
            }],
        )
        .unwrap();
        assert_eq!(
            c.txn_offsets("t1").unwrap(),
            vec![TxnOffset {
                offset: 43,
                ..offset
            }]
        );
        c.clear_txn_offsets("t1").unwrap();
        assert!(c.txn_offsets("t1").unwrap().is_empty());
        c.put_txn(&t).unwrap();
        assert_eq!(c.txn("t1").unwrap().as_ref(), Some(&t));
        t.state = TxnState::CompleteCommit;
        t.partitions.clear();
        c.put_txn(&t).unwrap();
        assert_eq!(c.all_txns().unwrap(), vec![t]);

        let topic = Uuid::new_v4();
        let open = TxnIndexEntry {
            producer_id: 7,
            first_offset: 10,
            last_offset: None,
        };
        let aborted = TxnIndexEntry {
            producer_id: 8,
            first_offset: 3,
            last_offset: Some(9),
        };
        let commit = |entries: Vec<TxnIndexEntry>| UploadCommit {
            txns: vec![PartitionTxns {
                topic,
                partition: 1,
                entries,
            }],
            ..Default::default()
        };
        c.commit_upload(&commit(vec![open, aborted])).unwrap();
        let saved = c.partition_txns().unwrap();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].entries, vec![aborted, open]);
        c.commit_upload(&commit(vec![aborted])).unwrap();
        assert_eq!(c.partition_txns().unwrap()[0].entries, vec![aborted]);
    }
}
