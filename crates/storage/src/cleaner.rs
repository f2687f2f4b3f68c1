//! The log cleaner of compacted topics (`cleanup.policy` with `compact`):
//! keeps the latest record of each key, as Kafka's cleaner does, on the
//! object layout.
//!
//! - **What may be cleaned**: index rows (uploaded data; the write-ahead
//!   log's tail is the active segment) whose newest record is older than
//!   `min.compaction.lag.ms` and that lie in a "rolled segment": older than
//!   `segment.ms`, or followed by at least `segment.bytes` of later data.
//! - **When**: when the dirty (never cleaned) share of those bytes reaches
//!   `min.cleanable.dirty.ratio`, when dirty data is older than
//!   `max.compaction.lag.ms`, when a cleaned object holds a tombstone whose
//!   `delete.retention.ms` has run out, or when dirty data has been left
//!   alone for `delete.retention.ms` (so its tombstones go in that time).
//! - **How**: the latest offset of every key is taken from the whole
//!   uploaded log (so a later record in a row not yet cleanable still
//!   supersedes); each cleanable batch is rewritten with the records that
//!   are the latest of their key (tombstones until `delete.retention.ms`
//!   after their timestamp; records without a key stay), keeping its base
//!   offset, span and producer fields, so offsets never change and a
//!   reader sees gaps, as in Kafka. The new object (prefix `cleaned/`, its
//!   key carrying the deadline of its oldest tombstone) is written first,
//!   then the index rows are swapped in one catalog transaction: a reader
//!   sees the old rows or the new ones, never a gap or a double. Killed
//!   half way, the unpublished object is an orphan for garbage collection.
//! - **Bounds**: one pass rewrites at most `compaction_max_bytes` of rows
//!   per partition (the rest next pass); the key map holds one entry per
//!   distinct key of the partition.
//!
//! Progress and backlog: `sluice_cleaner_*` in `/metrics`.

use crate::log::{LogStore, StorageError};
use crate::maintenance::config_i64;
use crate::object::{adjacent_reads, ObjectBuilder};
use crate::partition::{MemBatch, PartitionLog};
use crate::{now_ms, Topic};
use bytes::Bytes;
use sluice_catalog::SegmentRecord;
use sluice_protocol::batch::{iter_stored, BatchHeader};
use sluice_protocol::records::{decode_batch, encode_retained_batch};
use std::collections::HashMap;
use std::sync::Arc;

/// Key prefix of cleaned objects.
pub const CLEANED_PREFIX: &str = "cleaned";

/// The deadline (ms) of the oldest tombstone a cleaned object keeps, from
/// its key (`cleaned/<topic>/<partition>/<base>-<last>-t<deadline>-<id>.obj`).
fn tombstone_deadline(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let t = name.split('-').find_map(|p| p.strip_prefix('t'))?;
    t.parse().ok().filter(|d| *d > 0)
}

/// The topic's cleaner settings.
struct Settings {
    min_lag_ms: i64,
    max_lag_ms: i64,
    dirty_ratio: f64,
    delete_retention_ms: i64,
    segment_ms: i64,
    segment_bytes: i64,
}

impl Settings {
    fn of(t: &Topic) -> Self {
        Self {
            min_lag_ms: config_i64(t, "min.compaction.lag.ms", 0).max(0),
            max_lag_ms: config_i64(t, "max.compaction.lag.ms", i64::MAX).max(1),
            dirty_ratio: t
                .config("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
            delete_retention_ms: config_i64(t, "delete.retention.ms", 86_400_000).max(0),
            segment_ms: config_i64(t, "segment.ms", 604_800_000).max(1),
            segment_bytes: config_i64(t, "segment.bytes", 1 << 30).max(1),
        }
    }
}

/// What one partition's cleaning did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    pub rows_read: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl LogStore {
    /// Cleans every compacted topic's partitions that need it, once.
    /// Returns how many partitions were rewritten.
    pub async fn clean_compacted(&self) -> Result<usize, StorageError> {
        let mut cleaned = 0;
        let mut backlog = 0u64;
        for t in self.topics() {
            if !t.has_cleanup_policy("compact") {
                continue;
            }
            for p in &t.partitions {
                if p.is_deleted() {
                    continue;
                }
                let (done, dirty) = self.clean_partition(&t, p, now_ms()).await?;
                backlog += dirty;
                if done.is_some() {
                    cleaned += 1;
                }
            }
        }
        sluice_observe::metrics()
            .cleaner_dirty_bytes
            .set(backlog as i64);
        Ok(cleaned)
    }

