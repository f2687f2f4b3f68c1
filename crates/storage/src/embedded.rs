//! The embedded broker's write path: this broker is the only writer of its
//! partitions, so offsets are assigned in memory; every group of appends is
//! made durable by one write and `fdatasync` of the local write-ahead log
//! (see [`crate::wal`]) before it is acknowledged.
//!
//! The uploader then turns durable WAL data into objects: every
//! `upload_interval`, or sooner once `upload_bytes` wait, it gathers the
//! durable, not-yet-uploaded batches of every partition into one
//! multi-partition object, writes the object, then publishes its index rows
//! in one catalog transaction (object first, index second: a reader never
//! sees an index row without its object). Only then are the covered WAL
//! segments deleted and memory beyond the tail cache released. Failures are
//! retried with backoff; meanwhile the WAL keeps the data and appends wait
//! on the upload budget once it is spent.

use crate::log::{AppendError, AppendOutcome, LogStore, StorageError, TopicMap};
use crate::object::ObjectBuilder;
use crate::partition::PartitionLog;
use crate::wal::{Wal, WalError, WalJob};
use crate::write_path::{PendingAppend, WritePath};
use crate::{now_ms, StorageConfig};
use futures::future::BoxFuture;
use sluice_catalog::{ObjectRecord, UploadCommit};
use sluice_protocol::batch::CheckedBatch;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use uuid::Uuid;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The WAL and the uploader's bookkeeping.
pub(crate) struct EmbeddedWrites {
    wal: Wal,
    /// Bytes appended and not yet uploaded.
    pending_upload: AtomicUsize,
    upload_wake: Notify,
}

impl EmbeddedWrites {
    /// Opens the WAL in `config.wal_dir`, replaying its records into the
    /// partitions of `topics`; returns the write path and the bytes
    /// replayed (not yet uploaded).
    pub(crate) fn open(
        config: &StorageConfig,
        topics: &TopicMap,
        on_commit: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<(Self, usize), StorageError> {
        let mut replayed = 0usize;
        let mut replayed_bytes = 0usize;
        let wal = Wal::open(
            &config.wal_dir,
            config.wal_segment_bytes,
            |r| {
                let p = topics.partition(&r.topic, r.partition)?;
                let (end, len) = p.replay(r.batch)?;
                replayed += 1;
                replayed_bytes += len;
                Some(end)
            },
            on_commit,
        )?;
        sluice_observe::metrics()
            .upload_backlog_bytes
            .set(replayed_bytes as i64);
        if replayed > 0 {
            tracing::info!(
                batches = replayed,
                bytes = replayed_bytes,
                "recovered the write-ahead log tail"
            );
        }
        Ok((
            Self {
                wal,
                pending_upload: AtomicUsize::new(replayed_bytes),
                upload_wake: Notify::new(),
            },
            replayed_bytes,
        ))
    }

    /// Bytes of `bytes` uploaded or dropped: out of the backlog.
    fn uploaded(&self, bytes: usize) {
        let before = self
            .pending_upload
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(bytes))
            })
            .unwrap_or(0);
        sluice_observe::metrics()
            .upload_backlog_bytes
            .set(before.saturating_sub(bytes) as i64);
    }
}

impl WritePath for EmbeddedWrites {
    fn submit(
        &self,
        store: &LogStore,
        p: &Arc<PartitionLog>,
        batches: Vec<CheckedBatch>,
        log_append_time: i64,
    ) -> (Result<PendingAppend, AppendError>, usize) {
        let mut waits = Vec::with_capacity(batches.len());
        let appended = p.append_local(batches, log_append_time, |b| {
            let (tx, rx) = oneshot::channel();
            self.wal.submit(WalJob {
                partition: p.clone(),
                batch: b.bytes.clone(),
                end_offset: b.last_offset + 1,
                done: tx,
            })?;
            waits.push(rx);
            Ok(())
        });
        let used = appended.bytes;
        let pending = self.pending_upload.fetch_add(used, Ordering::AcqRel) + used;
        sluice_observe::metrics()
            .upload_backlog_bytes
            .set(pending as i64);
        if pending >= store.config.upload_bytes {
            self.upload_wake.notify_one();
        }
        if let Some(e) = appended.error {
            return (Err(e), used);
        }
        let partition = p.clone();
        let mut changes = store.subscribe();
        let outcome = AppendOutcome {
            base_offset: appended.first_base.unwrap_or(-1),
            log_append_time,
        };
        let duplicate_until = appended.duplicate_until;
        let wait = async move {
            for w in waits {
                w.await.map_err(|_| AppendError::Wal(WalError::Closed))??;
            }
            if let Some(end) = duplicate_until {
                // A retried batch: answer once its original is durable.
                wait_durable(&partition, &mut changes, end).await;
            }
            Ok(outcome)
        };
        (Ok(PendingAppend(Box::pin(wait))), used)
    }

