//! [`LogIndex`]: the index rows, the objects they point into, the
//! partitions' ends, and the two commits that publish data: an embedded
//! upload (offsets already assigned) and a cluster flush (offsets assigned
//! here, under the partitions' row locks).

use super::{segment_from_row, segment_values, Catalog, SEGMENT_COLUMNS};
use crate::changes::DataChange;
use crate::sequence::{ProducerState, SequenceCheck};
use crate::sql::{insert_many, read, typed_values, write, Tx, Value, ROWS_PER_STATEMENT};
use crate::{
    params, BatchOutcome, CatalogError, FlushBatch, FlushCommit, FlushOutcome, LogIndex,
    ObjectRecord, PartitionEnd, PartitionState, ProducerBatch, Result, SegmentRecord, TxnChange,
    TxnPart, TxnState, UploadCommit,
};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

type PartKey = (Uuid, i32);
type ProducerKey = (Uuid, i32, i64);

fn insert_object(tx: &mut dyn Tx, o: &ObjectRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO objects (key, size, created_ms) VALUES ($1, $2, $3)",
        params![o.key.as_str(), o.size, o.created_ms],
    )?;
    Ok(())
}

fn insert_segments(tx: &mut dyn Tx, rows: &[SegmentRecord]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values: Vec<Vec<Value>> = rows.iter().map(segment_values).collect();
    insert_many(tx, &format!("segments ({SEGMENT_COLUMNS})"), "", &values)
}

fn save_producers(tx: &mut dyn Tx, states: &[(ProducerKey, &ProducerState)]) -> Result<()> {
    let mut rows = Vec::with_capacity(states.len());
    for ((t, p, id), s) in states {
        let batches: Vec<&ProducerBatch> = s.batches.iter().collect();
        let json =
            serde_json::to_string(&batches).map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        rows.push(vec![
            t.to_string().into(),
            (*p).into(),
            (*id).into(),
            s.epoch.into(),
            json.into(),
        ]);
    }
    if rows.is_empty() {
        return Ok(());
    }
    insert_many(
        tx,
        "producer_state (topic_id, partition, producer_id, epoch, batches)",
        "ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET epoch = excluded.epoch, batches = excluded.batches",
        &rows,
    )
}

/// Locks the rows of `keys` (sorted, so two flushes lock in one order) and
/// returns their (log start, end); partitions without a row (a deleted
/// topic) are absent.
fn lock_partitions(tx: &mut dyn Tx, keys: &[PartKey]) -> Result<HashMap<PartKey, (i64, i64)>> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT topic_id, partition, log_start, uploaded_end FROM partitions
             WHERE (topic_id, partition) IN {}
             ORDER BY topic_id, partition{}",
            typed_values(chunk.len(), &["TEXT", "BIGINT"], 1),
            tx.dialect().for_update()
        );
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(t, p)| [t.to_string().into(), (*p).into()])
            .collect();
        for r in tx.query(&sql, &params)? {
            out.insert((r.uuid(0)?, r.int32(1)?), (r.int(2)?, r.int(3)?));
        }
    }
    Ok(out)
}

fn load_producers(
    tx: &mut dyn Tx,
    keys: &[ProducerKey],
) -> Result<HashMap<ProducerKey, ProducerState>> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT topic_id, partition, producer_id, epoch, batches FROM producer_state
             WHERE (topic_id, partition, producer_id) IN {}",
            typed_values(chunk.len(), &["TEXT", "BIGINT", "BIGINT"], 1)
        );
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(t, p, id)| [t.to_string().into(), (*p).into(), (*id).into()])
            .collect();
        for r in tx.query(&sql, &params)? {
            let batches: Vec<ProducerBatch> = serde_json::from_str(&r.text(4)?)
                .map_err(|e| CatalogError::Corrupt(format!("producer state: {e}")))?;
            out.insert(
                (r.uuid(0)?, r.int32(1)?, r.int(2)?),
                ProducerState {
                    epoch: i16::try_from(r.int(3)?)
                        .map_err(|_| CatalogError::Corrupt("producer epoch".into()))?,
                    batches: batches.into_iter().collect(),
                },
            );
        }
    }
    Ok(out)
}

/// Where each transactional producer of a flush stands: its epoch, whether
/// its transaction is ongoing, and the (topic id, partition)s in it.
type TxnVerdicts = HashMap<i64, (i16, bool, BTreeSet<PartKey>)>;

