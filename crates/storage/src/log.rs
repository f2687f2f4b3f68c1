//! [`LogStore`]: the storage facade the broker talks to. It owns the topics
//! and partitions, hands produced batches to the write path (the embedded
//! broker's WAL, or a cluster broker's flushes; see [`crate::write_path`]),
//! reads from the in-memory tail or from objects, answers offset lookups,
//! and recovers from the catalog (and the WAL) on start.

use crate::block_cache::BlockCache;
use crate::partition::{InMemory, PartitionLog};
use crate::timestamps;
use crate::wal::WalError;
use crate::write_path::{PendingAppend, WritePath};
use crate::{now_ms, StorageConfig};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use sluice_catalog::{
    CatalogError, LogIndex, ProducerStore, SegmentRecord, TopicRecord, TopicStore,
};
use sluice_protocol::batch::{iter_stored, BatchHeader, CheckedBatch};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

/// What storage needs of the catalog: the data-plane index, topics and
/// producer state.
pub trait StorageCatalog: LogIndex + TopicStore + ProducerStore {}
impl<T: LogIndex + TopicStore + ProducerStore> StorageCatalog for T {}

/// Storage failures outside the produce and fetch paths.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("object store error: {0}")]
    Object(#[from] object_store::Error),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("object store request timed out: {0}")]
    Timeout(String),
    /// Stored data that does not read back as it was written.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("sequence number out of order for producer {0}")]
    OutOfOrderSequence(i64),
    #[error("producer {0} epoch is older than the current one")]
    StaleEpoch(i64),
    #[error("the topic was deleted")]
    TopicDeleted,
    /// A transactional batch whose partition is not in its producer's
    /// ongoing transaction (checked by the cluster's commit).
    #[error("producer {0} has no ongoing transaction with this partition")]
    NotInTransaction(i64),
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The shared storage (object store or catalog) could not make the data
    /// durable; nothing was acknowledged and a retry may succeed.
    #[error("shared storage is unavailable: {0}")]
    Unavailable(String),
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is outside the log [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The timestamp a batch's header gives its records: the append time for
/// LogAppendTime batches, else the first record's timestamp.
/// The timestamp of the record at `offset` in `batch`: from the header when
/// it is the batch's first record or the batch uses LogAppendTime, else by
/// decoding the batch (a committed offset inside a batch whose records span
/// minutes must not read the batch's first timestamp).
fn record_timestamp(batch: &[u8], offset: i64) -> Option<i64> {
    let h = BatchHeader::parse(batch).ok()?;
    if h.attributes & sluice_protocol::batch::ATTR_LOG_APPEND_TIME != 0 {
        return Some(h.max_timestamp);
    }
    if offset <= h.base_offset {
        return Some(h.base_timestamp);
    }
    let records = sluice_protocol::records::decode_batch(&Bytes::copy_from_slice(batch)).ok()?;
    records
        .iter()
        .find(|r| r.offset >= offset)
        .or(records.last())
        .map(|r| r.timestamp)
        .or(Some(h.base_timestamp))
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    /// The broker's append time when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
}

/// Result of a read.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    pub batches: Vec<Bytes>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start: i64,
}

/// A topic and its partitions. Replaced as a whole when its configs or
/// partition count change; the partitions are shared.
#[derive(Debug)]
pub struct Topic {
    pub record: TopicRecord,
    pub partitions: Vec<Arc<PartitionLog>>,
}

impl Topic {
    pub fn partition(&self, p: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(p).ok().and_then(|i| self.partitions.get(i))
    }

    pub fn config(&self, key: &str) -> Option<&str> {
        self.record.configs.get(key).map(String::as_str)
    }

    /// Whether `cleanup.policy` (a comma list of `delete` and `compact`,
    /// default `delete`) names `policy`.
    pub fn has_cleanup_policy(&self, policy: &str) -> bool {
        policy_names(self.config("cleanup.policy"), policy)
    }

    fn uses_log_append_time(&self) -> bool {
        self.config("message.timestamp.type") == Some("LogAppendTime")
    }
}

#[derive(Default)]
pub(crate) struct TopicMap {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

impl TopicMap {
    pub(crate) fn insert(&mut self, t: Arc<Topic>) {
        self.by_id.insert(t.record.id, t.clone());
        self.by_name.insert(t.record.name.clone(), t);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.by_name.get(name)
    }

    pub(crate) fn topics(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.by_name.values()
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let t = self.by_name.remove(name)?;
        self.by_id.remove(&t.record.id);
        Some(t)
    }

    pub(crate) fn partition(&self, topic: &Uuid, partition: i32) -> Option<&Arc<PartitionLog>> {
        self.by_id.get(topic).and_then(|t| t.partition(partition))
    }
}

/// Partition ends and sizes from the catalog, by (topic id, partition).
pub(crate) type Ends = HashMap<(Uuid, i32), (i64, i64, i64)>;

/// Builds a topic's partitions from the catalog's `ends`.
pub(crate) fn partitions_of(
    record: &TopicRecord,
    from: i32,
    ends: &Ends,
) -> Vec<Arc<PartitionLog>> {
    (from..record.partitions)
        .map(|p| {
            let (end, start, bytes) = ends.get(&(record.id, p)).copied().unwrap_or((0, 0, 0));
            Arc::new(PartitionLog::new(
                record.id,
                record.name.clone(),
                p,
                end,
                start,
                bytes.max(0) as u64,
            ))
        })
        .collect()
}

/// The storage facade.
pub struct LogStore {
    pub(crate) config: StorageConfig,
    pub(crate) catalog: Arc<dyn StorageCatalog>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) topics: RwLock<TopicMap>,
    pub(crate) writes: Arc<dyn WritePath>,
    data_version: Arc<watch::Sender<u64>>,
    /// Permits = bytes that may still be appended before they are in
    /// objects (uploaded, or flushed by a cluster broker).
    upload_budget: Semaphore,
    /// Replayed data beyond the budget, paid back before permits return.
    budget_debt: AtomicUsize,
    pub(crate) block_cache: Arc<BlockCache>,
    /// Index rows (object key, position) a read-ahead is fetching, each
    /// with the signal readers waiting for it get when it lands.
    read_ahead_inflight: Arc<Mutex<InflightRows>>,
    /// Read-ahead GETs in flight over all partitions (FIFO permits).
    read_ahead_requests: Arc<Semaphore>,
    /// Whether this broker runs retention, compaction and garbage
    /// collection (always alone; in a cluster, the broker chosen for it).
    maintains: AtomicBool,
    /// A cluster broker's lease, which its flush commits carry.
    fence: Mutex<Option<sluice_catalog::Fence>>,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
        .map_err(StorageError::from)
}

/// Whether a `cleanup.policy` value (absent: `delete`) names `policy`.
pub(crate) fn policy_names(value: Option<&str>, policy: &str) -> bool {
    value
        .unwrap_or("delete")
        .split(',')
        .any(|x| x.trim().eq_ignore_ascii_case(policy))
}

impl LogStore {
    /// Opens storage: loads topics, partition ends and producer state from
    /// the catalog, then opens the write path `config` names (replaying the
    /// embedded WAL's tail into memory).
    pub fn open(
        config: StorageConfig,
        catalog: Arc<dyn StorageCatalog>,
        objects: Arc<dyn ObjectStore>,
    ) -> Result<Arc<Self>, StorageError> {
        let ends = load_ends(&*catalog)?;
        let mut map = TopicMap::default();
        for record in catalog.list_topics()? {
            let partitions = partitions_of(&record, 0, &ends);
            map.insert(Arc::new(Topic { record, partitions }));
        }
        for ps in catalog.producer_states()? {
            if let Some(p) = map.partition(&ps.topic, ps.partition) {
                p.restore_producer(
                    ps.producer_id,
                    sluice_catalog::sequence::ProducerState {
                        epoch: ps.epoch,
                        batches: ps.batches.into_iter().collect(),
                    },
                );
            }
        }
        for pt in catalog.partition_txns()? {
            if let Some(p) = map.partition(&pt.topic, pt.partition) {
                p.restore_txns(pt.entries);
            }
        }
        let (version_tx, _) = watch::channel(0u64);
        let data_version = Arc::new(version_tx);
        let notify = data_version.clone();
        let on_durable: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            notify.send_modify(|v| *v += 1);
        });
        let (writes, replayed_bytes): (Arc<dyn WritePath>, usize) = match &config.flush {
            None => {
                let (w, replayed) =
                    crate::embedded::EmbeddedWrites::open(&config, &map, on_durable)?;
                (Arc::new(w), replayed)
            }
            Some(flush) => (
                Arc::new(crate::cluster::ClusterWrites::new(flush.clone())),
                0,
            ),
        };
        let budget = config.max_unuploaded_bytes.max(1);
        let block_cache_bytes = config.block_cache_bytes;
        Ok(Arc::new(Self {
            upload_budget: Semaphore::new(budget.saturating_sub(replayed_bytes)),
            budget_debt: AtomicUsize::new(replayed_bytes.saturating_sub(budget)),
            config,
            catalog,
            objects,
            topics: RwLock::new(map),
            writes,
            data_version,
            block_cache: Arc::new(BlockCache::new(block_cache_bytes)),
            read_ahead_inflight: Arc::default(),
            read_ahead_requests: Arc::new(Semaphore::new(READ_AHEAD_REQUESTS)),
            maintains: AtomicBool::new(true),
            fence: Mutex::new(None),
        }))
    }

    /// Whether this store shares its data with other brokers (cluster).
    pub fn is_shared(&self) -> bool {
        self.config.flush.is_some()
    }

    /// A receiver that changes whenever new data becomes durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// Wakes everyone waiting for new data.
    pub(crate) fn data_changed(&self) {
        self.data_version.send_modify(|v| *v += 1);
    }

    /// Runs the write path's background work (uploads or flushes) until
    /// `shutdown` turns true.
    pub async fn run_writes(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let writes = self.writes.clone();
        writes.run(self, shutdown).await
    }

    /// Says whether this broker runs the background upkeep of the shared
    /// data (retention, compaction, garbage collection).
    pub fn set_maintainer(&self, yes: bool) {
        sluice_observe::metrics().upkeep_holder.set(yes as i64);
        if self.maintains.swap(yes, Ordering::AcqRel) != yes {
            tracing::info!(maintainer = yes, "storage upkeep ownership changed");
        }
    }

    /// The lease a cluster broker's commits must hold (its id and epoch;
    /// updated when it registers again).
    pub fn set_fence(&self, fence: Option<sluice_catalog::Fence>) {
        *self.fence.lock() = fence;
    }

    pub(crate) fn fence(&self) -> Option<sluice_catalog::Fence> {
        *self.fence.lock()
    }

    pub(crate) fn is_maintainer(&self) -> bool {
        self.maintains.load(Ordering::Acquire)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.topics.read().by_id.get(id).cloned()
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        v
    }

    /// How many partitions there are (each gets an equal share of the tail
    /// cache).
    pub(crate) fn partition_count(&self) -> usize {
        self.topics
            .read()
            .by_name
            .values()
            .map(|t| t.partitions.len())
            .sum()
    }

    pub(crate) fn all_partitions(&self) -> Vec<Arc<PartitionLog>> {
        self.topics
            .read()
            .by_name
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Creates a topic (configs already validated by the caller). A topic
    /// another broker created meanwhile is [`StorageError::TopicExists`],
    /// and known here once this returns.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        if self.topic(name).is_some() {
            return Err(StorageError::TopicExists(name.to_string()));
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            created_ms: now_ms(),
        };
        let catalog = self.catalog.clone();
        let r = record.clone();
        match blocking(move || catalog.create_topic(&r)).await {
            Err(StorageError::Catalog(CatalogError::TopicExists(n))) => {
                if self.is_shared() {
                    self.refresh_topics().await?;
                }
                return Err(StorageError::TopicExists(n));
            }
            other => other?,
        }
        let parts = partitions_of(&record, 0, &Ends::new());
        let topic = Arc::new(Topic {
            record,
            partitions: parts,
        });
        let mut map = self.topics.write();
        // A refresh may have brought it in meanwhile.
        if let Some(existing) = map.by_name.get(name) {
            return Ok(existing.clone());
        }
        map.insert(topic.clone());
        Ok(topic)
    }

    /// Deletes a topic. Its data stops being served at once; index rows go
    /// with it (objects are collected by the storage GC).
    pub async fn delete_topic(&self, name: &str) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let n = name.to_string();
        match blocking(move || catalog.delete_topic(&n)).await {
            Err(StorageError::Catalog(CatalogError::NoSuchTopic(n))) => {
                return Err(StorageError::NoSuchTopic(n))
            }
            other => other?,
        };
        self.forget_topic(name);
        Ok(())
    }

    /// Drops a deleted topic from memory.
    pub(crate) fn forget_topic(&self, name: &str) {
        let removed = self.topics.write().remove(name);
        if let Some(t) = removed {
            self.drop_topic(&t);
        }
    }

    /// Stops serving a topic taken out of the map: its partitions refuse
    /// appends, their memory (and append budget) is freed, and its series
    /// leave /metrics (a topic created again under the name counts from 0).
    pub(crate) fn drop_topic(&self, t: &Topic) {
        let freed: usize = t.partitions.iter().map(|p| p.mark_deleted()).sum();
        self.writes.forget(freed);
        self.release_upload_budget(freed);
        sluice_observe::metrics().remove_topic(&t.record.name);
    }

    /// Raises a topic's partition count to `total`.
    pub async fn add_partitions(&self, name: &str, total: i32) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let n = name.to_string();
        blocking(move || catalog.set_partition_count(&n, total)).await?;
        let mut map = self.topics.write();
        let old = map
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NoSuchTopic(name.to_string()))?;
        let mut record = old.record.clone();
        record.partitions = total;
        let mut partitions = old.partitions.clone();
        partitions.extend(partitions_of(
            &record,
            old.partitions.len() as i32,
            &Ends::new(),
        ));
        map.insert(Arc::new(Topic { record, partitions }));
        Ok(())
    }

    /// Replaces a topic's explicit configs (validated by the caller).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let catalog = self.catalog.clone();
        let n = name.to_string();
        let c = configs.clone();
        blocking(move || catalog.set_topic_configs(&n, &c)).await?;
        let mut map = self.topics.write();
        let old = map
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NoSuchTopic(name.to_string()))?;
        let mut record = old.record.clone();
        record.configs = configs;
        map.insert(Arc::new(Topic {
            record,
            partitions: old.partitions.clone(),
        }));
        Ok(())
    }

    /// Returns `bytes` of append budget once they are in objects (or gone).
    pub(crate) fn release_upload_budget(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut give = bytes;
        let _ = self
            .budget_debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
                let pay = debt.min(bytes);
                give = bytes - pay;
                Some(debt - pay)
            });
        self.upload_budget.add_permits(give);
    }

    /// Stops taking appends: producers waiting for upload budget get an
    /// error at once (shutdown).
    pub fn stop_appends(&self) {
        self.upload_budget.close();
    }

    /// Appends checked batches to a partition and waits until they are
    /// durable. Idempotent retries are answered with their original offsets.
    pub async fn append(
        &self,
        topic: &Topic,
        p: &Arc<PartitionLog>,
        batches: Vec<CheckedBatch>,
    ) -> Result<AppendOutcome, AppendError> {
        self.submit(topic, p, batches).await?.wait().await
    }

    /// First half of an append: waits for budget (backpressure while too
    /// much data is not yet in objects), then queues the batches on the
    /// write path in call order. Callers that must keep a client's order
    /// (one connection's pipelined produce requests) call this in sequence
    /// and may then wait for durability concurrently with
    /// [`PendingAppend::wait`].
    pub async fn submit(
        &self,
        topic: &Topic,
        p: &Arc<PartitionLog>,
        batches: Vec<CheckedBatch>,
    ) -> Result<PendingAppend, AppendError> {
        let total: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let want = total.min(self.config.max_unuploaded_bytes.max(1)) as u32;
        match self.upload_budget.acquire_many(want).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(AppendError::Wal(WalError::Closed)),
        }
        let log_append_time = if topic.uses_log_append_time() {
            now_ms()
        } else {
            -1
        };
        let (submitted, used) = self.writes.submit(self, p, batches, log_append_time);
        // Permits not turned into bytes on their way to objects go back.
        if want as usize > used {
            self.upload_budget.add_permits(want as usize - used);
        }
        submitted
    }
}

