//! Consumer groups: Kafka's classic group protocol.
//!
//! - [`state`]: one group's membership state machine (join, sync, heartbeat,
//!   leave, session and rebalance timers).
//! - [`coordinator`]: the registry of groups, committed offsets (durable in
//!   the catalog, cached in memory) and offset expiry.
//! - [`consumer_protocol`]: reading the embedded consumer protocol's
//!   subscription and assignment bytes (for OffsetDelete and describe views).

pub mod consumer_protocol;
pub mod coordinator;
pub mod state;

pub use coordinator::{GroupCoordinator, GroupSettings};
