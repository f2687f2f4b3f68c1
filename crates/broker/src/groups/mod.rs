//! Consumer groups: Kafka's classic group protocol and KIP-848's.
//!
//! - [`state`]: one group's membership state machine (join, sync, heartbeat,
//!   leave, session and rebalance timers).
//! - [`coordinator`]: the registry of groups, committed offsets (durable in
//!   the catalog, cached in memory) and offset expiry.
//! - [`kip848`]: the consumer protocol's groups (`group.protocol=consumer`),
//!   assigned by the broker.
//! - [`consumer_protocol`]: reading the embedded consumer protocol's
//!   subscription and assignment bytes (for OffsetDelete and describe views).

pub mod consumer_protocol;
pub mod coordinator;
pub mod kip848;
pub mod state;

pub use coordinator::{GroupCoordinator, GroupSettings};
