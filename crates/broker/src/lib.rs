//! The Kafka-compatible broker: network server, request dispatch and the
//! handlers for each API, on top of [`sluice_storage::LogStore`].
//!
//! - [`server`]: TCP listener, per-connection pipelining, shutdown.
//! - [`dispatch`]: header parsing, version checks, ApiVersions, routing.
//! - [`handlers`]: one module per group of APIs.
//! - [`topic_config`]: topic config names, defaults and validation.

pub mod admin;
pub mod config;
pub mod dispatch;
pub mod groups;
pub mod handlers;
pub mod server;
pub mod topic_config;

pub use config::BrokerConfig;
pub use groups::GroupSettings;

use sluice_catalog::Catalog;
use sluice_storage::LogStore;
use std::sync::Arc;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<LogStore>,
    pub catalog: Arc<dyn Catalog>,
    pub groups: Arc<groups::GroupCoordinator>,
    pub cluster_id: String,
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        group_settings: groups::GroupSettings,
        store: Arc<LogStore>,
        catalog: Arc<dyn Catalog>,
    ) -> anyhow::Result<Arc<Self>> {
        let cluster_id = catalog.cluster_id()?;
        let groups = groups::GroupCoordinator::open(group_settings, catalog.clone())?;
        Ok(Arc::new(Self {
            config,
            store,
            catalog,
            groups,
            cluster_id,
        }))
    }
}
