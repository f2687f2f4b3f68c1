//! A cluster broker's write path and how it follows the other brokers.
//!
//! **Writes.** There is no partition leader and nothing on the broker's
//! disk. Produce requests of every partition gather into an open flush;
//! after `interval` (from its first batch) or once it holds `bytes`, the
//! flush is sealed and written as one object (batches as producers sent
//! them, grouped by partition in arrival order). Flushes' PUTs overlap (at
//! most `max_in_flight`), but their catalog commits run one at a time in
//! the order the flushes were sealed: one transaction per flush checks each
//! batch's producer sequence, assigns offsets from the partitions' ends,
//! writes the index rows and advances the ends (see
//! [`sluice_catalog::LogIndex::commit_flush`]). Only then are the requests
//! answered. A PUT or commit that fails within `timeout` answers its
//! requests with a retriable error and acknowledges nothing; the object it
//! may have left behind is garbage collected later.
//!
//! **Following.** Every commit is announced through the catalog's change
//! feed; [`LogStore::apply_data_change`] takes the new rows and ends, so
//! long-polling fetches wake within milliseconds and tail reads find other
//! brokers' data without asking the database. Topic changes reload the
//! topic list ([`LogStore::refresh_topics`]); a reconnected feed reloads
//! everything it may have missed.

use crate::log::{
    blocking, load_ends, partitions_of, AppendError, AppendOutcome, LogStore, StorageError, Topic,
};
use crate::now_ms;
use crate::object::ObjectBuilder;
use crate::partition::{producer_seq, MemBatch, PartitionLog};
use crate::write_path::{PendingAppend, WritePath};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use sluice_catalog::changes::DataChange;
use sluice_catalog::{BatchOutcome, CatalogError, FlushBatch, FlushCommit, ObjectRecord, TxnPart};
use sluice_protocol::batch::{set_base_offset, set_log_append_time, BatchHeader, CheckedBatch};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use uuid::Uuid;

/// How a cluster broker gathers produce requests into flushes.
#[derive(Debug, Clone)]
pub struct FlushConfig {
    /// A flush is sealed this long after its first batch arrived...
    pub interval: Duration,
    /// ...or as soon as it holds this many bytes.
    pub bytes: usize,
    /// Sealed flushes whose PUT may be in flight at once.
    pub max_in_flight: usize,
    /// This broker's id (its flushes' notifications name it, and it skips
    /// them: it applied its own commits already).
    pub writer: i32,
    /// A flush not committed this long after it was sealed fails (its
    /// requests get a retriable error). Kept well below the garbage
    /// collector's grace, so no commit can name an object already deleted.
    pub timeout: Duration,
}

/// What a queued batch's producer learns when its flush is committed.
type Answer = oneshot::Sender<Result<i64, AppendError>>;

struct Queued {
    partition: Arc<PartitionLog>,
    bytes: Bytes,
    header: BatchHeader,
    max_timestamp: i64,
    answer: Answer,
}

#[derive(Default)]
struct Open {
    batches: Vec<Queued>,
    bytes: usize,
    since: Option<Instant>,
    /// Set at shutdown, after the last flush was sealed.
    closed: bool,
}

/// The cluster write path.
pub(crate) struct ClusterWrites {
    config: FlushConfig,
    open: Mutex<Open>,
    /// A first batch arrived, or the open flush reached its size.
    wake: Notify,
}

impl ClusterWrites {
    pub(crate) fn new(config: FlushConfig) -> Self {
        Self {
            config,
            open: Mutex::new(Open::default()),
            wake: Notify::new(),
        }
    }

    /// Takes the open flush (empty if nothing waits).
    fn seal(&self, close: bool) -> Vec<Queued> {
        let mut open = self.open.lock();
        open.closed |= close;
        open.bytes = 0;
        open.since = None;
        std::mem::take(&mut open.batches)
    }

    /// When the open flush is due: `None` while it is empty.
    fn due(&self) -> Option<Instant> {
        let open = self.open.lock();
        let since = open.since?;
        if open.bytes >= self.config.bytes {
            return Some(since);
        }
        Some(since + self.config.interval)
    }
}

