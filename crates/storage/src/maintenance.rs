//! Background upkeep of the object layer:
//!
//! - **Retention** (`retention.ms`, `retention.bytes`, broker defaults) and
//!   **DeleteRecords** move a partition's log start forward and drop the
//!   index rows wholly before it. Retention applies only to topics whose
//!   `cleanup.policy` includes `delete`: a `compact`-only topic (Kafka
//!   Connect's internal topics, keyed state) is never deleted by time or
//!   size.
//! - **Compaction** rewrites a partition's run of small rows in
//!   multi-partition upload objects into one per-partition object with
//!   contiguous offsets, then swaps the index rows in one transaction (the
//!   new object is written first, so readers never see a gap or a double).
//!   The new object is built in memory: at most `compaction_max_bytes`
//!   (`--compaction-max-bytes`), shown as `sluice_memory_bytes{kind=
//!   "compaction"}` while it is held.
//! - **Cleaning** of compacted topics keeps the latest record per key
//!   ([`crate::cleaner`]).
//! - **Garbage collection** deletes objects no index row points to, after a
//!   grace period for reads in flight, and objects the catalog never heard of
//!   (a crash, or a failed commit, between a PUT and its commit): the
//!   embedded broker at start-up, when nothing can be in flight; a cluster
//!   on every pass, only objects older than the grace period (another
//!   broker's flush may be between its PUT and its commit).
//!
//! In a cluster one broker at a time does this work (the one
//! [`LogStore::set_maintainer`] names); the catalog's atomic swaps and
//! monotonic log starts keep it safe if two briefly overlap.

use crate::log::{LogStore, StorageError};
use crate::object::{adjacent_reads, ObjectBuilder};
use crate::partition::{MemBatch, PartitionLog};
use crate::{now_ms, Topic};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use sluice_catalog::{ObjectRecord, SegmentRecord};
use sluice_protocol::batch::iter_stored;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;

/// Object key prefixes Sluice writes.
pub const DATA_PREFIX: &str = "data";
pub const COMPACTED_PREFIX: &str = "compacted";

