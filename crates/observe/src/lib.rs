//! Observability building blocks shared by storage, broker and the HTTP side:
//!
//! - [`metrics`]: the broker's own Prometheus metrics (requests, bytes and
//!   records per topic, connections, WAL fsync, object store, caches, memory).
//! - [`burrow`]: lag health per partition and group with Burrow's evaluation
//!   rules over a sliding window of commits, and the lag trend.
//! - [`commits`]: every group's recent commits and cached event-age
//!   timestamps, fed by the group coordinator.
//! - [`exposition`]: writing scrape-time gauge families (consumer lag and
//!   event age over every group and partition) straight into the text format.
//! - [`rate`]: per-second rates of monotonic counters for the admin API.

pub mod burrow;
pub mod commits;
pub mod exposition;
pub mod metrics;
pub mod rate;

pub use metrics::{metrics, Metrics};