impl WritePath for ClusterWrites {
    fn submit(
        &self,
        _store: &LogStore,
        p: &Arc<PartitionLog>,
        batches: Vec<CheckedBatch>,
        log_append_time: i64,
    ) -> (Result<PendingAppend, AppendError>, usize) {
        if p.is_deleted() {
            return (Err(AppendError::TopicDeleted), 0);
        }
        let mut answers = Vec::with_capacity(batches.len());
        let mut used = 0;
        {
            let mut open = self.open.lock();
            if open.closed {
                return (Err(AppendError::Wal(crate::wal::WalError::Closed)), 0);
            }
            let first = open.batches.is_empty();
            for b in batches {
                let (bytes, max_timestamp) = if log_append_time >= 0 {
                    let mut owned = BytesMut::from(&b.bytes[..]);
                    set_log_append_time(&mut owned, log_append_time);
                    (owned.freeze(), log_append_time)
                } else {
                    (b.bytes, b.header.max_timestamp)
                };
                let (tx, rx) = oneshot::channel();
                used += bytes.len();
                open.bytes += bytes.len();
                open.batches.push(Queued {
                    partition: p.clone(),
                    bytes,
                    header: b.header,
                    max_timestamp,
                    answer: tx,
                });
                answers.push(rx);
            }
            open.since.get_or_insert_with(Instant::now);
            if first || open.bytes >= self.config.bytes {
                self.wake.notify_one();
            }
        }
        let wait = async move {
            let mut first = None;
            for a in answers {
                let base = a
                    .await
                    .map_err(|_| AppendError::Wal(crate::wal::WalError::Closed))??;
                first.get_or_insert(base);
            }
            Ok(AppendOutcome {
                base_offset: first.unwrap_or(-1),
                log_append_time,
            })
        };
        (Ok(PendingAppend(Box::pin(wait))), used)
    }

    fn run(
        self: Arc<Self>,
        store: Arc<LogStore>,
        mut shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(self.config.max_in_flight.max(1));
            let committer = tokio::spawn(commit_in_order(
                store.clone(),
                rx,
                self.config.timeout,
                self.config.writer,
            ));
            loop {
                let stopping = *shutdown.borrow();
                if !stopping {
                    match self.due() {
                        None => {
                            tokio::select! {
                                _ = self.wake.notified() => {}
                                _ = shutdown.changed() => {}
                            }
                            continue;
                        }
                        Some(at) if at > Instant::now() => {
                            tokio::select! {
                                _ = tokio::time::sleep_until(at.into()) => {}
                                _ = self.wake.notified() => {}
                                _ = shutdown.changed() => {}
                            }
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                let sealed = self.seal(stopping);
                if !sealed.is_empty() {
                    let flush = Flush::build(sealed);
                    let put = tokio::spawn(flush.put(store.clone(), self.config.timeout));
                    if tx.send(put).await.is_err() {
                        break;
                    }
                }
                if stopping {
                    break;
                }
            }
            drop(tx);
            let _ = committer.await;
        })
    }

    fn forget(&self, _freed: usize) {
        // Queued batches of a deleted topic are refused by their commit.
    }

    fn shutdown(&self) {
        self.seal(true);
    }
}

/// A sealed flush: its object's bytes and the batches in it, in object order.
struct Flush {
    key: String,
    created_ms: i64,
    payload: Bytes,
    batches: Vec<FlushBatch>,
    waiting: Vec<(Arc<PartitionLog>, Answer)>,
    sealed: Instant,
}

impl Flush {
    /// Lays the batches out by partition (each partition's in arrival
    /// order), as one object whose offsets the commit will assign.
    fn build(sealed: Vec<Queued>) -> Flush {
        let total: usize = sealed.iter().map(|q| q.bytes.len()).sum();
        let mut order: Vec<(Uuid, i32)> = Vec::new();
        let mut groups: HashMap<(Uuid, i32), Vec<Queued>> = HashMap::new();
        for q in sealed {
            let key = (q.partition.topic_id(), q.partition.partition());
            groups
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(q);
        }
        let mut builder = ObjectBuilder::with_capacity(total);
        builder.offsets_unassigned();
        let mut batches = Vec::new();
        let mut waiting = Vec::new();
        for key in order {
            let mut relative = 0i64;
            for q in groups.remove(&key).unwrap_or_default() {
                let offsets = q.header.last_offset_delta as i64 + 1;
                let position = builder.position();
                builder.add_chunk(
                    key.0,
                    key.1,
                    &[MemBatch {
                        base_offset: relative,
                        last_offset: relative + offsets - 1,
                        max_timestamp: q.max_timestamp,
                        bytes: q.bytes.clone(),
                    }],
                );
                relative += offsets;
                batches.push(FlushBatch {
                    topic: key.0,
                    partition: key.1,
                    position,
                    length: q.bytes.len() as u64,
                    offsets,
                    max_timestamp: q.max_timestamp,
                    producer: producer_seq(&q.header).filter(|_| !q.header.is_control()),
                    txn: txn_part(&q.header, &q.bytes),
                });
                waiting.push((q.partition, q.answer));
            }
        }
        let (payload, _) = builder.finish();
        let created_ms = now_ms();
        let key = format!(
            "{}/{created_ms:013}-{}.obj",
            crate::maintenance::DATA_PREFIX,
            Uuid::new_v4().simple()
        );
        Flush {
            key,
            created_ms,
            payload,
            batches,
            waiting,
            sealed: Instant::now(),
        }
    }

