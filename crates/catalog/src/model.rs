//! Plain records the catalog stores and returns.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A topic and its explicitly set configs (defaults are not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// One index row: a contiguous run of one partition's batches inside an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub topic: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub object_key: String,
    pub position: u64,
    pub length: u64,
}

/// An object written to the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub key: String,
    pub size: u64,
    pub created_ms: i64,
}

/// Where a partition stands in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: Uuid,
    pub partition: i32,
    /// One past the last offset held in objects (0 when none).
    pub uploaded_end: i64,
    pub log_start: i64,
    /// Bytes of the partition's data held in objects.
    pub bytes: i64,
}

/// The last batches an idempotent producer wrote to one partition, enough to
/// answer a retried batch with its original offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Idempotent-producer state of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateRecord {
    pub topic: Uuid,
    pub partition: i32,
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: Vec<ProducerBatch>,
}

/// Everything one upload publishes.
#[derive(Debug, Clone, Default)]
pub struct UploadCommit {
    pub objects: Vec<ObjectRecord>,
    pub segments: Vec<SegmentRecord>,
    pub producers: Vec<ProducerStateRecord>,
}

/// One dead-letter record replayed to a target topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    pub dlq_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub target_topic: String,
    pub target_partition: i32,
    pub target_offset: i64,
    pub replayed_ms: i64,
}

/// A consumer group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
}