/// Reads, under a shared row lock (so a coordinator's decision to end the
/// transaction waits for this flush, and its markers land after), the
/// transactions of the producers whose data the flush carries (KIP-890).
fn load_txn_verdicts(tx: &mut dyn Tx, commit: &FlushCommit) -> Result<TxnVerdicts> {
    let pids: BTreeSet<i64> = commit
        .batches
        .iter()
        .filter(|b| b.txn == Some(TxnPart::Data))
        .filter_map(|b| b.producer.map(|s| s.producer_id))
        .collect();
    let mut out = HashMap::new();
    if pids.is_empty() {
        return Ok(out);
    }
    // Names of the flush's transactional topics only (details name topics).
    let topic_ids: BTreeSet<Uuid> = commit
        .batches
        .iter()
        .filter(|b| b.txn == Some(TxnPart::Data))
        .map(|b| b.topic)
        .collect();
    let mut ids: HashMap<String, Uuid> = HashMap::new();
    for id in topic_ids {
        let row = tx.query_opt(
            "SELECT name FROM topics WHERE id = $1",
            params![id.to_string().as_str()],
        )?;
        if let Some(r) = row {
            ids.insert(r.text(0)?, id);
        }
    }
    for pid in pids {
        let sql = format!(
            "SELECT epoch, state, detail FROM transactions WHERE producer_id = $1{}",
            tx.dialect().for_share()
        );
        let Some(r) = tx.query_opt(&sql, params![pid])? else {
            continue;
        };
        let detail: serde_json::Value = serde_json::from_str(&r.text(2)?)
            .map_err(|e| CatalogError::Corrupt(format!("transaction detail: {e}")))?;
        let partitions = detail["partitions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let id = ids.get(p[0].as_str()?)?;
                        Some((*id, i32::try_from(p[1].as_i64()?).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let epoch = i16::try_from(r.int(0)?)
            .map_err(|_| CatalogError::Corrupt("transaction epoch".into()))?;
        let ongoing = TxnState::from_name(&r.text(1)?) == Some(TxnState::Ongoing);
        out.insert(pid, (epoch, ongoing, partitions));
    }
    Ok(out)
}

/// Whether a transactional data batch may be appended.
fn txn_verdict(b: &FlushBatch, verdicts: &TxnVerdicts) -> Option<BatchOutcome> {
    if b.txn != Some(TxnPart::Data) {
        return None;
    }
    let Some(seq) = &b.producer else {
        return Some(BatchOutcome::NotInTransaction);
    };
    match verdicts.get(&seq.producer_id) {
        Some((epoch, _, _)) if seq.epoch < *epoch => Some(BatchOutcome::StaleEpoch),
        Some((epoch, true, parts))
            if seq.epoch == *epoch && parts.contains(&(b.topic, b.partition)) =>
        {
            None
        }
        _ => Some(BatchOutcome::NotInTransaction),
    }
}

/// Keeps the partitions' transaction index rows in step with a flush's
/// transactional batches: a transaction is open from its first batch; an
/// abort marker closes it as aborted, a commit marker drops it.
fn apply_txn_changes(tx: &mut dyn Tx, changes: &[TxnChange]) -> Result<()> {
    for c in changes {
        let topic = c.topic.to_string();
        let key = params![topic.as_str(), c.partition, c.producer_id];
        match c.marker {
            None => {
                let open = tx.query_opt(
                    "SELECT 1 FROM txn_index WHERE topic_id = $1 AND partition = $2
                     AND producer_id = $3 AND last_offset IS NULL",
                    key,
                )?;
                if open.is_none() {
                    tx.execute(
                        "INSERT INTO txn_index (topic_id, partition, producer_id, first_offset)
                         VALUES ($1, $2, $3, $4)",
                        params![topic.as_str(), c.partition, c.producer_id, c.offset],
                    )?;
                }
            }
            Some(false) => {
                tx.execute(
                    "UPDATE txn_index SET last_offset = $4 WHERE topic_id = $1 AND partition = $2
                     AND producer_id = $3 AND last_offset IS NULL",
                    params![topic.as_str(), c.partition, c.producer_id, c.offset],
                )?;
            }
            Some(true) => {
                tx.execute(
                    "DELETE FROM txn_index WHERE topic_id = $1 AND partition = $2
                     AND producer_id = $3 AND last_offset IS NULL",
                    key,
                )?;
            }
        }
    }
    Ok(())
}

/// The offsets and index rows of one flush, decided in memory from the
/// partitions' ends, producer states and transactions read under lock.
fn assign(
    commit: &FlushCommit,
    parts: &mut HashMap<PartKey, (i64, i64)>,
    producers: &mut HashMap<ProducerKey, ProducerState>,
    verdicts: &TxnVerdicts,
) -> (Vec<BatchOutcome>, Vec<SegmentRecord>, BTreeSet<ProducerKey>) {
    let mut outcomes = Vec::with_capacity(commit.batches.len());
    let mut rows: Vec<SegmentRecord> = Vec::new();
    let mut changed = BTreeSet::new();
    // Each partition's open index row, extended while its batches sit side
    // by side in the object (a skipped batch between two ends the row).
    let mut open: HashMap<PartKey, usize> = HashMap::new();
    for b in &commit.batches {
        let key = (b.topic, b.partition);
        let Some((_, end)) = parts.get_mut(&key) else {
            outcomes.push(BatchOutcome::UnknownPartition);
            continue;
        };
        if let Some(refused) = txn_verdict(b, verdicts) {
            outcomes.push(refused);
            continue;
        }
        if let Some(TxnPart::Marker {
            producer_id, epoch, ..
        }) = b.txn
        {
            let pk = (b.topic, b.partition, producer_id);
            producers.entry(pk).or_default().fence(epoch);
            changed.insert(pk);
        }
        if let Some(seq) = &b.producer {
            let pk = (b.topic, b.partition, seq.producer_id);
            match ProducerState::check(producers.get(&pk), seq) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset, .. } => {
                    outcomes.push(BatchOutcome::Duplicate { base_offset });
                    continue;
                }
                SequenceCheck::OutOfOrder => {
                    outcomes.push(BatchOutcome::OutOfOrder);
                    continue;
                }
                SequenceCheck::StaleEpoch => {
                    outcomes.push(BatchOutcome::StaleEpoch);
                    continue;
                }
            }
        }
        let base = *end;
        let last = base + b.offsets.max(1) - 1;
        *end = last + 1;
        if let Some(seq) = &b.producer {
            let pk = (b.topic, b.partition, seq.producer_id);
            producers.entry(pk).or_default().record(seq, base, last);
            changed.insert(pk);
        }
        let extends = open.get(&key).copied().filter(|&i| {
            let r = &rows[i];
            r.position + r.length == b.position && r.length + b.length <= commit.max_row_bytes
        });
        match extends {
            Some(i) => {
                let r = &mut rows[i];
                r.last_offset = last;
                r.max_timestamp = r.max_timestamp.max(b.max_timestamp);
                r.length += b.length;
            }
            None => {
                rows.push(SegmentRecord {
                    topic: b.topic,
                    partition: b.partition,
                    base_offset: base,
                    last_offset: last,
                    max_timestamp: b.max_timestamp,
                    object_key: commit.object.key.clone(),
                    position: b.position,
                    length: b.length,
                });
                open.insert(key, rows.len() - 1);
            }
        }
        outcomes.push(BatchOutcome::Appended { base_offset: base });
    }
    (outcomes, rows, changed)
}

impl LogIndex for Catalog {
    fn commit_upload(&self, commit: &UploadCommit) -> Result<()> {
        write(&*self.db, |tx| {
            for o in &commit.objects {
                insert_object(tx, o)?;
            }
            for s in &commit.segments {
                let topic = s.topic.to_string();
                // A topic deleted while its data was uploading gets no index rows.
                let live = tx.query_opt(
                    "SELECT 1 FROM topics WHERE id = $1",
                    params![topic.as_str()],
                )?;
                if live.is_none() {
                    continue;
                }
                // Data deleted (DeleteRecords) before it was uploaded gets no
                // row, but still counts as uploaded.
                let log_start = tx
                    .query_opt(
                        "SELECT log_start FROM partitions WHERE topic_id = $1 AND partition = $2",
                        params![topic.as_str(), s.partition],
                    )?
                    .map(|r| r.int(0))
                    .transpose()?
                    .unwrap_or(0);
                if s.last_offset >= log_start {
                    insert_segments(tx, std::slice::from_ref(s))?;
                }
                tx.execute(
                    "INSERT INTO partitions (topic_id, partition, uploaded_end) VALUES ($1, $2, $3)
                     ON CONFLICT (topic_id, partition) DO UPDATE SET uploaded_end = excluded.uploaded_end
                     WHERE partitions.uploaded_end < excluded.uploaded_end",
                    params![topic.as_str(), s.partition, s.last_offset + 1],
                )?;
            }
            let states: Vec<(ProducerKey, ProducerState)> = commit
                .producers
                .iter()
                .map(|p| {
                    (
                        (p.topic, p.partition, p.producer_id),
                        ProducerState {
                            epoch: p.epoch,
                            batches: p.batches.iter().cloned().collect(),
                        },
                    )
                })
                .collect();
            let refs: Vec<(ProducerKey, &ProducerState)> =
                states.iter().map(|(k, s)| (*k, s)).collect();
            save_producers(tx, &refs)?;
            super::txns::save_partition_txns(tx, &commit.txns)
        })
    }

    fn commit_flush(&self, commit: &FlushCommit) -> Result<FlushOutcome> {
        let keys: Vec<PartKey> = commit
            .batches
            .iter()
            .map(|b| (b.topic, b.partition))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let producer_keys: Vec<ProducerKey> = commit
            .batches
            .iter()
            .filter_map(|b| match b.txn {
                Some(TxnPart::Marker { producer_id, .. }) => {
                    Some((b.topic, b.partition, producer_id))
                }
                _ => b.producer.map(|s| (b.topic, b.partition, s.producer_id)),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        write(&*self.db, |tx| {
            if let Some(f) = &commit.fence {
                super::brokers::check_fence(tx, f)?;
            }
            let mut parts = lock_partitions(tx, &keys)?;
            let mut producers = load_producers(tx, &producer_keys)?;
            let verdicts = load_txn_verdicts(tx, commit)?;
            let (outcomes, rows, changed) = assign(commit, &mut parts, &mut producers, &verdicts);
            let txns: Vec<TxnChange> = commit
                .batches
                .iter()
                .zip(&outcomes)
                .filter_map(|(b, o)| match (b.txn, o) {
                    (Some(part), BatchOutcome::Appended { base_offset }) => Some(TxnChange {
                        topic: b.topic,
                        partition: b.partition,
                        producer_id: match part {
                            TxnPart::Marker { producer_id, .. } => producer_id,
                            TxnPart::Data => b.producer.map_or(-1, |s| s.producer_id),
                        },
                        offset: *base_offset,
                        marker: match part {
                            TxnPart::Marker { commit, .. } => Some(commit),
                            TxnPart::Data => None,
                        },
                    }),
                    _ => None,
                })
                .collect();
            apply_txn_changes(tx, &txns)?;
            insert_object(tx, &commit.object)?;
            insert_segments(tx, &rows)?;
            let states: Vec<(ProducerKey, &ProducerState)> = changed
                .iter()
                .filter_map(|k| producers.get(k).map(|s| (*k, s)))
                .collect();
            save_producers(tx, &states)?;
            let touched: BTreeSet<PartKey> = rows.iter().map(|r| (r.topic, r.partition)).collect();
            let ends: Vec<PartitionEnd> = touched
                .iter()
                .filter_map(|k| {
                    parts.get(k).map(|(log_start, end)| PartitionEnd {
                        topic: k.0,
                        partition: k.1,
                        log_start: *log_start,
                        end: *end,
                    })
                })
                .collect();
            let end_rows: Vec<Vec<Value>> = ends
                .iter()
                .map(|e| vec![e.topic.to_string().into(), e.partition.into(), e.end.into()])
                .collect();
            if !end_rows.is_empty() {
                insert_many(
                    tx,
                    "partitions (topic_id, partition, uploaded_end)",
                    "ON CONFLICT (topic_id, partition) DO UPDATE SET uploaded_end = excluded.uploaded_end",
                    &end_rows,
                )?;
            }
            let change = DataChange {
                writer: Some(commit.writer),
                txns,
                rows: rows.clone(),
                ends: ends.clone(),
            };
            change.send(tx)?;
            // Last, just before the commit: is the object still safe from
            // the orphan collector?
            let now = tx
                .query_opt(&format!("SELECT {}", tx.dialect().now_ms()), &[])?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            let age = now - commit.object.created_ms;
            if age > commit.max_age_ms {
                return Err(CatalogError::Conflict(format!(
                    "the flush is {age} ms old, more than {} ms: its object may be collected as an orphan, so it is not published",
                    commit.max_age_ms
                )));
            }
            Ok(FlushOutcome {
                outcomes: outcomes.clone(),
                rows: rows.clone(),
                ends,
            })
        })
    }

    fn partition_states(&self) -> Result<Vec<PartitionState>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT p.topic_id, p.partition, p.uploaded_end, p.log_start,
                        (SELECT CAST(COALESCE(SUM(s.length), 0) AS BIGINT) FROM segments s
                          WHERE s.topic_id = p.topic_id AND s.partition = p.partition)
                 FROM partitions p",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(PartitionState {
                    topic: r.uuid(0)?,
                    partition: r.int32(1)?,
                    uploaded_end: r.int(2)?,
                    log_start: r.int(3)?,
                    bytes: r.int(4)?,
                })
            })
            .collect()
    }

    fn segments_from(
        &self,
        topic: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = read(&*self.db, |tx| {
            tx.query(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments
                     WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3
                     ORDER BY last_offset LIMIT $4"
                ),
                params![topic.to_string(), partition, from, limit],
            )
        })?;
        rows.iter().map(segment_from_row).collect()
    }

    fn first_segment_at_or_after_time(
        &self,
        topic: Uuid,
        partition: i32,
        ts: i64,
    ) -> Result<Option<SegmentRecord>> {
        let row = read(&*self.db, |tx| {
            tx.query_opt(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments
                     WHERE topic_id = $1 AND partition = $2 AND max_timestamp >= $3
                     ORDER BY base_offset LIMIT 1"
                ),
                params![topic.to_string(), partition, ts],
            )
        })?;
        row.as_ref().map(segment_from_row).transpose()
    }

    fn trim_partition(&self, topic: Uuid, partition: i32, new_start: i64) -> Result<u64> {
        let t = topic.to_string();
        write(&*self.db, |tx| {
            let bytes = tx
                .query_opt(
                    "SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) FROM segments
                     WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
                    params![t.as_str(), partition, new_start],
                )?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            tx.execute(
                "DELETE FROM segments WHERE topic_id = $1 AND partition = $2 AND last_offset < $3",
                params![t.as_str(), partition, new_start],
            )?;
            let ends = tx.query_opt(
                "INSERT INTO partitions (topic_id, partition, log_start) VALUES ($1, $2, $3)
                 ON CONFLICT (topic_id, partition) DO UPDATE SET log_start = excluded.log_start
                 WHERE partitions.log_start < excluded.log_start
                 RETURNING log_start, uploaded_end",
                params![t.as_str(), partition, new_start],
            )?;
            if let Some(r) = ends {
                DataChange {
                    writer: None,
                    txns: Vec::new(),
                    rows: Vec::new(),
                    ends: vec![PartitionEnd {
                        topic,
                        partition,
                        log_start: r.int(0)?,
                        end: r.int(1)?,
                    }],
                }
                .send(tx)?;
            }
            Ok(bytes.max(0) as u64)
        })
    }

    fn replace_segments(
        &self,
        topic: Uuid,
        partition: i32,
        old_bases: &[i64],
        object: &ObjectRecord,
        new_rows: &[SegmentRecord],
    ) -> Result<bool> {
        let t = topic.to_string();
        write(&*self.db, |tx| {
            // Every old row must still be there (retention or another
            // compaction may have taken some): else change nothing.
            for chunk in old_bases.chunks(ROWS_PER_STATEMENT) {
                let list = (0..chunk.len())
                    .map(|i| format!("${}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT base_offset FROM segments WHERE topic_id = $1 AND partition = $2 AND base_offset IN ({list}){}",
                    tx.dialect().for_update()
                );
                let mut params: Vec<Value> = vec![t.as_str().into(), partition.into()];
                params.extend(chunk.iter().map(|b| Value::Int(*b)));
                if tx.query(&sql, &params)?.len() != chunk.len() {
                    return Ok(false);
                }
            }
            for base in old_bases {
                tx.execute(
                    "DELETE FROM segments WHERE topic_id = $1 AND partition = $2 AND base_offset = $3",
                    params![t.as_str(), partition, *base],
                )?;
            }
            insert_object(tx, object)?;
            insert_segments(tx, new_rows)?;
            Ok(true)
        })
    }

    fn unreferenced_objects(&self, before_ms: i64) -> Result<Vec<String>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT o.key FROM objects o WHERE o.created_ms < $1
                 AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.object_key = o.key)",
                params![before_ms],
            )
        })?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    fn forget_objects(&self, keys: &[String]) -> Result<()> {
        write(&*self.db, |tx| {
            for k in keys {
                tx.execute("DELETE FROM objects WHERE key = $1", params![k.as_str()])?;
            }
            Ok(())
        })
    }

    fn object_keys(&self) -> Result<Vec<String>> {
        let rows = read(&*self.db, |tx| tx.query("SELECT key FROM objects", &[]))?;
        rows.iter().map(|r| r.text(0)).collect()
    }
}