pub(crate) fn config_i64(t: &Topic, key: &str, default: i64) -> i64 {
    t.config(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl LogStore {
    /// DeleteRecords: moves the log start to `offset` (-1: the high
    /// watermark). Returns the new log start.
    pub async fn delete_records(
        &self,
        p: &PartitionLog,
        offset: i64,
    ) -> Result<i64, crate::ReadError> {
        let (log_start, hw) = p.offsets();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(crate::ReadError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        if target > log_start {
            self.trim(p, target).await?;
        }
        Ok(p.offsets().0)
    }

    /// Moves the log start forward and frees what lies before it.
    async fn trim(&self, p: &PartitionLog, new_start: i64) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let (t, part) = (p.topic_id(), p.partition());
        let freed = tokio::task::spawn_blocking(move || catalog.trim_partition(t, part, new_start))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let log_start = p.trim(new_start, freed);
        tracing::info!(topic = %p.topic_name(), partition = p.partition(), log_start, "log start moved");
        Ok(())
    }

    /// Applies retention to every partition once.
    pub async fn enforce_retention(&self, now: i64) -> Result<(), StorageError> {
        for t in self.topics() {
            if !t.has_cleanup_policy("delete") {
                continue;
            }
            let retention_ms = config_i64(&t, "retention.ms", self.config.default_retention_ms);
            let retention_bytes =
                config_i64(&t, "retention.bytes", self.config.default_retention_bytes);
            if retention_ms < 0 && retention_bytes < 0 {
                continue;
            }
            for p in &t.partitions {
                let (log_start, _) = p.offsets();
                let rows = self.rows_of(p).await?;
                let size = p.size_bytes();
                let mut new_start = log_start;
                let mut freed = 0u64;
                for r in &rows {
                    let too_old = retention_ms >= 0 && r.max_timestamp < now - retention_ms;
                    // Like Kafka: drop the oldest row only if at least the limit remains.
                    let too_big = retention_bytes >= 0
                        && size.saturating_sub(freed + r.length) >= retention_bytes as u64;
                    if !(too_old || too_big) {
                        break;
                    }
                    freed += r.length;
                    new_start = new_start.max(r.last_offset + 1);
                }
                if new_start > log_start {
                    self.trim(p, new_start).await?;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn rows_of(
        &self,
        p: &PartitionLog,
    ) -> Result<Vec<SegmentRecord>, StorageError> {
        let catalog = self.catalog.clone();
        let (t, part) = (p.topic_id(), p.partition());
        tokio::task::spawn_blocking(move || catalog.segments_from(t, part, 0, usize::MAX >> 1))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
            .map_err(StorageError::from)
    }

    /// Compacts every partition's small upload rows once. Returns how many
    /// objects were written.
    pub async fn compact(&self) -> Result<usize, StorageError> {
        let mut written = 0;
        for p in self.all_partitions() {
            if p.is_deleted() {
                continue;
            }
            written += self.compact_partition(&p).await?;
        }
        Ok(written)
    }

    async fn compact_partition(&self, p: &Arc<PartitionLog>) -> Result<usize, StorageError> {
        let rows = self.rows_of(p).await?;
        // Runs of consecutive rows that still live in multi-partition upload objects.
        let mut runs: Vec<Vec<SegmentRecord>> = Vec::new();
        let mut run: Vec<SegmentRecord> = Vec::new();
        let mut run_bytes = 0u64;
        for r in rows {
            let small = r.object_key.starts_with(DATA_PREFIX);
            let contiguous = run
                .last()
                .is_none_or(|l| l.last_offset + 1 == r.base_offset);
            if small && contiguous && run_bytes + r.length <= self.config.compaction_max_bytes {
                run_bytes += r.length;
                run.push(r);
                continue;
            }
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            run_bytes = 0;
            if small {
                run_bytes = r.length;
                run.push(r);
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        let mut written = 0;
        for run in runs {
            let bytes: u64 = run.iter().map(|r| r.length).sum();
            if run.len() < 2 || bytes < self.config.compaction_min_bytes {
                continue;
            }
            // One read at a time in memory: rows that sit side by side in
            // one source object are read with one ranged GET, copied into
            // the new object (sized once) and dropped.
            let held = sluice_observe::metrics()
                .memory_bytes
                .with_label_values(&["compaction"]);
            held.set(bytes as i64);
            let mut builder = ObjectBuilder::with_capacity(bytes as usize);
            let mut batches = Vec::new();
            for (r, _) in &adjacent_reads(&run, crate::object::INDEX_ROW_BYTES * 8) {
                let data = self.fetch_row_uncached(r).await?;
                batches.clear();
                for (h, range) in iter_stored(&data) {
                    batches.push(MemBatch {
                        base_offset: h.base_offset,
                        last_offset: h.last_offset(),
                        max_timestamp: h.max_timestamp,
                        bytes: data.slice(range),
                    });
                }
                builder.add_chunk(p.topic_id(), p.partition(), &batches);
            }
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                continue;
            };
            let key = format!(
                "{COMPACTED_PREFIX}/{}/{}/{:020}-{:020}-{}.obj",
                p.topic_id().simple(),
                p.partition(),
                first.base_offset,
                last.last_offset,
                uuid::Uuid::new_v4().simple()
            );
            let old_bases: Vec<i64> = run.iter().map(|r| r.base_offset).collect();
            let swapped = self.replace_rows(p, &key, builder, old_bases).await;
            held.set(0);
            if swapped? {
                written += 1;
                tracing::debug!(object = %key, rows = run.len(), bytes, "compacted");
            }
        }
        Ok(written)
    }

    /// Writes the object `builder` holds under `key`, then replaces the
    /// partition's index rows at `old_bases` with the object's rows in one
    /// catalog transaction, so readers see the old rows or the new ones.
    /// Returns false (and deletes the unused object) when the rows changed
    /// meanwhile (retention, another rewrite).
    pub(crate) async fn replace_rows(
        &self,
        p: &PartitionLog,
        key: &str,
        builder: ObjectBuilder,
        old_bases: Vec<i64>,
    ) -> Result<bool, StorageError> {
        let (payload, chunks) = builder.finish();
        let object = ObjectRecord {
            key: key.to_string(),
            size: payload.len() as u64,
            created_ms: now_ms(),
        };
        self.put_object(key, payload).await?;
        let new_rows: Vec<SegmentRecord> = chunks.iter().map(|c| c.to_segment(key)).collect();
        let catalog = self.catalog.clone();
        let (t, part) = (p.topic_id(), p.partition());
        let swapped = tokio::task::spawn_blocking(move || {
            catalog.replace_segments(t, part, &old_bases, &object, &new_rows)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        if !swapped {
            let _ = self.objects.delete(&ObjectPath::from(key)).await;
        }
        Ok(swapped)
    }

    /// Deletes objects nothing points to any more (after the grace period).
    pub async fn collect_garbage(&self) -> Result<usize, StorageError> {
        let before = now_ms() - self.config.gc_grace.as_millis() as i64;
        let catalog = self.catalog.clone();
        let keys = tokio::task::spawn_blocking(move || catalog.unreferenced_objects(before))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let mut gone = Vec::new();
        for k in keys {
            match self.objects.delete(&ObjectPath::from(k.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.block_cache.forget_object(&k);
                    gone.push(k);
                }
                Err(e) => {
                    tracing::warn!(object = %k, error = %e, "could not delete an unreferenced object")
                }
            }
        }
        let n = gone.len();
        if n > 0 {
            let catalog = self.catalog.clone();
            tokio::task::spawn_blocking(move || catalog.forget_objects(&gone))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??;
            tracing::debug!(objects = n, "deleted unreferenced objects");
        }
        Ok(n)
    }

    /// Deletes objects under Sluice's prefixes that the catalog does not
    /// know (left by a crash between an upload and its commit) and that are
    /// older than `min_age` (a cluster's brokers may have flushes between
    /// their PUT and their commit; the embedded broker calls this with zero
    /// before its uploader starts).
    pub async fn collect_orphans(
        &self,
        min_age: std::time::Duration,
    ) -> Result<usize, StorageError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
        let catalog = self.catalog.clone();
        let known: HashSet<String> = tokio::task::spawn_blocking(move || catalog.object_keys())
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??
            .into_iter()
            .collect();
        let mut deleted = 0;
        for prefix in [DATA_PREFIX, COMPACTED_PREFIX] {
            let listed: Vec<_> = self
                .objects
                .list(Some(&ObjectPath::from(prefix)))
                .try_collect()
                .await?;
            for meta in listed {
                if !known.contains(meta.location.as_ref()) && meta.last_modified <= cutoff {
                    self.objects.delete(&meta.location).await?;
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(objects = deleted, "deleted orphaned objects");
        }
        Ok(deleted)
    }

    /// Runs retention, compaction and garbage collection every
    /// `maintenance_interval` until shutdown.
    pub async fn run_maintenance(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.maintenance_interval) => {}
                _ = shutdown.changed() => return,
            }
            if !self.is_maintainer() {
                continue;
            }
            // A pass can take long (compaction reads many objects); shutdown
            // does not wait for it. Stopping anywhere is safe: every catalog
            // change is one transaction, and an object written but not yet
            // published is collected as an orphan.
            tokio::select! {
                _ = self.maintenance_pass() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Retention, compaction and garbage collection, once.
    async fn maintenance_pass(&self) {
        if let Err(e) = self.enforce_retention(now_ms()).await {
            tracing::warn!(error = %e, "retention pass failed");
        }
        // Compaction's reads yield the disk to consumers' reads.
        match crate::disk_lane::in_background(self.clean_compacted()).await {
            Ok(n) if n > 0 => tracing::debug!(partitions = n, "the cleaner rewrote partitions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleaning compacted topics failed"),
        }
        match crate::disk_lane::in_background(self.compact()).await {
            Ok(n) if n > 0 => tracing::info!(objects = n, "compaction wrote objects"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction pass failed"),
        }
        if let Err(e) = self.collect_garbage().await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
        if self.is_shared() {
            if let Err(e) = self.collect_orphans(self.config.gc_grace).await {
                tracing::warn!(error = %e, "orphaned object collection failed");
            }
        }
        let m = sluice_observe::metrics();
        m.memory_bytes
            .with_label_values(&["block_cache"])
            .set(self.block_cache.used() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, base: i64, last: i64, position: u64, length: u64) -> SegmentRecord {
        SegmentRecord {
            topic: uuid::Uuid::nil(),
            partition: 0,
            base_offset: base,
            last_offset: last,
            max_timestamp: base,
            object_key: key.into(),
            position,
            length,
        }
    }

    #[test]
    fn only_delete_policies_let_retention_delete() {
        use crate::log::policy_names;
        assert!(policy_names(None, "delete"), "the default policy is delete");
        assert!(!policy_names(None, "compact"));
        assert!(policy_names(Some("delete"), "delete"));
        assert!(policy_names(Some("compact,delete"), "delete"));
        assert!(policy_names(Some("delete, compact"), "compact"));
        assert!(policy_names(Some("DELETE"), "delete"));
        assert!(!policy_names(Some("compact"), "delete"));
        assert!(!policy_names(Some(" compact "), "delete"));
    }

    #[test]
    fn adjacent_rows_of_one_object_are_read_together() {
        let run = vec![
            row("a", 0, 9, 0, 100),
            row("a", 10, 19, 100, 50),
            row("b", 20, 29, 0, 10),
            row("b", 30, 39, 500, 10), // not adjacent in the object
        ];
        let reads = adjacent_reads(&run, 1 << 20);
        let parts: Vec<usize> = reads.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(parts, vec![2, 1, 1]);
        assert_eq!(
            adjacent_reads(&run, 120).len(),
            4,
            "a span stays within its size limit"
        );
        let got: Vec<(&str, i64, i64, u64, u64)> = reads
            .iter()
            .map(|(r, _)| {
                (
                    r.object_key.as_str(),
                    r.base_offset,
                    r.last_offset,
                    r.position,
                    r.length,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 0, 19, 0, 150),
                ("b", 20, 29, 0, 10),
                ("b", 30, 39, 500, 10)
            ]
        );
    }
}
