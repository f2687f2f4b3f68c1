//! The catalog: Sluice's metadata. Topics and their configs, the index of
//! objects (which offsets and timestamps of which partition live at which byte
//! range of which object), log start offsets, idempotent-producer state and
//! producer-id allocation.
//!
//! One interface ([`Catalog`]), several engines with the same schema: SQLite
//! in the data directory for the embedded broker ([`sqlite::SqliteCatalog`]),
//! PostgreSQL for clusters later. The interface is synchronous and `Send +
//! Sync`; callers on async threads run the writes through `spawn_blocking`.
//! Metadata writes follow uploads (a few per second), never produce requests.

pub mod model;
pub mod sqlite;

pub use model::*;
pub use sqlite::SqliteCatalog;

use std::collections::BTreeMap;
use uuid::Uuid;

/// Catalog failures.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    #[error("catalog database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("catalog data is corrupt: {0}")]
    Corrupt(String),
    #[error("catalog I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// The metadata interface shared by every engine.
pub trait Catalog: Send + Sync + 'static {
    /// The cluster id, created on first start and stable afterwards.
    fn cluster_id(&self) -> Result<String>;

    /// Every topic, in name order.
    fn list_topics(&self) -> Result<Vec<TopicRecord>>;
    /// Creates a topic; fails with [`CatalogError::TopicExists`] on a clash.
    fn create_topic(&self, topic: &TopicRecord) -> Result<()>;
    /// Deletes a topic with its index rows; returns what was deleted.
    fn delete_topic(&self, name: &str) -> Result<TopicRecord>;
    /// Raises a topic's partition count.
    fn set_partition_count(&self, name: &str, partitions: i32) -> Result<()>;
    /// Replaces a topic's explicit configs.
    fn set_topic_configs(&self, name: &str, configs: &BTreeMap<String, String>) -> Result<()>;

    /// Publishes an uploaded object: its index rows, the producer state as of
    /// its end, all in one transaction (the object is written before).
    fn commit_upload(&self, commit: &UploadCommit) -> Result<()>;
    /// Per partition: the end of the uploaded data and the log start.
    fn partition_states(&self) -> Result<Vec<PartitionState>>;
    /// Index rows of one partition whose last offset is at or after `from`,
    /// in offset order, at most `limit`.
    fn segments_from(
        &self,
        topic: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRecord>>;
    /// The first index row (in offset order) holding a timestamp at or after `ts`.
    fn first_segment_at_or_after_time(
        &self,
        topic: Uuid,
        partition: i32,
        ts: i64,
    ) -> Result<Option<SegmentRecord>>;
    /// Idempotent-producer state saved by uploads.
    fn producer_states(&self) -> Result<Vec<ProducerStateRecord>>;
    /// Allocates a fresh producer id.
    fn allocate_producer_id(&self) -> Result<i64>;

    /// Stores committed offsets of a consumer group (upserts).
    fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()>;
    /// Every committed offset of a group.
    fn group_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>>;
    /// Every group with committed offsets.
    fn offset_groups(&self) -> Result<Vec<String>>;
    /// Deletes a group's committed offsets: all of them, or only the given
    /// (topic, partition) pairs.
    fn delete_offsets(&self, group: &str, only: Option<&[(String, i32)]>) -> Result<()>;

    /// Moves a partition's log start to `new_start` (never backwards) and
    /// deletes the index rows wholly before it; returns the bytes they held.
    fn trim_partition(&self, topic: Uuid, partition: i32, new_start: i64) -> Result<u64>;
    /// Replaces the index rows starting at `old_bases` with `new_rows` that
    /// point into `object` (compaction), atomically; `false` (and nothing
    /// changed) if any old row is gone meanwhile.
    fn replace_segments(
        &self,
        topic: Uuid,
        partition: i32,
        old_bases: &[i64],
        object: &ObjectRecord,
        new_rows: &[SegmentRecord],
    ) -> Result<bool>;
    /// Objects no index row points to any more, created before `before_ms`.
    fn unreferenced_objects(&self, before_ms: i64) -> Result<Vec<String>>;
    /// Forgets objects (after they were deleted from the store).
    fn forget_objects(&self, keys: &[String]) -> Result<()>;
    /// Every object the catalog knows.
    fn object_keys(&self) -> Result<Vec<String>>;

    /// Records dead-letter records that were replayed.
    fn record_replays(&self, replays: &[ReplayRecord]) -> Result<()>;
    /// (partition, offset) of every record of a dead-letter topic already replayed.
    fn replayed(&self, dlq_topic: &str) -> Result<Vec<(i32, i64)>>;
}
