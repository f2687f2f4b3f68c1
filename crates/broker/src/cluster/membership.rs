//! This broker's place among the live brokers.
//!
//! Alone (the embedded broker) it is the only broker. In a cluster it
//! registers in the catalog with a lease, renews the lease a few times per
//! lease period, and keeps the list of live brokers (reloaded on every
//! renewal and whenever the catalog says the membership changed). A broker
//! that finds its registration gone or taken over (its lease ran out while
//! it was paused) registers again under a new epoch.

use super::placement::{group_key, owner, partition_key};
use parking_lot::RwLock;
use sluice_catalog::{BrokerRecord, BrokerRegistry, CatalogError};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The live brokers, by id, and this broker's registration.
pub struct Membership {
    me: RwLock<BrokerRecord>,
    lease_ms: i64,
    registry: Option<Arc<dyn BrokerRegistry>>,
    live: RwLock<Arc<Vec<BrokerRecord>>>,
    /// Bumped whenever the live set changes.
    version: AtomicU64,
    epoch: AtomicI64,
    /// Whether this broker exports the cluster-wide metric families.
    cluster_metrics: AtomicBool,
}

impl Membership {
    /// A broker alone: the embedded mode.
    pub fn alone(me: BrokerRecord) -> Arc<Self> {
        Arc::new(Self {
            live: RwLock::new(Arc::new(vec![me.clone()])),
            epoch: AtomicI64::new(me.epoch),
            me: RwLock::new(me),
            lease_ms: i64::MAX,
            registry: None,
            version: AtomicU64::new(0),
            cluster_metrics: AtomicBool::new(true),
        })
    }

    /// Registers this broker in a cluster catalog (blocking).
    pub fn join(
        registry: Arc<dyn BrokerRegistry>,
        me: BrokerRecord,
        lease: Duration,
    ) -> Result<Arc<Self>, CatalogError> {
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let registered = registry.register_broker(&me, lease_ms)?;
        let live = registry.live_brokers()?;
        Ok(Arc::new(Self {
            epoch: AtomicI64::new(registered.epoch),
            me: RwLock::new(registered),
            lease_ms,
            registry: Some(registry),
            live: RwLock::new(Arc::new(live)),
            version: AtomicU64::new(1),
            cluster_metrics: AtomicBool::new(false),
        }))
    }

    pub fn is_cluster(&self) -> bool {
        self.registry.is_some()
    }

    pub fn me(&self) -> BrokerRecord {
        self.me.read().clone()
    }

    /// What this broker's commits must carry: its lease (none alone).
    pub fn fence(&self) -> Option<sluice_catalog::Fence> {
        self.is_cluster().then(|| sluice_catalog::Fence {
            broker_id: self.id(),
            epoch: self.epoch.load(Ordering::Acquire),
        })
    }

    /// Whether this broker exports the cluster-wide metric families (topic
    /// offsets, dead-letter depth, the broker count): alone always; in a
    /// cluster while it holds the `cluster-metrics` job, so that a
    /// Prometheus scraping every broker sees each series once.
    pub fn exports_cluster_metrics(&self) -> bool {
        self.cluster_metrics.load(Ordering::Acquire)
    }

    pub(crate) fn set_exports_cluster_metrics(&self, yes: bool) {
        sluice_observe::metrics()
            .cluster_metrics_holder
            .set(yes as i64);
        if self.cluster_metrics.swap(yes, Ordering::AcqRel) != yes {
            tracing::info!(exporter = yes, "cluster-wide metrics ownership changed");
        }
    }

    pub fn id(&self) -> i32 {
        self.me.read().broker_id
    }

    /// The live brokers, by id (always at least this one).
    pub fn live(&self) -> Arc<Vec<BrokerRecord>> {
        self.live.read().clone()
    }

    /// Changes whenever the live set does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The brokers a client in `zone` should use: those of its zone when
    /// there are any, else all.
    pub fn brokers_for(&self, zone: Option<&str>) -> Vec<BrokerRecord> {
        let live = self.live();
        if let Some(z) = zone {
            let local: Vec<BrokerRecord> = live
                .iter()
                .filter(|b| b.rack.as_deref() == Some(z))
                .cloned()
                .collect();
            if !local.is_empty() {
                return local;
            }
        }
        live.to_vec()
    }

    /// The broker named leader of a partition among `brokers`.
    pub fn partition_leader<'a>(
        &self,
        brokers: &'a [BrokerRecord],
        topic: &Uuid,
        partition: i32,
    ) -> Option<&'a BrokerRecord> {
        owner(&partition_key(topic, partition), brokers)
    }

    /// The coordinator of a consumer group, among all live brokers.
    pub fn coordinator(&self, group: &str) -> BrokerRecord {
        let live = self.live();
        owner(&group_key(group), &live)
            .cloned()
            .unwrap_or_else(|| self.me())
    }

    /// Whether this broker coordinates `group`.
    pub fn coordinates(&self, group: &str) -> bool {
        !self.is_cluster() || self.coordinator(group).broker_id == self.id()
    }

    /// The broker coordinating transactional id `id` (hashed like a group,
    /// in a namespace of its own).
    pub fn txn_coordinator(&self, id: &str) -> BrokerRecord {
        self.coordinator(&format!("txn:{id}"))
    }

    /// Whether this broker coordinates transactional id `id`.
    pub fn coordinates_txn(&self, id: &str) -> bool {
        !self.is_cluster() || self.txn_coordinator(id).broker_id == self.id()
    }

    /// Renews the lease (registering again if it was lost) and reloads the
    /// live brokers (blocking); returns whether the live set changed.
    pub fn renew(&self) -> Result<bool, CatalogError> {
        let Some(registry) = &self.registry else {
            return Ok(false);
        };
        let (id, epoch) = (self.id(), self.epoch.load(Ordering::Acquire));
        if !registry.renew_lease(id, epoch, self.lease_ms)? {
            tracing::warn!(
                broker = id,
                epoch,
                "this broker's lease ran out (was it paused?): registering again"
            );
            let registered = registry.register_broker(&self.me(), self.lease_ms)?;
            self.epoch.store(registered.epoch, Ordering::Release);
            *self.me.write() = registered;
        }
        self.reload()
    }

    /// Reloads the live brokers (blocking); returns whether they changed.
    pub fn reload(&self) -> Result<bool, CatalogError> {
        let Some(registry) = &self.registry else {
            return Ok(false);
        };
        let mut live = registry.live_brokers()?;
        // This broker is live while it runs, whatever a slow clock says.
        if !live.iter().any(|b| b.broker_id == self.id()) {
            live.push(self.me());
            live.sort_by_key(|b| b.broker_id);
        }
        let ids = |v: &[BrokerRecord]| -> Vec<(i32, i64)> {
            v.iter().map(|b| (b.broker_id, b.epoch)).collect()
        };
        let changed = ids(&live) != ids(&self.live());
        if changed {
            tracing::info!(
                brokers = ?live.iter().map(|b| b.broker_id).collect::<Vec<_>>(),
                "live brokers changed"
            );
            *self.live.write() = Arc::new(live);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(changed)
    }

    /// How often the lease is renewed.
    pub fn renew_every(&self) -> Duration {
        Duration::from_millis((self.lease_ms / 4).clamp(100, 5_000) as u64)
    }

    /// Gives up the lease (clean shutdown, blocking): other brokers take
    /// over this one's groups and partitions at once.
    pub fn leave(&self) -> Result<(), CatalogError> {
        match &self.registry {
            Some(r) => r.deregister_broker(self.id(), self.epoch.load(Ordering::Acquire)),
            None => Ok(()),
        }
    }
}
