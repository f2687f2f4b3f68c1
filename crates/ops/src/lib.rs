//! Operator views and actions over a running broker, built on the public
//! APIs of the broker, its storage and its catalog (none of this is on the
//! Kafka request path):
//!
//! - [`browse`]: a topic's records decoded through the registry (the
//!   console's message browser);
//! - [`overview`]: the console's overview of the cluster;
//! - [`admin`]: topics and consumer groups as `kafka-topics.sh` and
//!   `kafka-consumer-groups.sh` show them (with lag, lag seconds and Burrow
//!   status), offset resets, group deletion;
//! - [`cluster`]: the live brokers, their leases, groups and jobs;
//! - [`lag`]: consumer lag and event age per group and partition;
//! - [`dlq`]: dead-letter records with their failure context, and replays;
//! - [`metrics_page`]: the scrape-time part of `GET /metrics`;
//! - [`records`]: reading a partition's records for these views;
//! - [`produce`]: producing records from the HTTP side (REST produce);
//! - [`replay`]: copying a window of a topic into another.
//!
//! The HTTP side and the CLI of the `sluice` binary use these.

pub mod admin;
pub mod browse;
pub mod cluster;
pub mod dlq;
pub mod lag;
pub mod metrics_page;
pub mod overview;
pub mod produce;
pub mod records;
pub mod replay;
