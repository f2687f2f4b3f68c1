//! The Kafka-compatible broker: network server, request dispatch and the
//! handlers for each API, on top of [`sluice_storage::LogStore`].
//!
//! - [`server`]: TCP listener, per-connection pipelining, shutdown.
//! - [`dispatch`]: header parsing, version checks, ApiVersions, routing.
//! - [`handlers`]: one module per group of APIs.
//! - [`topic_config`]: topic config names, defaults and validation.
//! - [`cluster`]: membership, placement (partition leaders, group
//!   coordinators) and following the other brokers of a cluster.
//! - [`security`]: listeners, TLS, SASL and SCRAM credentials, ACLs.
//! - [`quotas`]: client quotas and throttling.

pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod fetch_frame;
pub mod groups;
pub mod handlers;
pub mod quotas;
pub mod security;
pub mod server;
pub mod stream;
pub mod topic_config;
pub mod transactions;

pub use config::BrokerConfig;
pub use groups::GroupSettings;

use cluster::Membership;
use sluice_catalog::Catalog;
use sluice_storage::LogStore;
use std::sync::Arc;

/// Samples of [`Broker::throughput`] kept: five minutes at the sampler's
/// two-second tick.
const THROUGHPUT_HISTORY: usize = 150;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<LogStore>,
    pub catalog: Arc<Catalog>,
    pub membership: Arc<Membership>,
    pub groups: Arc<groups::GroupCoordinator>,
    pub registry: sluice_registry::Registry,
    /// Every group's recent commits (Burrow's windows), for lag views.
    pub lag: sluice_observe::commits::CommitTracker,
    pub rates: sluice_observe::rate::RateTracker,
    /// This broker's bytes in, bytes out and records in per second, summed
    /// over topics, at each tick of the rate sampler (the console's
    /// throughput chart starts from it).
    pub throughput: sluice_observe::rate::History<3>,
    pub cluster_id: String,
    pub authorizer: Arc<security::authz::Authorizer>,
    pub quotas: Arc<quotas::Quotas>,
    pub txns: Arc<transactions::Transactions>,
}

impl Broker {
    /// NOT_COORDINATOR when another broker of the cluster coordinates
    /// `group` (the client asks FindCoordinator again).
    pub fn coordinator_error(&self, group: &str) -> Option<kafka_protocol::error::ResponseError> {
        (!self.groups.owns(group)).then_some(kafka_protocol::error::ResponseError::NotCoordinator)
    }

    pub fn new(
        config: BrokerConfig,
        group_settings: groups::GroupSettings,
        store: Arc<LogStore>,
        catalog: Arc<Catalog>,
        membership: Arc<Membership>,
        registry: sluice_registry::Registry,
    ) -> anyhow::Result<Arc<Self>> {
        use sluice_catalog::TopicStore;
        let cluster_id = catalog.cluster_id()?;
        let (m, f) = (membership.clone(), membership.clone());
        let groups = groups::GroupCoordinator::open(
            group_settings,
            catalog.clone(),
            Arc::new(move |g: &str| m.coordinates(g)),
            Arc::new(move || f.fence()),
        )?;
        // Alone it upkeeps its storage; in a cluster, whoever holds the
        // upkeep job in the catalog does (see `cluster::run`).
        store.set_maintainer(!membership.is_cluster());
        store.set_fence(membership.fence());
        let authorizer =
            security::authz::Authorizer::open(catalog.clone(), config.authorization.clone())?;
        let quotas = quotas::Quotas::open(catalog.clone())?;
        let txns = transactions::Transactions::open(
            catalog.clone(),
            membership.clone(),
            store.clone(),
            groups.clone(),
        )?;
        Ok(Arc::new(Self {
            config,
            store,
            catalog,
            membership,
            groups,
            registry,
            lag: Default::default(),
            rates: sluice_observe::rate::RateTracker::new(std::time::Duration::from_secs(30)),
            throughput: sluice_observe::rate::History::new(THROUGHPUT_HISTORY),
            cluster_id,
            authorizer,
            quotas,
            txns,
        }))
    }

    /// Reads the ACLs and client quotas from the catalog again every
    /// [`security::authz::RELOAD_EVERY`] until shutdown: how a change made
    /// by another process (`sluice acls`, `sluice quotas`) reaches an
    /// embedded broker; a cluster's brokers also hear the catalog's
    /// notifications at once.
    pub async fn run_reload(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(security::authz::RELOAD_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let me = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                me.authorizer.reload().map_err(|e| ("ACLs", e))?;
                me.quotas.reload().map_err(|e| ("client quotas", e))
            })
            .await;
            if let Ok(Err((what, e))) = reloaded {
                tracing::warn!(error = %e, "reloading the {what} failed");
            }
        }
    }

    /// Samples per-topic counters every `every` so the admin API can show
    /// throughput, until shutdown.
    pub async fn run_rate_sampler(
        self: Arc<Self>,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        // Counters are since the process started, about when this did.
        let mut previous = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let now = std::time::Instant::now();
            let m = sluice_observe::metrics();
            let topics = self.store.topics();
            for t in &topics {
                let name = t.record.name.as_str();
                self.rates.sample(
                    &format!("bytes_in/{name}"),
                    m.bytes_in.with_label_values(&[name]).get() as f64,
                    now,
                    previous,
                );
                self.rates.sample(
                    &format!("records_in/{name}"),
                    m.records_in.with_label_values(&[name]).get() as f64,
                    now,
                    previous,
                );
                self.rates.sample(
                    &format!("bytes_out/{name}"),
                    m.bytes_out.with_label_values(&[name]).get() as f64,
                    now,
                    previous,
                );
            }
            self.rates.retain(|k| {
                k.split_once('/')
                    .is_some_and(|(_, t)| self.store.topic(t).is_some())
            });
            let mut totals = [0.0; 3];
            for t in &topics {
                let name = t.record.name.as_str();
                for (total, what) in totals
                    .iter_mut()
                    .zip(["bytes_in", "bytes_out", "records_in"])
                {
                    *total += self.rates.rate(&format!("{what}/{name}"));
                }
            }
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.throughput.push(unix_ms, totals);
            previous = now;
        }
    }
}
