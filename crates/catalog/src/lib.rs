//! The catalog: Sluice's metadata and the index of its data.
//!
//! Narrow interfaces for what each part of the broker needs:
//! - [`LogIndex`], the data plane: where each partition's batches live
//!   (index rows into objects), its ends, and the commits that publish new
//!   data (an embedded upload, a cluster flush);
//! - metadata stores: [`TopicStore`], [`ProducerStore`], [`OffsetStore`],
//!   [`ReplayLog`], [`BrokerRegistry`] (and the schema registry's tables,
//!   reached through [`Catalog::db`]).
//!
//! One implementation of all of them, [`Catalog`], written once against the
//! engine-neutral SQL layer in [`sql`]; the engine is chosen by URL
//! ([`CatalogUrl`]): SQLite in the data directory for the embedded broker
//! ([`sqlite`]), PostgreSQL for clusters ([`postgres`]). The interfaces are
//! synchronous; callers on async threads run them through `spawn_blocking`.
//! Writes follow uploads and flushes (a few per second per broker), never
//! produce requests.

pub mod changes;
#[doc(hidden)]
pub mod conformance;
pub mod migrate;
pub mod model;
pub mod postgres;
pub mod schema;
pub mod sequence;
pub mod sql;
pub mod sqlite;
mod stores;

pub use model::*;
pub use sql::Db;
pub use stores::Catalog;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Catalog failures, the same whatever the engine.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    /// The writing broker's lease ran out or was taken over: it must
    /// register again before it writes.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The request conflicts with the catalog's state (named in the message).
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or is shutting down: worth retrying.
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    #[error("catalog database error: {0}")]
    Db(String),
    #[error("catalog data is corrupt: {0}")]
    Corrupt(String),
    #[error("catalog I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid catalog URL: {0}")]
    Url(String),
    #[error("the catalog's schema is version {found}, newer than this Sluice knows ({latest}): upgrade Sluice")]
    TooNew { found: i64, latest: i64 },
}

impl CatalogError {
    /// Whether the same call may succeed later (the database was
    /// unreachable), as opposed to a refusal or a bug.
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_))
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// Which engine a catalog URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogUrl {
    /// `sqlite:///absolute/path` or `sqlite://relative/path`.
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/dbname` (or `postgresql://`).
    Postgres(String),
}

impl CatalogUrl {
    /// Parses `--catalog`; `None` means the default, `catalog.db` in
    /// `data_dir`.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(CatalogUrl::Sqlite(data_dir.join("catalog.db")));
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(CatalogError::Url(format!(
                    "'{url}' names no file: use sqlite:///path/to/catalog.db"
                )));
            }
            return Ok(CatalogUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::config_from_url(url)?;
            return Ok(CatalogUrl::Postgres(url.to_string()));
        }
        Err(CatalogError::Url(format!(
            "'{}' is not understood: use sqlite:///path/to/catalog.db or postgres://user:password@host:port/dbname",
            postgres::redact(url)
        )))
    }

    /// Whether several brokers can share this catalog (cluster mode).
    pub fn is_shared(&self) -> bool {
        matches!(self, CatalogUrl::Postgres(_))
    }

    /// A printable form (no password).
    pub fn describe(&self) -> String {
        match self {
            CatalogUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            CatalogUrl::Postgres(u) => postgres::redact(u),
        }
    }
}

/// The data plane's index: where each partition's data lives and where its
/// log starts and ends.
pub trait LogIndex: Send + Sync + 'static {
    /// Publishes an uploaded object of the embedded broker (offsets already
    /// assigned in its batches): its index rows and the producer state as of
    /// its end, in one transaction (the object is written before).
    fn commit_upload(&self, commit: &UploadCommit) -> Result<()>;
    /// Publishes a cluster flush's object: in one transaction, checks each
    /// batch's producer sequence, assigns offsets from each partition's end,
    /// writes the index rows and the producer state, advances the ends and
    /// tells the other brokers. Nothing is visible before it returns.
    fn commit_flush(&self, commit: &FlushCommit) -> Result<FlushOutcome>;
    /// Per partition: the end of the indexed data, the log start, the bytes.
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
}

