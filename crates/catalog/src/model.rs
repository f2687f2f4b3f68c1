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

/// One transaction of one producer on one partition, as the partition's
/// transaction index keeps it: open (`last_offset` `None`) from the offset
/// of its first batch, or aborted at the offset of its abort marker
/// (committed transactions need no entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxnIndexEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: Option<i64>,
}

/// A partition's transaction index as of an upload's end: the open and
/// aborted transactions it holds (replacing what the catalog had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTxns {
    pub topic: Uuid,
    pub partition: i32,
    pub entries: Vec<TxnIndexEntry>,
}

/// Everything one upload publishes.
#[derive(Debug, Clone, Default)]
pub struct UploadCommit {
    pub objects: Vec<ObjectRecord>,
    pub segments: Vec<SegmentRecord>,
    pub producers: Vec<ProducerStateRecord>,
    /// Partitions whose transaction index changed.
    pub txns: Vec<PartitionTxns>,
}

/// Where a transaction stands (Kafka's transaction states, by their names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name of the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// An offset a transaction commits for a consumer group when it commits
/// (TxnOffsetCommit), dropped if it aborts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A transactional id's coordinator state (what Kafka keeps in its
/// transaction log), saved at every transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// When the ongoing transaction began (-1: none).
    pub started_ms: i64,
    pub updated_ms: i64,
    /// The partitions in the transaction, by topic name.
    pub partitions: Vec<(String, i32)>,
    /// Groups added with AddOffsetsToTxn (their offsets wait in
    /// [`crate::TxnStore::txn_offsets`]).
    pub groups: Vec<String>,
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

/// One batch of a dead-letter replay, recorded before it is produced: the
/// dead-letter offsets it carries, where it goes, and the producer id (used
/// once, sequence 0) that lets a retry after a crash be recognised by the
/// target partition's idempotence check instead of written twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReplay {
    pub producer_id: i64,
    pub dlq_topic: String,
    pub partition: i32,
    pub dlq_offsets: Vec<i64>,
    pub target_topic: String,
    pub target_partition: i32,
    pub created_ms: i64,
}

/// A user's SCRAM credential for one mechanism (`SCRAM-SHA-256` or
/// `SCRAM-SHA-512`): the salt and keys base64-encoded, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub user: String,
    pub mechanism: String,
    pub salt: String,
    pub iterations: i64,
    pub stored_key: String,
    pub server_key: String,
    pub updated_ms: i64,
}

/// One authorization rule, with Kafka's numeric codes (resource type,
/// pattern type, operation, permission) as CreateAcls carries them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclRecord {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
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

/// A broker of a cluster, as registered in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub broker_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Bumped each time the broker registers: a broker whose epoch changed
    /// under it has been replaced.
    pub epoch: i64,
    /// When the broker's lease runs out, by the catalog's clock.
    pub lease_expires_ms: i64,
    /// How long ago the lease was last renewed (when read back).
    #[serde(default)]
    pub lease_age_ms: i64,
}

/// A broker's claim to write: its id and lease epoch. A commit carrying one
/// is refused unless that broker holds an unexpired lease under that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub broker_id: i32,
    pub epoch: i64,
}

/// A background job and the broker holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub broker_id: i32,
    /// The holder's lease epoch when it took the job.
    pub epoch: i64,
    /// Whether that lease still holds (else the next claim takes the job).
    pub held: bool,
}

/// An idempotent producer's identity and sequence range in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSeq {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

/// One batch of a cluster flush, already in the flush's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushBatch {
    pub topic: Uuid,
    pub partition: i32,
    /// Byte range of the batch in the object.
    pub position: u64,
    pub length: u64,
    /// Offsets the batch takes (`lastOffsetDelta + 1`).
    pub offsets: i64,
    pub max_timestamp: i64,
    pub producer: Option<ProducerSeq>,
    /// What the batch is to transactions (`None`: not transactional).
    pub txn: Option<TxnPart>,
}

/// What a transactional batch of a flush is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnPart {
    /// Data of the ongoing transaction of the batch's producer: appended
    /// only if its partition is in that transaction (KIP-890).
    Data,
    /// A marker ending producer `producer_id`'s transaction on the
    /// partition (written by the coordinator; it fences older epochs).
    Marker {
        producer_id: i64,
        epoch: i16,
        commit: bool,
    },
}

/// A change a flush made to a partition's transaction index: a
/// transaction's data at `offset` (it is open from its first batch), or
/// its marker at `offset` (`marker`: `Some(commit)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnChange {
    pub topic: Uuid,
    pub partition: i32,
    pub producer_id: i64,
    pub offset: i64,
    pub marker: Option<bool>,
}

/// Everything a cluster flush publishes: the object it wrote and the
/// batches in it, in the order they were received.
#[derive(Debug, Clone)]
pub struct FlushCommit {
    /// The broker flushing (named in the change notification).
    pub writer: i32,
    /// Checked inside the commit: a broker whose lease ran out (it was
    /// paused or cut off) cannot publish.
    pub fence: Option<Fence>,
    pub object: ObjectRecord,
    pub batches: Vec<FlushBatch>,
    /// Largest byte range one index row covers (unless one batch is larger).
    pub max_row_bytes: u64,
    /// The commit is refused once the object is this much older (by the
    /// database's clock) than its `created_ms`: past it, the garbage
    /// collector may already have taken the object for an orphan.
    pub max_age_ms: i64,
}

/// What a flush's commit decided for one of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Appended at these offsets.
    Appended { base_offset: i64 },
    /// A retry of a batch already in the log at these offsets.
    Duplicate { base_offset: i64 },
    /// The batch skips sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder,
    /// The producer epoch is older than the one seen (INVALID_PRODUCER_EPOCH).
    StaleEpoch,
    /// The topic or partition does not exist (any more).
    UnknownPartition,
    /// A transactional batch whose partition is not in its producer's
    /// ongoing transaction (INVALID_TXN_STATE).
    NotInTransaction,
}

/// A partition's ends after a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnd {
    pub topic: Uuid,
    pub partition: i32,
    pub log_start: i64,
    /// One past the last offset committed.
    pub end: i64,
}

/// What a flush's commit published.
#[derive(Debug, Clone, Default)]
pub struct FlushOutcome {
    /// One per batch of the commit, in the same order.
    pub outcomes: Vec<BatchOutcome>,
    /// The index rows written.
    pub rows: Vec<SegmentRecord>,
    /// The ends of every partition the flush touched.
    pub ends: Vec<PartitionEnd>,
}