    /// Cleans one partition if it needs it; returns what was done and the
    /// dirty bytes left.
    pub async fn clean_partition(
        &self,
        t: &Topic,
        p: &Arc<PartitionLog>,
        now: i64,
    ) -> Result<(Option<Cleaned>, u64), StorageError> {
        let s = Settings::of(t);
        let rows = self.rows_of(p).await?;
        if rows.is_empty() {
            return Ok((None, 0));
        }
        // Bytes after each row (for segment.bytes).
        let mut after = vec![0i64; rows.len()];
        let mut acc = 0i64;
        for (i, r) in rows.iter().enumerate().rev() {
            after[i] = acc;
            acc += r.length as i64;
        }
        // Nothing at or past the last stable offset is cleaned: an open
        // transaction's records may yet be aborted (Kafka's first
        // uncleanable offset).
        let lso = p.last_stable_offset();
        let aborted = Aborted(p.aborted_ranges());
        let cleanable = rows
            .iter()
            .zip(&after)
            .take_while(|(r, later)| {
                r.last_offset < lso
                    && r.max_timestamp <= now.saturating_sub(s.min_lag_ms)
                    && (r.max_timestamp <= now.saturating_sub(s.segment_ms)
                        || **later >= s.segment_bytes)
            })
            .count();
        let eligible = &rows[..cleanable];
        let is_clean = |r: &SegmentRecord| r.object_key.starts_with(CLEANED_PREFIX);
        let dirty: Vec<&SegmentRecord> = eligible.iter().filter(|r| !is_clean(r)).collect();
        let dirty_bytes: u64 = dirty.iter().map(|r| r.length).sum();
        let total_bytes: u64 = eligible.iter().map(|r| r.length).sum();
        let due_ratio = total_bytes > 0
            && dirty_bytes > 0
            && dirty_bytes as f64 / total_bytes as f64 >= s.dirty_ratio;
        let due_lag = dirty
            .iter()
            .any(|r| r.max_timestamp <= now.saturating_sub(s.max_lag_ms));
        let due_tombstones = eligible
            .iter()
            .filter(|r| is_clean(r))
            .any(|r| tombstone_deadline(&r.object_key).is_some_and(|d| d <= now));
        // Dirty data left alone for delete.retention.ms is cleaned whatever
        // the ratio, so its tombstones go within that time (plus a pass).
        let due_idle = dirty
            .iter()
            .map(|r| r.max_timestamp)
            .max()
            .is_some_and(|newest| newest <= now.saturating_sub(s.delete_retention_ms));
        if !(due_ratio || due_lag || due_tombstones || due_idle) {
            return Ok((None, dirty_bytes));
        }
        // The latest offset of every key in the uploaded log (read once: the
        // rows rewritten below are a prefix of these).
        let datas = self.fetch_rows_uncached(&rows).await?;
        // Only committed records count: not markers, not aborted
        // transactions, nothing past the last stable offset.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for data in &datas {
            for (h, range) in iter_stored(data) {
                if h.is_control() || h.base_offset >= lso || aborted.holds(&h) {
                    continue;
                }
                let batch = data.slice(range);
                for r in decode_batch(&batch).map_err(|e| StorageError::Corrupt(e.to_string()))? {
                    if let Some(k) = r.key {
                        latest.insert(k, r.offset);
                    }
                }
            }
        }
        // Rewrite the eligible rows, up to the pass's budget.
        let mut budget = 0u64;
        let batch_rows: Vec<SegmentRecord> = eligible
            .iter()
            .take_while(|r| {
                let within = budget == 0 || budget + r.length <= self.config.compaction_max_bytes;
                if within {
                    budget += r.length;
                }
                within
            })
            .cloned()
            .collect();
        let mut builder = ObjectBuilder::with_capacity(budget as usize);
        let mut done = Cleaned {
            rows_read: batch_rows.len(),
            ..Cleaned::default()
        };
        let mut oldest_tombstone_deadline = 0i64;
        // The range's last batch, if the cleaner emptied it.
        let mut emptied_last: Option<BatchHeader> = None;
        for data in &datas[..batch_rows.len()] {
            let mut kept_batches = Vec::new();
            for (h, range) in iter_stored(data) {
                let batch = data.slice(range);
                done.bytes_before += batch.len() as u64;
                let out = if aborted.holds(&h) {
                    // An aborted transaction's data goes, as Kafka's
                    // cleaner removes it (its marker stays).
                    done.records_removed += h.record_count.max(0) as u64;
                    None
                } else {
                    retain(&h, &batch, &latest, now, s.delete_retention_ms, &mut done)?
                };
                emptied_last = out.is_none().then_some(h);
                if let Some((bytes, deadline)) = out {
                    if deadline > 0
                        && (oldest_tombstone_deadline == 0 || deadline < oldest_tombstone_deadline)
                    {
                        oldest_tombstone_deadline = deadline;
                    }
                    done.bytes_after += bytes.len() as u64;
                    kept_batches.push(MemBatch {
                        base_offset: h.base_offset,
                        last_offset: h.last_offset(),
                        max_timestamp: h.max_timestamp,
                        bytes,
                    });
                }
            }
            builder.add_chunk(p.topic_id(), p.partition(), &kept_batches);
        }
        // Its span stays as an empty batch (as Kafka keeps one): a consumer
        // positioned in it moves past it; with nothing after it, a reader
        // at its offsets would otherwise wait for data that never comes.
        if let Some(h) = emptied_last {
            let bytes =
                encode_retained_batch(&[], &h).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            done.bytes_after += bytes.len() as u64;
            let empty = MemBatch {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
                bytes,
            };
            builder.add_chunk(p.topic_id(), p.partition(), std::slice::from_ref(&empty));
        }
        let (Some(first), Some(last)) = (batch_rows.first(), batch_rows.last()) else {
            return Ok((None, dirty_bytes));
        };
        let key = format!(
            "{CLEANED_PREFIX}/{}/{}/{:020}-{:020}-t{}-{}.obj",
            p.topic_id().simple(),
            p.partition(),
            first.base_offset,
            last.last_offset,
            oldest_tombstone_deadline,
            uuid::Uuid::new_v4().simple()
        );
        let old_bases: Vec<i64> = batch_rows.iter().map(|r| r.base_offset).collect();
        if !self.replace_rows(p, &key, builder, old_bases).await? {
            // Retention or compaction changed the rows meanwhile.
            return Ok((None, dirty_bytes));
        }
        p.forget_cleaned(
            last.last_offset,
            done.bytes_before.saturating_sub(done.bytes_after),
        );
        let m = sluice_observe::metrics();
        m.cleaner_records_removed.inc_by(done.records_removed);
        m.cleaner_bytes_read.inc_by(done.bytes_before);
        m.cleaner_bytes_written.inc_by(done.bytes_after);
        m.cleaner_runs.inc();
        tracing::info!(
            topic = %t.record.name,
            partition = p.partition(),
            rows = done.rows_read,
            removed = done.records_removed,
            bytes_before = done.bytes_before,
            bytes_after = done.bytes_after,
            "cleaned a compacted partition"
        );
        let left: u64 = dirty
            .iter()
            .filter(|r| r.base_offset > last.last_offset)
            .map(|r| r.length)
            .sum();
        Ok((Some(done), left))
    }

    /// The rows' bytes, each row's alone, read in as few requests as the
    /// rows' layout allows (without filling the block cache).
    async fn fetch_rows_uncached(
        &self,
        rows: &[SegmentRecord],
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut out = Vec::with_capacity(rows.len());
        for (span, members) in adjacent_reads(rows, crate::object::INDEX_ROW_BYTES * 8) {
            let data = self.fetch_row_uncached(&span).await?;
            for row in members {
                let at = (row.position - span.position) as usize;
                let end = at + row.length as usize;
                if end > data.len() {
                    return Err(StorageError::Corrupt(format!(
                        "object {} is shorter than its index says",
                        span.object_key
                    )));
                }
                out.push(data.slice(at..end));
            }
        }
        Ok(out)
    }
}