/// Topics and their configs.
pub trait TopicStore: Send + Sync + 'static {
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
}

/// Idempotent producers: ids and the sequence state uploads saved.
pub trait ProducerStore: Send + Sync + 'static {
    fn producer_states(&self) -> Result<Vec<ProducerStateRecord>>;
    /// Every partition's transaction index as uploads saved it.
    fn partition_txns(&self) -> Result<Vec<PartitionTxns>>;
    /// Allocates a fresh producer id.
    fn allocate_producer_id(&self) -> Result<i64>;
}

/// Transaction coordinators' state, one row per transactional id.
pub trait TxnStore: Send + Sync + 'static {
    /// Creates or replaces a transactional id's state.
    fn put_txn(&self, txn: &TxnRecord) -> Result<()>;
    fn txn(&self, transactional_id: &str) -> Result<Option<TxnRecord>>;
    /// Every transactional id's state.
    fn all_txns(&self) -> Result<Vec<TxnRecord>>;
    /// Adds (or replaces) offsets a transaction will commit (TxnOffsetCommit
    /// reaches the group's coordinator, which may not be the transaction's).
    fn put_txn_offsets(&self, transactional_id: &str, offsets: &[TxnOffset]) -> Result<()>;
    /// The offsets a transaction will commit.
    fn txn_offsets(&self, transactional_id: &str) -> Result<Vec<TxnOffset>>;
    /// Forgets a transaction's pending offsets (it ended).
    fn clear_txn_offsets(&self, transactional_id: &str) -> Result<()>;
    /// Tells the other brokers that committed offsets changed (a
    /// transaction committed offsets of groups they may coordinate).
    fn announce_offsets(&self) -> Result<()>;
}

/// Consumer groups' committed offsets.
pub trait OffsetStore: Send + Sync + 'static {
    /// Stores committed offsets of a consumer group (upserts); with a fence,
    /// only while that broker's lease holds.
    fn commit_offsets(
        &self,
        group: &str,
        offsets: &[CommittedOffset],
        fence: Option<Fence>,
    ) -> Result<()>;
    /// Every committed offset of a group.
    fn group_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>>;
    /// Every group with committed offsets.
    fn offset_groups(&self) -> Result<Vec<String>>;
    /// Every committed offset of every group, by group.
    fn all_offsets(&self) -> Result<Vec<(String, CommittedOffset)>>;
    /// Deletes a group's committed offsets: all of them, or only the given
    /// (topic, partition) pairs.
    fn delete_offsets(&self, group: &str, only: Option<&[(String, i32)]>) -> Result<()>;
}

/// Which dead-letter records were replayed where.
pub trait ReplayLog: Send + Sync + 'static {
    fn record_replays(&self, replays: &[ReplayRecord]) -> Result<()>;
    /// (partition, offset) of every record of a dead-letter topic already replayed.
    fn replayed(&self, dlq_topic: &str) -> Result<Vec<(i32, i64)>>;
    /// Records replay batches about to be produced (one transaction).
    fn begin_replays(&self, pending: &[PendingReplay]) -> Result<()>;
    /// Replay batches begun and not finished, oldest first: of one
    /// dead-letter partition, or (`None`) of every one.
    fn pending_replays(&self, dlq: Option<(&str, i32)>) -> Result<Vec<PendingReplay>>;
    /// In one transaction: records `replays` and forgets the pending batches
    /// `done` (by producer id).
    fn finish_replays(&self, done: &[i64], replays: &[ReplayRecord]) -> Result<()>;
}

