//! Sluice's storage engine: where produced record batches become durable and
//! where fetches find them.
//!
//! - [`wal`]: the local write-ahead log with group commit (the ack path of
//!   the embedded broker).
//! - [`partition`]: per-partition offsets, high watermark, in-memory tail and
//!   idempotent-producer state.
//! - [`object`]: the immutable object format in the object store.
//! - [`upload`]: the background task turning WAL data into objects and
//!   catalog index rows.
//! - [`log`]: [`LogStore`], the facade the broker uses (topics, append, read,
//!   offset lookups, recovery).
//! - [`timestamps`]: exact offset-for-timestamp lookups inside batches.

pub mod log;
pub mod object;
pub mod partition;
pub mod store_url;
pub mod timestamps;
pub mod upload;
pub mod wal;

pub use log::{
    AppendError, AppendOutcome, LogStore, PendingAppend, ReadError, ReadOutcome, StorageError,
    Topic,
};
pub use partition::PartitionLog;

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