    fn run(
        self: Arc<Self>,
        store: Arc<LogStore>,
        mut shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(store.config.upload_interval) => {}
                    _ = self.upload_wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                // Keep uploading while a backlog remains.
                while self.upload_once(&store, &mut shutdown).await {
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
            self.upload_the_rest(&store).await;
        })
    }

    fn forget(&self, freed: usize) {
        self.uploaded(freed);
    }

    fn shutdown(&self) {
        self.wal.shutdown();
    }
}

/// Waits until the partition's high watermark reaches `end`.
async fn wait_durable(p: &PartitionLog, rx: &mut watch::Receiver<u64>, end: i64) {
    loop {
        if p.offsets().1 >= end || p.is_deleted() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// How long a clean shutdown keeps uploading what the WAL still holds.
const FINAL_UPLOAD: Duration = Duration::from_secs(3);

impl EmbeddedWrites {
    /// At a clean shutdown, uploads what is left (everything is durable
    /// in the WAL by now), so the data directory holds nothing the objects
    /// do not: `sluice catalog migrate` needs that. Bounded: whatever is
    /// not uploaded in time stays in the WAL for the next start.
    async fn upload_the_rest(&self, store: &LogStore) {
        let (_keep, mut never) = watch::channel(false);
        let done = tokio::time::timeout(FINAL_UPLOAD, async {
            while self.upload_once(store, &mut never).await {}
        })
        .await;
        if done.is_err() {
            tracing::warn!("shutdown: not everything in the write-ahead log could be uploaded in time; it is uploaded at the next start");
        }
    }

    /// Uploads one object's worth of data. Returns whether more data waits.
    pub(crate) async fn upload_once(
        &self,
        store: &LogStore,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let max_object = store.config.max_object_bytes;
        let mut parts = Vec::new();
        let mut taken: Vec<(Arc<PartitionLog>, i64)> = Vec::new();
        let mut producers = Vec::new();
        let mut txns = Vec::new();
        let mut size = 0usize;
        let mut more = false;
        for p in store.all_partitions() {
            if size >= max_object {
                more = true;
                break;
            }
            let Some(c) = p.upload_candidates(max_object - size) else {
                continue;
            };
            let batches = c.batches;
            more |= c.more;
            let end = batches.last().map(|b| b.last_offset + 1).unwrap_or(0);
            size += batches.iter().map(|b| b.bytes.len()).sum::<usize>();
            producers.extend(c.producers);
            txns.extend(c.txns);
            parts.push((p.topic_id(), p.partition(), batches));
            taken.push((p, end));
        }
        if parts.is_empty() {
            return false;
        }
        let mut builder = ObjectBuilder::with_capacity(size);
        for (topic, partition, batches) in parts {
            builder.add_chunk(topic, partition, &batches);
        }
        let created_ms = now_ms();
        let key = format!(
            "{}/{created_ms:013}-{}.obj",
            crate::maintenance::DATA_PREFIX,
            Uuid::new_v4().simple()
        );
        let (payload, chunks) = builder.finish();
        let object_size = payload.len() as u64;
        let mut backoff = Duration::from_millis(100);
        loop {
            match store.put_object(&key, payload.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "object upload failed; retrying");
                    if sleep_or_shutdown(backoff, shutdown).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let commit = Arc::new(UploadCommit {
            objects: vec![ObjectRecord {
                key: key.clone(),
                size: object_size,
                created_ms,
            }],
            segments: chunks.iter().map(|c| c.to_segment(&key)).collect(),
            producers,
            txns,
        });
        let mut backoff = Duration::from_millis(100);
        loop {
            let catalog = store.catalog.clone();
            let c = commit.clone();
            match tokio::task::spawn_blocking(move || catalog.commit_upload(&c)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::warn!(object = %key, error = %e, "catalog commit of an upload failed; retrying")
                }
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "catalog commit task failed; retrying")
                }
            }
            if sleep_or_shutdown(backoff, shutdown).await {
                return false;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }

        let total_partitions = store.partition_count().max(1);
        let keep_per_partition = store.config.tail_cache_bytes / total_partitions;
        let released: usize = taken
            .iter()
            .map(|(p, end)| p.mark_uploaded(*end, keep_per_partition))
            .sum();
        self.uploaded(released);
        store.release_upload_budget(released);
        let ends: HashMap<(Uuid, i32), i64> = store
            .all_partitions()
            .iter()
            .map(|p| ((p.topic_id(), p.partition()), p.uploaded_end()))
            .collect();
        let detached = self
            .wal
            .detach_uploaded(|t, p| ends.get(&(t, p)).copied().unwrap_or(i64::MAX));
        if !detached.is_empty() {
            // Unlinking blocks for milliseconds per segment (see Wal::detach_uploaded).
            if let Err(e) = tokio::task::spawn_blocking(move || detached.delete()).await {
                tracing::warn!(error = %e, "the task deleting uploaded WAL segments failed");
            }
        }
        tracing::debug!(object = %key, bytes = object_size, partitions = taken.len(), "uploaded");
        more || self.pending_upload.load(Ordering::Acquire) >= store.config.upload_bytes
    }
}

/// Sleeps; returns true if shutdown was requested meanwhile.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
