//! The Kafka-compatible broker: network server, request dispatch and the
//! handlers for each API, on top of [`sluice_storage::LogStore`].
//!
//! - [`server`]: TCP listener, per-connection pipelining, shutdown.
//! - [`dispatch`]: header parsing, version checks, ApiVersions, routing.
//! - [`handlers`]: one module per group of APIs.
//! - [`topic_config`]: topic config names, defaults and validation.

pub mod config;
pub mod dispatch;
pub mod handlers;
pub mod server;
pub mod topic_config;

pub use config::BrokerConfig;

use sluice_catalog::Catalog;
use sluice_storage::LogStore;
use std::sync::Arc;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<LogStore>,
    pub catalog: Arc<dyn Catalog>,
    pub cluster_id: String,
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        store: Arc<LogStore>,
        catalog: Arc<dyn Catalog>,
    ) -> anyhow::Result<Arc<Self>> {
        let cluster_id = catalog.cluster_id()?;
        Ok(Arc::new(Self {
            config,
            store,
            catalog,
            cluster_id,
        }))
    }
}