/// A partition's aborted transactions: (producer id, first offset, marker
/// offset).
struct Aborted(Vec<(i64, i64, i64)>);

impl Aborted {
    /// Whether a batch belongs to an aborted transaction.
    fn holds(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.0.iter().any(|(pid, first, last)| {
                *pid == h.producer_id && *first <= h.base_offset && h.base_offset < *last
            })
    }
}

/// The batch with only the records the cleaner keeps (None: nothing kept),
/// and the deadline of the oldest tombstone kept (0: none).
fn retain(
    h: &BatchHeader,
    batch: &Bytes,
    latest: &HashMap<Bytes, i64>,
    now: i64,
    delete_retention_ms: i64,
    done: &mut Cleaned,
) -> Result<Option<(Bytes, i64)>, StorageError> {
    // Transaction markers are kept: a read_committed reader positioned
    // before one needs it to end the transaction.
    if h.is_control() {
        return Ok(Some((batch.clone(), 0)));
    }
    let records = decode_batch(batch).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let total = records.len();
    let mut deadline = 0i64;
    let kept: Vec<_> = records
        .into_iter()
        .filter(|r| {
            let Some(k) = &r.key else { return true };
            if latest.get(k).is_some_and(|l| *l != r.offset) {
                return false;
            }
            if r.value.is_none() {
                let d = r.timestamp.saturating_add(delete_retention_ms);
                if d <= now {
                    return false;
                }
                if deadline == 0 || d < deadline {
                    deadline = d;
                }
            }
            true
        })
        .collect();
    done.records_removed += (total - kept.len()) as u64;
    if kept.is_empty() {
        return Ok(None);
    }
    if kept.len() == total {
        return Ok(Some((batch.clone(), deadline)));
    }
    let bytes =
        encode_retained_batch(&kept, h).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(Some((bytes, deadline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_deadlines_from_keys() {
        assert_eq!(
            tombstone_deadline(
                "cleaned/ab/0/00000000000000000000-00000000000000000099-t1700000000000-ff.obj"
            ),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            tombstone_deadline("cleaned/ab/0/00000000000000000000-00000000000000000099-t0-ff.obj"),
            None
        );
        assert_eq!(tombstone_deadline("data/x.obj"), None);
    }
}
