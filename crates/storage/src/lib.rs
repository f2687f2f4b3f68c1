//! Sluice's storage engine: where produced record batches become durable and
//! where fetches find them.
//!
//! - [`log`]: [`LogStore`], the facade the broker uses (topics, append, read,
//!   offset lookups, recovery).
//! - [`write_path`]: how produced batches become durable, one of two ways
//!   chosen at start-up: [`embedded`] (the local write-ahead log of
//!   [`wal`], offsets assigned in memory, background uploads to objects) or
//!   [`cluster`] (flushes straight to shared objects, offsets assigned by the
//!   catalog's commit, other brokers' commits followed through its change
//!   feed).
//! - [`partition`]: per-partition offsets, high watermark, in-memory tail and
//!   idempotent-producer state.
//! - [`object`]: the immutable object format in the object store.
//! - [`timestamps`]: exact offset-for-timestamp lookups inside batches.
//! - [`bulk`]: the second runtime for catch-up reads and large writes.
//! - [`disk_lane`]: turns at the local disk for object reads and WAL commits.

pub mod block_cache;
pub mod bulk;
pub mod cleaner;
pub mod cluster;
pub mod disk_lane;
pub mod embedded;
pub mod faults;
pub mod local_direct;
pub mod log;
pub mod maintenance;
pub mod object;
pub mod partition;
pub mod read_buffers;
pub mod store_url;
pub mod timestamps;
mod txn_index;
pub mod wal;
pub mod write_path;

pub use cluster::FlushConfig;
pub use log::{
    AppendError, AppendOutcome, LogStore, ReadError, ReadOutcome, StorageCatalog, StorageError,
    Topic,
};
pub use partition::PartitionLog;
pub use write_path::PendingAppend;

use std::path::PathBuf;
use std::time::Duration;

/// Storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Directory of the write-ahead log segments.
    pub wal_dir: PathBuf,
    /// A WAL segment is closed (and becomes deletable) past this size.
    pub wal_segment_bytes: u64,
    /// Upload as soon as this much durable data waits for upload.
    pub upload_bytes: usize,
    /// Upload at least this often when any data waits.
    pub upload_interval: Duration,
    /// Upper bound of one object's size.
    pub max_object_bytes: usize,
    /// Bytes of already-uploaded data kept in memory for tail reads.
    pub tail_cache_bytes: usize,
    /// Produce waits (backpressure) while this much data is not yet uploaded.
    pub max_unuploaded_bytes: usize,
    /// Bytes of object data cached for catch-up reads (separate from the tail).
    pub block_cache_bytes: usize,
    /// Bytes a catch-up reader is kept ahead by (at least four of its fetches;
    /// at most a quarter of the block cache). 0 turns read-ahead off.
    pub read_ahead_bytes: usize,
    /// How often retention, compaction and garbage collection run.
    pub maintenance_interval: Duration,
    /// Broker default for topics without `retention.ms` (-1: keep forever).
    pub default_retention_ms: i64,
    /// Broker default for topics without `retention.bytes` (-1: no limit).
    pub default_retention_bytes: i64,
    /// Unreferenced objects are deleted only after this long (in-flight reads).
    pub gc_grace: Duration,
    /// Compaction merges a partition's small objects once they hold this much.
    pub compaction_min_bytes: u64,
    /// Compaction output objects are at most this large.
    pub compaction_max_bytes: u64,
    /// Object store requests taking longer than this count as failed.
    pub request_timeout: Duration,
    /// Set for a cluster broker: how it flushes produce requests to shared
    /// objects (no WAL). `None`: the embedded broker's WAL and uploads.
    pub flush: Option<FlushConfig>,
}

impl StorageConfig {
    pub fn new(wal_dir: PathBuf) -> Self {
        Self {
            wal_dir,
            wal_segment_bytes: 64 << 20,
            upload_bytes: 8 << 20,
            upload_interval: Duration::from_millis(250),
            max_object_bytes: 64 << 20,
            tail_cache_bytes: 256 << 20,
            max_unuploaded_bytes: 1 << 30,
            block_cache_bytes: 256 << 20,
            read_ahead_bytes: 16 << 20,
            maintenance_interval: Duration::from_secs(30),
            default_retention_ms: 7 * 24 * 3600 * 1000,
            default_retention_bytes: -1,
            gc_grace: Duration::from_secs(60),
            compaction_min_bytes: 4 << 20,
            compaction_max_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
            flush: None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