/// Partition ends and sizes from the catalog.
pub(crate) fn load_ends(catalog: &dyn StorageCatalog) -> Result<Ends, CatalogError> {
    Ok(catalog
        .partition_states()?
        .into_iter()
        .map(|s| {
            (
                (s.topic, s.partition),
                (s.uploaded_end, s.log_start, s.bytes),
            )
        })
        .collect())
}

impl LogStore {
    /// Reads batches starting at the one holding `offset`, up to `max_bytes`
    /// (the first batch is returned whatever its size).
    pub async fn read(
        &self,
        p: &PartitionLog,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadOutcome, ReadError> {
        let (log_start, hw, in_memory) = p.read_position(offset);
        if offset < log_start || offset > hw {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let mut out = ReadOutcome {
            high_watermark: hw,
            log_start,
            ..Default::default()
        };
        if offset == hw {
            return Ok(out);
        }
        let source = if in_memory { "tail" } else { "object" };
        sluice_observe::metrics()
            .read_source
            .with_label_values(&[source])
            .inc();
        if !in_memory {
            self.read_objects(p, offset, max_bytes, hw, &mut out)
                .await?;
            if !out.batches.is_empty() {
                return Ok(out);
            }
        }
        p.read_mem(offset, max_bytes, hw, &mut out);
        Ok(out)
    }

    /// Index rows of `p` from the one holding `offset`: the rows other
    /// brokers just published when they cover it, else the catalog's.
    async fn segments_from(
        &self,
        p: &PartitionLog,
        offset: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRecord>, StorageError> {
        if let Some(rows) = p.recent_rows(offset, limit) {
            return Ok(rows);
        }
        let catalog = self.catalog.clone();
        let (t, part) = (p.topic_id(), p.partition());
        blocking(move || catalog.segments_from(t, part, offset, limit)).await
    }

    /// One index row's bytes: from the block cache, else from the object
    /// store (then cached).
    pub(crate) async fn fetch_row(&self, row: &SegmentRecord) -> Result<Bytes, StorageError> {
        if let Some(b) = self.block_cache.get(&row.object_key, row.position) {
            return Ok(b);
        }
        self.fetch_missed_row(row).await
    }

    /// A row the block cache did not have (that lookup already counted):
    /// takes it from the cache if a read-ahead has landed it since, waits for
    /// a read-ahead fetching it, else reads it (then cached).
    async fn fetch_missed_row(&self, row: &SegmentRecord) -> Result<Bytes, StorageError> {
        if let Some(b) = self.block_cache.peek(&row.object_key, row.position) {
            return Ok(b);
        }
        // A read-ahead is fetching it: wait for that instead of a second GET.
        let key = (row.object_key.clone(), row.position);
        let pending = self.read_ahead_inflight.lock().get(&key).cloned();
        if let Some(signal) = pending {
            let landed = signal.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            if self.read_ahead_inflight.lock().contains_key(&key) {
                let _ = tokio::time::timeout(self.config.request_timeout, landed).await;
            }
            if let Some(b) = self.block_cache.peek(&row.object_key, row.position) {
                return Ok(b);
            }
        }
        let data = get_row(&*self.objects, row, self.config.request_timeout).await?;
        self.block_cache
            .insert(&row.object_key, row.position, data.clone());
        Ok(data)
    }

    /// Several index rows' bytes, in order: cached ones from the block
    /// cache, ones a read-ahead is fetching from it, the rest with one ranged
    /// GET per run of side-by-side rows (then cached).
    async fn fetch_rows(&self, rows: &[SegmentRecord]) -> Result<Vec<Bytes>, StorageError> {
        let mut out: Vec<Option<Bytes>> = rows
            .iter()
            .map(|r| self.block_cache.get(&r.object_key, r.position))
            .collect();
        let absent: Vec<SegmentRecord> = {
            let busy = self.read_ahead_inflight.lock();
            rows.iter()
                .zip(&out)
                .filter(|(r, got)| {
                    got.is_none() && !busy.contains_key(&(r.object_key.clone(), r.position))
                })
                .map(|(r, _)| r.clone())
                .collect()
        };
        for (span, parts) in crate::object::adjacent_reads(&absent, READ_AHEAD_SPAN_BYTES) {
            if parts.len() < 2 {
                continue; // fetch_row below
            }
            let data = get_range_timed(&*self.objects, &span, self.config.request_timeout).await?;
            for r in &parts {
                let Some(slice) = row_in_span(&span, &data, r) else {
                    continue;
                };
                self.block_cache
                    .insert(&r.object_key, r.position, slice.clone());
                if let Some(i) = rows
                    .iter()
                    .position(|x| x.object_key == r.object_key && x.position == r.position)
                {
                    out[i] = Some(slice);
                }
            }
        }
        let mut datas = Vec::with_capacity(rows.len());
        for (r, got) in rows.iter().zip(out) {
            datas.push(match got {
                Some(b) => b,
                None => self.fetch_missed_row(r).await?,
            });
        }
        Ok(datas)
    }

    /// Reads `row` for a background task (compaction): from the block cache
    /// when it is there, else from the object store without filling the
    /// cache, so background reads never evict what consumers read.
    pub(crate) async fn fetch_row_uncached(
        &self,
        row: &SegmentRecord,
    ) -> Result<Bytes, StorageError> {
        // The row may span several cached rows: only a whole match counts.
        if let Some(b) = self.block_cache.peek(&row.object_key, row.position) {
            if b.len() as u64 == row.length {
                return Ok(b);
            }
        }
        get_row(&*self.objects, row, self.config.request_timeout).await
    }

    /// Keeps the block cache a window of bytes ahead of a catch-up reader at
    /// `after` whose fetches take `budget` bytes, in the background: rows
    /// neither cached nor already being fetched are read, side-by-side rows
    /// of one object with one ranged GET (compacted objects hold a
    /// partition's rows in order, so a span is usually one request), and the
    /// spans concurrently.
    fn read_ahead(&self, p: &PartitionLog, after: &SegmentRecord, budget: usize) {
        if self.config.read_ahead_bytes == 0 {
            return;
        }
        let window = self
            .config
            .read_ahead_bytes
            .max(budget.saturating_mul(READ_AHEAD_FETCHES))
            .min(self.config.block_cache_bytes / 4) as u64;
        let (catalog, objects, cache, inflight, requests) = (
            self.catalog.clone(),
            self.objects.clone(),
            self.block_cache.clone(),
            self.read_ahead_inflight.clone(),
            self.read_ahead_requests.clone(),
        );
        let (t, part, from, timeout) = (
            p.topic_id(),
            p.partition(),
            after.last_offset + 1,
            self.config.request_timeout,
        );
        // Rounds of at most READ_AHEAD_NEW_SPANS spans each, until the window
        // is full: the window fills without waiting for the reader's next
        // fetches, and partitions starting together take turns. The task
        // ends when nothing is left to read, on a failed read, or once it
        // has read a window's worth (a cache too small to hold the window
        // would otherwise keep it reading); the reader's next fetch starts
        // another.
        let read_ahead = async move {
            let mut read = 0u64;
            while read < window {
                let catalog = catalog.clone();
                let mut rows = match tokio::task::spawn_blocking(move || {
                    catalog.segments_from(t, part, from, READ_AHEAD_MAX_ROWS)
                })
                .await
                {
                    Ok(Ok(rows)) => rows,
                    _ => return,
                };
                rows.truncate(rows_within(&rows, window));
                let spans = {
                    let mut busy = inflight.lock();
                    let claimed = |r: &SegmentRecord| {
                        cache.contains(&r.object_key, r.position)
                            || busy.contains_key(&(r.object_key.clone(), r.position))
                    };
                    // Less than a span missing: wait, so that each read-ahead
                    // is a span of several rows, not one row at a time.
                    let ready: u64 = rows
                        .iter()
                        .take_while(|r| claimed(r))
                        .map(|r| r.length)
                        .sum();
                    if ready + READ_AHEAD_SPAN_BYTES.min(window / 2) > window {
                        return;
                    }
                    let missing: Vec<SegmentRecord> =
                        rows.into_iter().filter(|r| !claimed(r)).collect();
                    let mut spans = crate::object::adjacent_reads(&missing, READ_AHEAD_SPAN_BYTES);
                    spans.truncate(READ_AHEAD_NEW_SPANS);
                    if spans.is_empty() {
                        return;
                    }
                    read += spans.iter().map(|(span, _)| span.length).sum::<u64>();
                    for (_, parts) in &spans {
                        for r in parts {
                            busy.insert((r.object_key.clone(), r.position), Arc::default());
                        }
                    }
                    spans
                };
                let reads = spans.into_iter().map(|(span, parts)| {
                    read_ahead_span(&objects, &cache, &inflight, &requests, span, parts, timeout)
                });
                if futures::future::join_all(reads).await.contains(&false) {
                    return;
                }
            }
        };
        tokio::spawn(crate::disk_lane::in_background(read_ahead));
    }

    /// Writes an object (with a timeout and metrics).
    pub(crate) async fn put_object(&self, key: &str, payload: Bytes) -> Result<(), StorageError> {
        let path = ObjectPath::from(key);
        let len = payload.len() as u64;
        timed_request(
            "put",
            key,
            self.config.request_timeout,
            self.objects.put(&path, payload.into()),
        )
        .await?;
        let m = sluice_observe::metrics();
        m.objects_written.inc();
        m.upload_bytes.inc_by(len);
        Ok(())
    }

    /// Timestamp of the record at `offset` (the append time for
    /// LogAppendTime batches); only a batch whose first record is not the
    /// one asked for is decoded. `None` past the end.
    pub async fn timestamp_at(
        &self,
        p: &PartitionLog,
        offset: i64,
    ) -> Result<Option<i64>, StorageError> {
        match p.mem_batch_at(offset) {
            InMemory::PastEnd => return Ok(None),
            InMemory::Found(b) => return Ok(record_timestamp(&b, offset)),
            InMemory::No => {}
        }
        for seg in self.segments_from(p, offset, 1).await? {
            let data = self.fetch_row(&seg).await?;
            for (h, range) in iter_stored(&data) {
                if h.last_offset() >= offset {
                    return Ok(record_timestamp(&data[range], offset));
                }
            }
        }
        Ok(None)
    }

    /// (bytes held in memory, bytes not yet uploaded) over all partitions.
    /// Not yet uploaded is also what the upload budget says is taken: in a
    /// cluster, produce data waits in flushes, not in partitions.
    pub fn memory_usage(&self) -> (usize, usize) {
        let (mem, unuploaded) = self.all_partitions().iter().fold((0, 0), |(m, u), p| {
            let (mem, unuploaded) = p.memory();
            (m + mem, u + unuploaded)
        });
        let budget_taken = self
            .config
            .max_unuploaded_bytes
            .max(1)
            .saturating_sub(self.upload_budget.available_permits());
        (mem, unuploaded.max(budget_taken))
    }

    /// Catch-up read from objects. An object deleted under a reader (by
    /// compaction's garbage collection) is retried once with fresh rows.
    async fn read_objects(
        &self,
        p: &PartitionLog,
        offset: i64,
        max_bytes: usize,
        hw: i64,
        out: &mut ReadOutcome,
    ) -> Result<(), StorageError> {
        match self.read_objects_once(p, offset, max_bytes, hw, out).await {
            Err(StorageError::Object(object_store::Error::NotFound { .. })) => {
                p.forget_recent();
                *out = ReadOutcome {
                    high_watermark: out.high_watermark,
                    log_start: out.log_start,
                    ..Default::default()
                };
                self.read_objects_once(p, offset, max_bytes, hw, out).await
            }
            other => other,
        }
    }

    async fn read_objects_once(
        &self,
        p: &PartitionLog,
        offset: i64,
        max_bytes: usize,
        hw: i64,
        out: &mut ReadOutcome,
    ) -> Result<(), StorageError> {
        let mut rows = self.segments_from(p, offset, FETCH_MAX_ROWS).await?;
        // The rows this fetch needs (about max_bytes of them), read together:
        // side-by-side rows of one object with one ranged GET.
        rows.truncate(rows_within(&rows, max_bytes as u64).max(1));
        if let Some(last) = rows.last() {
            self.read_ahead(p, last, max_bytes);
        }
        let datas = self.fetch_rows(&rows).await?;
        for data in datas {
            for (h, range) in iter_stored(&data) {
                if h.last_offset() < offset {
                    continue;
                }
                if h.last_offset() >= hw {
                    return Ok(());
                }
                let len = range.len();
                if !out.batches.is_empty() && out.bytes + len > max_bytes {
                    return Ok(());
                }
                out.bytes += len;
                out.batches.push(data.slice(range));
                if out.bytes >= max_bytes {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The first offset whose record timestamp is at or after `ts`, with
    /// that record's timestamp; `None` when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        p: &PartitionLog,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let catalog = self.catalog.clone();
        let (t, part) = (p.topic_id(), p.partition());
        let log_start = p.offsets().0;
        let seg = blocking(move || catalog.first_segment_at_or_after_time(t, part, ts)).await?;
        if let Some(seg) = seg {
            let data = self.fetch_row(&seg).await?;
            let batches: Vec<Bytes> = iter_stored(&data).map(|(_, r)| data.slice(r)).collect();
            if let Some((off, found_ts)) = timestamps::find_in_batches(&batches, ts) {
                return Ok(Some((off.max(log_start), found_ts)));
            }
        }
        let batches = p.mem_batches_from_time(ts);
        Ok(timestamps::find_in_batches(&batches, ts))
    }

    /// Stops taking appends and lets the write path finish what it holds
    /// (the embedded WAL flushes its queue).
    pub fn shutdown(&self) {
        self.upload_budget.close();
        self.writes.shutdown();
    }
}

/// How many of `rows`, from the first, it takes to cover `bytes` (the row
/// that crosses the limit included).
fn rows_within(rows: &[SegmentRecord], bytes: u64) -> usize {
    let mut covered = 0u64;
    rows.iter()
        .take_while(|r| {
            let more = covered < bytes;
            covered += r.length;
            more
        })
        .count()
}

/// The bytes of `row` within `data`, the bytes of `span` (a ranged GET that
/// covered it); `None` if the span came back short.
fn row_in_span(span: &SegmentRecord, data: &Bytes, row: &SegmentRecord) -> Option<Bytes> {
    let at = usize::try_from(row.position.checked_sub(span.position)?).ok()?;
    let end = at.checked_add(usize::try_from(row.length).ok()?)?;
    (end <= data.len()).then(|| crate::object::settle(row, data.slice(at..end)))
}

/// Rows being read ahead: (object key, position) → signal for waiters.
type InflightRows = HashMap<(String, u64), Arc<tokio::sync::Notify>>;

/// Fetches' worth of bytes read-ahead keeps ready for a catch-up reader.
/// With two, a reader taking 8 MiB per fetch found its next rows still in
/// flight on most fetches and waited 30-130 ms for them (traced per fetch).
const READ_AHEAD_FETCHES: usize = 4;

/// Spans one round of a read-ahead reads at most: when many partitions start
/// catching up at once, their first spans are read before anyone's fourth.
const READ_AHEAD_NEW_SPANS: usize = 2;

/// Largest span one read-ahead GET covers.
/// (Two blocks short of 8 MiB, so a span with its alignment fits the read
/// buffers' 8 MiB class.)
const READ_AHEAD_SPAN_BYTES: u64 = (8 << 20) - 2 * crate::read_buffers::BLOCK as u64;

/// Most index rows one catch-up fetch of a partition reads (it stops at its
/// byte budget first unless the rows are small).
const FETCH_MAX_ROWS: usize = 64;

/// Read-ahead GETs in flight over all partitions. The permits are handed
/// out in request order, so with many partitions catching up the oldest
/// spans land first: with each partition's spans all in flight at once, a
/// local disk reading them side by side would read ~100 MiB before the
/// first span landed.
const READ_AHEAD_REQUESTS: usize = 4;

/// Most index rows one read-ahead looks at (rows of uncompacted objects can
/// be small; the byte window decides).
const READ_AHEAD_MAX_ROWS: usize = 256;

/// One object store request with a timeout, counted and timed in the metrics.
async fn timed_request<T>(
    op: &'static str,
    key: &str,
    timeout: std::time::Duration,
    request: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, StorageError> {
    let m = sluice_observe::metrics();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, request).await;
    m.object_request_seconds
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
    let ok = matches!(result, Ok(Ok(_)));
    m.object_requests
        .with_label_values(&[op, if ok { "ok" } else { "error" }])
        .inc();
    match result {
        Ok(r) => Ok(r?),
        Err(_) => Err(StorageError::Timeout(format!("{op} {key}"))),
    }
}

/// One read-ahead GET: reads `span` (when a store-wide request permit
/// comes), caches each of its rows `parts`, and wakes the fetches waiting
/// for them. Returns whether the read succeeded.
async fn read_ahead_span(
    objects: &Arc<dyn ObjectStore>,
    cache: &BlockCache,
    inflight: &Mutex<InflightRows>,
    requests: &tokio::sync::Semaphore,
    span: SegmentRecord,
    parts: Vec<SegmentRecord>,
    timeout: std::time::Duration,
) -> bool {
    let got = match requests.acquire().await {
        Ok(_permit) => get_range_timed(&**objects, &span, timeout).await.ok(),
        Err(_) => None,
    };
    if let Some(data) = &got {
        for r in &parts {
            if let Some(slice) = row_in_span(&span, data, r) {
                cache.insert(&r.object_key, r.position, slice);
            }
        }
    }
    let mut busy = inflight.lock();
    for r in &parts {
        if let Some(signal) = busy.remove(&(r.object_key.clone(), r.position)) {
            signal.notify_waiters();
        }
    }
    got.is_some()
}

/// One index row's batches read from its object, with their offsets
/// (see [`crate::object::settle`]).
async fn get_row(
    objects: &dyn ObjectStore,
    row: &SegmentRecord,
    timeout: std::time::Duration,
) -> Result<Bytes, StorageError> {
    let data = get_range_timed(objects, row, timeout).await?;
    Ok(crate::object::settle(row, data))
}

/// A ranged GET of one index row (or span of rows), with a timeout and
/// metrics.
async fn get_range_timed(
    objects: &dyn ObjectStore,
    row: &SegmentRecord,
    timeout: std::time::Duration,
) -> Result<Bytes, StorageError> {
    let path = ObjectPath::from(row.object_key.as_str());
    let range = row.position..row.position + row.length;
    timed_request(
        "get",
        &row.object_key,
        timeout,
        objects.get_range(&path, range),
    )
    .await
}

#[cfg(test)]
mod record_timestamp_tests {
    use super::record_timestamp;
    use sluice_protocol::records::{encode_batch, RawRecord};

    #[test]
    fn a_record_inside_a_batch_has_its_own_timestamp() {
        let records: Vec<RawRecord> = (0..3)
            .map(|i| RawRecord {
                offset: i,
                timestamp: 1_000 + i * 60_000,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Vec::new(),
            })
            .collect();
        let batch = encode_batch(&records).unwrap();
        assert_eq!(record_timestamp(&batch, 0), Some(1_000));
        assert_eq!(record_timestamp(&batch, 2), Some(121_000));
        // Past the batch's last record: its last timestamp.
        assert_eq!(record_timestamp(&batch, 9), Some(121_000));
    }
}