    /// Writes the object, retrying until `timeout` has passed since the
    /// flush was sealed.
    async fn put(self, store: Arc<LogStore>, timeout: Duration) -> (Flush, Result<(), String>) {
        let deadline = self.sealed + timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match store.put_object(&self.key, self.payload.clone()).await {
                Ok(()) => {
                    sluice_observe::metrics()
                        .flush_seconds
                        .with_label_values(&["put"])
                        .observe(started.elapsed().as_secs_f64());
                    return (self, Ok(()));
                }
                Err(e) if Instant::now() + backoff >= deadline => {
                    let why = format!("writing object {}: {e}", self.key);
                    return (self, Err(why));
                }
                Err(e) => {
                    tracing::warn!(object = %self.key, error = %e, "flush PUT failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn fail(self, store: &LogStore, why: &str) {
        let bytes = self.payload_bytes();
        for (_, answer) in self.waiting {
            let _ = answer.send(Err(AppendError::Unavailable(why.to_string())));
        }
        store.release_upload_budget(bytes);
    }

    fn payload_bytes(&self) -> usize {
        self.batches.iter().map(|b| b.length as usize).sum()
    }
}

/// Commits sealed flushes one at a time, in the order they were sealed.
async fn commit_in_order(
    store: Arc<LogStore>,
    mut rx: mpsc::Receiver<tokio::task::JoinHandle<(Flush, Result<(), String>)>>,
    timeout: Duration,
    writer: i32,
) {
    while let Some(put) = rx.recv().await {
        let (flush, written) = match put.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "a flush PUT task failed");
                continue;
            }
        };
        if let Err(why) = written {
            tracing::warn!(error = %why, "flush failed: its requests get a retriable error");
            flush.fail(&store, &why);
            continue;
        }
        let commit = Arc::new(FlushCommit {
            writer,
            fence: store.fence(),
            object: ObjectRecord {
                key: flush.key.clone(),
                size: flush.payload.len() as u64,
                created_ms: flush.created_ms,
            },
            batches: flush.batches.clone(),
            max_row_bytes: crate::object::INDEX_ROW_BYTES,
            max_age_ms: timeout.as_millis().min(i64::MAX as u128) as i64,
        });
        let deadline = flush.sealed + timeout;
        let mut backoff = Duration::from_millis(50);
        let outcome = loop {
            let started = Instant::now();
            let catalog = store.catalog.clone();
            let c = commit.clone();
            match blocking(move || catalog.commit_flush(&c)).await {
                Ok(o) => {
                    sluice_observe::metrics()
                        .flush_seconds
                        .with_label_values(&["commit"])
                        .observe(started.elapsed().as_secs_f64());
                    break Ok(o);
                }
                // The database was unreachable: the commit may be retried
                // (a retry of one that did land fails on the object's key,
                // below, and nothing is acknowledged twice).
                Err(StorageError::Catalog(e))
                    if e.is_transient() && Instant::now() + backoff < deadline =>
                {
                    tracing::warn!(object = %flush.key, error = %e, "flush commit failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(o) => deliver(&store, flush, o),
            Err(e) => {
                tracing::warn!(object = %flush.key, error = %e, "flush commit failed: its requests get a retriable error");
                let why = match &e {
                    StorageError::Catalog(CatalogError::Conflict(m)) => m.clone(),
                    other => other.to_string(),
                };
                flush.fail(&store, &why);
            }
        }
    }
}

/// What a queued batch is to transactions.
fn txn_part(h: &sluice_protocol::batch::BatchHeader, bytes: &bytes::Bytes) -> Option<TxnPart> {
    if !h.is_transactional() || !h.has_producer_id() {
        return None;
    }
    if !h.is_control() {
        return Some(TxnPart::Data);
    }
    let marker = sluice_protocol::records::marker_of(bytes)?;
    Some(TxnPart::Marker {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        commit: marker == sluice_protocol::records::Marker::Commit,
    })
}

/// Answers a committed flush's requests and keeps its batches, at their
/// offsets, as the partitions' tail.
fn deliver(store: &LogStore, flush: Flush, outcome: sluice_catalog::FlushOutcome) {
    let bytes = flush.payload_bytes();
    let m = sluice_observe::metrics();
    m.flush_seconds
        .with_label_values(&["total"])
        .observe(flush.sealed.elapsed().as_secs_f64());
    let ends: HashMap<(Uuid, i32), (i64, i64)> = outcome
        .ends
        .iter()
        .map(|e| ((e.topic, e.partition), (e.log_start, e.end)))
        .collect();
    let keep = store.config.tail_cache_bytes / store.partition_count().max(1);
    // Each appended batch is copied out of the flush's buffer with its
    // offset: a slice would keep the whole buffer alive for as long as one
    // partition's tail holds one small batch of it.
    let mut tails: HashMap<(Uuid, i32), (Arc<PartitionLog>, Vec<MemBatch>)> = HashMap::new();
    for ((b, o), (p, _)) in flush
        .batches
        .iter()
        .zip(&outcome.outcomes)
        .zip(&flush.waiting)
    {
        let BatchOutcome::Appended { base_offset } = *o else {
            continue;
        };
        let at = b.position as usize;
        let mut bytes = BytesMut::from(&flush.payload[at..at + b.length as usize]);
        set_base_offset(&mut bytes, base_offset);
        tails
            .entry((b.topic, b.partition))
            .or_insert_with(|| (p.clone(), Vec::new()))
            .1
            .push(MemBatch {
                base_offset,
                last_offset: base_offset + b.offsets - 1,
                max_timestamp: b.max_timestamp,
                bytes: bytes.freeze(),
            });
    }
    let mut moved = false;
    for (key, (p, batches)) in tails {
        if let Some((log_start, end)) = ends.get(&key) {
            moved |= p.committed(batches, *log_start, *end, keep);
        }
    }
    for ((_, answer), (b, o)) in flush
        .waiting
        .into_iter()
        .zip(flush.batches.iter().zip(outcome.outcomes))
    {
        let result = match o {
            BatchOutcome::Appended { base_offset } | BatchOutcome::Duplicate { base_offset } => {
                Ok(base_offset)
            }
            BatchOutcome::OutOfOrder => Err(AppendError::OutOfOrderSequence(
                b.producer.map(|s| s.producer_id).unwrap_or(-1),
            )),
            BatchOutcome::StaleEpoch => Err(AppendError::StaleEpoch(
                b.producer.map(|s| s.producer_id).unwrap_or(-1),
            )),
            BatchOutcome::UnknownPartition => Err(AppendError::TopicDeleted),
            BatchOutcome::NotInTransaction => Err(AppendError::NotInTransaction(
                b.producer.map(|s| s.producer_id).unwrap_or(-1),
            )),
        };
        let _ = answer.send(result);
    }
    store.release_upload_budget(bytes);
    if moved {
        store.data_changed();
    }
}

impl LogStore {
    /// Takes another broker's commit heard on the change feed: new index
    /// rows for tail readers, and the partitions' ends. This broker's own
    /// flushes are skipped: it applies them when their commit returns, and
    /// the notification can arrive first (a reader woken by it would find
    /// the new offsets before the batches reach the tail, and read them
    /// from the object store).
    pub fn apply_data_change(&self, change: &DataChange) {
        if change.writer.is_some() && change.writer == self.config.flush.as_ref().map(|f| f.writer)
        {
            return;
        }
        let mut moved = false;
        {
            let map = self.topics.read();
            // Transactions first: new ends must not show open data as stable.
            for t in &change.txns {
                if let Some(p) = map.partition(&t.topic, t.partition) {
                    p.learn_txn(t.producer_id, t.offset, t.marker);
                }
            }
            for r in &change.rows {
                if let Some(p) = map.partition(&r.topic, r.partition) {
                    p.learn_row(r.clone());
                }
            }
            for e in &change.ends {
                if let Some(p) = map.partition(&e.topic, e.partition) {
                    moved |= p.learn(e.log_start, e.end);
                }
            }
        }
        if moved {
            self.data_changed();
        }
    }

    /// Reloads every partition's transaction index from the catalog, after
    /// the change feed reconnected (notifications may have been missed;
    /// those heard after this replay onto it harmlessly). A flush of this
    /// broker committing meanwhile could be forgotten, so this is done only
    /// then, not on the periodic refresh.
    pub async fn reload_txns(&self) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let txns = blocking(move || catalog.partition_txns()).await?;
        let mut by_partition: HashMap<(Uuid, i32), Vec<sluice_catalog::TxnIndexEntry>> = txns
            .into_iter()
            .map(|t| ((t.topic, t.partition), t.entries))
            .collect();
        for p in self.all_partitions() {
            p.replace_txns(
                by_partition
                    .remove(&(p.topic_id(), p.partition()))
                    .unwrap_or_default(),
            );
        }
        Ok(())
    }

    /// Reloads the topic list and every partition's ends and size from the
    /// catalog: topics other brokers created, changed or deleted appear
    /// here, and ends a missed notification carried are learned.
    pub async fn refresh_topics(&self) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let (records, ends) =
            blocking(move || Ok((catalog.list_topics()?, load_ends(&*catalog)?))).await?;
        let mut moved = false;
        let mut dropped = Vec::new();
        {
            let mut map = self.topics.write();
            let live: HashMap<&str, Uuid> =
                records.iter().map(|r| (r.name.as_str(), r.id)).collect();
            // Gone, or deleted and created again under the same name.
            let stale: Vec<String> = map
                .topics()
                .filter(|t| live.get(t.record.name.as_str()) != Some(&t.record.id))
                .map(|t| t.record.name.clone())
                .collect();
            dropped.extend(stale.iter().filter_map(|n| map.remove(n)));
            for record in records {
                let topic = match map.get(&record.name).cloned() {
                    Some(t) if t.record == record => t,
                    known => {
                        let mut partitions =
                            known.map(|t| t.partitions.clone()).unwrap_or_default();
                        partitions.extend(partitions_of(&record, partitions.len() as i32, &ends));
                        let t = Arc::new(Topic { record, partitions });
                        map.insert(t.clone());
                        t
                    }
                };
                for p in &topic.partitions {
                    if let Some((end, start, bytes)) = ends.get(&(p.topic_id(), p.partition())) {
                        moved |= p.learn(*start, *end);
                        p.learn_size((*bytes).max(0) as u64);
                    }
                }
            }
        }
        for t in dropped {
            self.drop_topic(&t);
        }
        if moved {
            self.data_changed();
        }
        Ok(())
    }
}