/// SASL users: their SCRAM credentials (PLAIN logins are checked against
/// the same keys).
pub trait CredentialStore: Send + Sync + 'static {
    /// Creates or replaces a user's credential for its mechanism.
    fn put_credential(&self, c: &CredentialRecord) -> Result<()>;
    /// Deletes a user's credentials (of one mechanism, or all); returns how
    /// many went.
    fn delete_credentials(&self, user: &str, mechanism: Option<&str>) -> Result<usize>;
    /// A user's credentials, by mechanism.
    fn credentials(&self, user: &str) -> Result<Vec<CredentialRecord>>;
    /// Every credential, by user and mechanism.
    fn all_credentials(&self) -> Result<Vec<CredentialRecord>>;
    /// Sets (`Some`) or clears an attribute of a user (e.g. `tenant`).
    fn set_user_attribute(&self, user: &str, attr: &str, value: Option<&str>) -> Result<()>;
    /// A user's attributes, by name.
    fn user_attributes(&self, user: &str) -> Result<Vec<(String, String)>>;
    /// Every user's attributes: (user, attribute, value).
    fn all_user_attributes(&self) -> Result<Vec<(String, String, String)>>;
}

/// Authorization rules.
pub trait AclStore: Send + Sync + 'static {
    /// Adds rules (one transaction; a rule already there stays once).
    fn put_acls(&self, acls: &[AclRecord]) -> Result<()>;
    /// Deletes these exact rules; returns how many there were.
    fn delete_acls(&self, acls: &[AclRecord]) -> Result<usize>;
    /// Every rule.
    fn all_acls(&self) -> Result<Vec<AclRecord>>;
}

/// Client quotas (Kafka's AlterClientQuotas): per entity (a canonical
/// text naming the user and/or client id it is for), a value per key.
pub trait QuotaStore: Send + Sync + 'static {
    /// Sets (`Some`) or removes (`None`) each key's value of an entity, in
    /// one transaction.
    fn alter_quotas(&self, entity: &str, changes: &[(String, Option<f64>)]) -> Result<()>;
    /// Every (entity, key, value).
    fn all_quotas(&self) -> Result<Vec<(String, String, f64)>>;
}

/// The brokers of a cluster and their leases.
pub trait BrokerRegistry: Send + Sync + 'static {
    /// A broker id no other broker has been given.
    fn allocate_broker_id(&self) -> Result<i32>;
    /// Registers (or re-registers) a broker with a lease of `lease_ms`;
    /// returns its record with a new epoch.
    fn register_broker(&self, broker: &BrokerRecord, lease_ms: i64) -> Result<BrokerRecord>;
    /// Extends a broker's lease; `false` if its registration is gone, was
    /// taken over (another epoch) or has run out: it must register again
    /// (under a new epoch, which fences whatever it was doing).
    fn renew_lease(&self, broker_id: i32, epoch: i64, lease_ms: i64) -> Result<bool>;
    /// Removes a broker (clean shutdown).
    fn deregister_broker(&self, broker_id: i32, epoch: i64) -> Result<()>;
    /// Brokers whose lease has not run out, by id.
    fn live_brokers(&self) -> Result<Vec<BrokerRecord>>;
    /// Binds the cluster to one object store: records `token` (the store's
    /// marker) unless a token is recorded already, and returns the recorded
    /// one.
    fn claim_store(&self, token: &str) -> Result<String>;
    /// Takes background job `name` for the fence's broker unless another
    /// broker holds it under a live lease (jobs are held for as long as the
    /// holder's lease, epoch included, holds); returns whether the fence's
    /// broker holds it now. A broker whose own lease ran out is fenced.
    fn claim_job(&self, name: &str, fence: Fence) -> Result<bool>;
    /// Gives job `name` up if the fence's broker (this epoch) holds it.
    fn release_job(&self, name: &str, fence: Fence) -> Result<()>;
    /// Every job and its holder.
    fn jobs(&self) -> Result<Vec<JobRecord>>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
