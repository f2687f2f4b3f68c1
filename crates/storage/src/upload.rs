//! The uploader: turns durable WAL data into objects. Every
//! `upload_interval`, or sooner once `upload_bytes` wait, it gathers the
//! durable, not-yet-uploaded batches of every partition into one
//! multi-partition object, writes the object, then publishes its index rows
//! in one catalog transaction (object first, index second: a reader never
//! sees an index row without its object). Only then are the covered WAL
//! segments deleted and memory beyond the tail cache released. Failures are
//! retried with backoff; meanwhile the WAL keeps the data and appends wait on
//! the upload budget once it is spent.

use crate::log::LogStore;
use crate::now_ms;
use crate::object::ObjectBuilder;
use crate::partition::PartitionLog;
use sluice_catalog::{ObjectRecord, UploadCommit};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl LogStore {
    /// Runs the uploader until `shutdown` turns true.
    pub async fn run_uploader(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.upload_interval) => {}
                _ = self.upload_wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            // Keep uploading while a backlog remains.
            while self.upload_once(&mut shutdown).await {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }

    /// Uploads one object's worth of data. Returns whether more data waits.
    pub async fn upload_once(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut parts = Vec::new();
        let mut taken: Vec<(Arc<PartitionLog>, i64)> = Vec::new();
        let mut producers = Vec::new();
        let mut size = 0usize;
        let mut more = false;
        for p in self.all_partitions() {
            if size >= self.config.max_object_bytes {
                more = true;
                break;
            }
            let inner = p.inner.lock();
            if inner.deleted {
                continue;
            }
            let mut batches = inner.upload_candidates();
            if batches.is_empty() {
                continue;
            }
            let mut chunk_bytes = 0;
            let keep = batches
                .iter()
                .take_while(|b| {
                    let ok = chunk_bytes == 0
                        || size + chunk_bytes + b.bytes.len() <= self.config.max_object_bytes;
                    chunk_bytes += b.bytes.len();
                    ok
                })
                .count();
            if keep < batches.len() {
                more = true;
                batches.truncate(keep);
            }
            let end = batches.last().map(|b| b.last_offset + 1).unwrap_or(0);
            size += batches.iter().map(|b| b.bytes.len()).sum::<usize>();
            for mut rec in inner.producer_records(p.topic_id, p.partition) {
                // Only batches this object makes durable in the catalog.
                rec.batches.retain(|b| b.last_offset < end);
                if !rec.batches.is_empty() {
                    producers.push(rec);
                }
            }
            drop(inner);
            parts.push((p.topic_id, p.partition, batches));
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
        let key = format!("data/{created_ms:013}-{}.obj", Uuid::new_v4().simple());
        let (payload, chunks) = builder.finish();
        let object_size = payload.len() as u64;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.put_object(&key, payload.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(object = %key, error = %e, "object upload failed; retrying");
                    if self.sleep_or_shutdown(backoff, shutdown).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let commit = UploadCommit {
            objects: vec![ObjectRecord {
                key: key.clone(),
                size: object_size,
                created_ms,
            }],
            segments: chunks.iter().map(|c| c.to_segment(&key)).collect(),
            producers,
        };
        let commit = Arc::new(commit);
        let mut backoff = Duration::from_millis(100);
        loop {
            let catalog = self.catalog.clone();
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
            if self.sleep_or_shutdown(backoff, shutdown).await {
                return false;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }

        let total_partitions = self.all_partitions().len().max(1);
        let keep_per_partition = self.config.tail_cache_bytes / total_partitions;
        let mut released = 0;
        for (p, end) in &taken {
            let mut inner = p.inner.lock();
            if inner.deleted {
                continue;
            }
            released += inner.mark_uploaded(*end);
            inner.evict_uploaded(keep_per_partition);
        }
        self.release_upload_budget(released);
        let ends: HashMap<(Uuid, i32), i64> = self
            .all_partitions()
            .iter()
            .map(|p| ((p.topic_id, p.partition), p.inner.lock().uploaded_end))
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
        more || self.pending_upload.load(Ordering::Acquire) >= self.config.upload_bytes
    }

    /// Sleeps; returns true if shutdown was requested meanwhile.
    async fn sleep_or_shutdown(&self, d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => *shutdown.borrow(),
            _ = shutdown.changed() => true,
        }
    }
}
