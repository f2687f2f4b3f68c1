//! The broker among other brokers sharing one catalog and one bucket.
//!
//! - [`membership`]: this broker's lease and the list of live brokers.
//! - [`placement`]: which broker is a partition's nominal leader (cache
//!   affinity only) or a group's coordinator.
//! - [`run`]: the loop that keeps this broker current: it renews the lease,
//!   and applies what the catalog's change feed says other brokers did
//!   (new data, topic changes, membership changes, schema changes).
//!
//! The embedded broker is a cluster of one: [`Membership::alone`], and
//! [`run`] returns at once.

pub mod membership;
pub mod placement;

pub use membership::Membership;

use crate::Broker;
use sluice_catalog::changes::{DataChange, MetaChange, DATA_CHANNEL, META_CHANNEL};
use sluice_catalog::postgres::Heard;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The catalog job whose holder runs retention, compaction and garbage
/// collection for the cluster.
pub const UPKEEP_JOB: &str = "storage-upkeep";

/// The catalog job whose holder exports the cluster-wide metric families.
pub const METRICS_JOB: &str = "cluster-metrics";

/// How often topics, partition ends and sizes are reloaded even when no
/// notification said to (a safety net; sizes only change this way).
const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// What a batch of notifications asks for, besides the data changes
/// applied as they come.
#[derive(Default)]
struct Pending {
    topics: bool,
    brokers: bool,
    registry: bool,
    acls: bool,
    quotas: bool,
    /// Transaction indexes (after a reconnect of the change feed).
    txns: bool,
    /// Committed offsets another broker wrote (a transaction's commit).
    offsets: bool,
}

/// Keeps a cluster broker current until `shutdown`: renews its lease,
/// follows the catalog's change feed, and reacts to membership changes.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    if !broker.membership.is_cluster() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _listening = match broker.catalog.listen(move |h| {
        let _ = tx.send(h);
    }) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for the cluster's changes; other brokers' data is seen at the next refresh");
            None
        }
    };
    let mut renew = tokio::time::interval(broker.membership.renew_every());
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut pending = Pending::default();
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = renew.tick() => {
                let m = broker.membership.clone();
                let renewed = tokio::task::spawn_blocking(move || m.renew()).await;
                // A new epoch after registering again: commits carry it.
                broker.store.set_fence(broker.membership.fence());
                match renewed {
                    Ok(Ok(changed)) => pending.brokers = changed,
                    Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                    Err(e) => tracing::warn!(error = %e, "lease renewal task failed"),
                }
                if pending.brokers {
                    membership_changed(&broker).await;
                }
                claim_jobs(&broker).await;
                let m = sluice_observe::metrics();
                m.live_brokers.set(broker.membership.live().len() as i64);
                m.lease_epoch.set(broker.membership.fence().map_or(0, |f| f.epoch));
                continue;
            }
            _ = refresh.tick() => pending.topics = true,
            heard = rx.recv() => {
                let Some(first) = heard else { return };
                take(&broker, first, &mut pending);
                // Whatever else has arrived is handled in the same round.
                while let Ok(more) = rx.try_recv() {
                    take(&broker, more, &mut pending);
                }
            }
        }
        if pending.brokers {
            let m = broker.membership.clone();
            if let Ok(Ok(true)) = tokio::task::spawn_blocking(move || m.reload()).await {
                membership_changed(&broker).await;
            }
        }
        if pending.topics {
            if let Err(e) = broker.store.refresh_topics().await {
                tracing::warn!(error = %e, "reloading topics from the catalog failed");
            }
        }
        if pending.txns {
            if let Err(e) = broker.store.reload_txns().await {
                tracing::warn!(error = %e, "reloading transaction indexes failed");
            }
        }
        if pending.offsets {
            if let Err(e) = broker.groups.reassign().await {
                tracing::warn!(error = %e, "reloading committed offsets failed");
            }
        }
        if pending.registry {
            let registry = broker.registry.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || registry.reload()).await {
                tracing::warn!(error = %e, "reloading the schema registry failed");
            }
        }
        if pending.acls {
            let authorizer = broker.authorizer.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || authorizer.reload()).await {
                tracing::warn!(error = %e, "reloading the ACLs failed");
            }
        }
        if pending.quotas {
            let quotas = broker.quotas.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || quotas.reload()).await {
                tracing::warn!(error = %e, "reloading the client quotas failed");
            }
        }
    }
}

/// Applies one notification's data at once; notes what else to reload.
fn take(broker: &Broker, heard: Heard, pending: &mut Pending) {
    let m = sluice_observe::metrics();
    match heard {
        Heard::Resync => {
            m.catalog_changes.with_label_values(&["resync"]).inc();
            pending.topics = true;
            pending.brokers = true;
            pending.registry = true;
            pending.acls = true;
            pending.quotas = true;
            pending.txns = true;
        }
        Heard::Notice { channel, payload } if channel == DATA_CHANNEL => {
            m.catalog_changes.with_label_values(&["data"]).inc();
            match DataChange::decode(&payload) {
                Ok(change) => broker.store.apply_data_change(&change),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable data notification; reloading");
                    pending.topics = true;
                }
            }
        }
        Heard::Notice { channel, payload } if channel == META_CHANNEL => {
            match MetaChange::parse(&payload) {
                Some(MetaChange::Topics) => pending.topics = true,
                Some(MetaChange::Brokers) => pending.brokers = true,
                Some(MetaChange::Registry) => pending.registry = true,
                Some(MetaChange::Acls) => pending.acls = true,
                Some(MetaChange::Quotas) => pending.quotas = true,
                Some(MetaChange::Offsets) => pending.offsets = true,
                None => tracing::warn!(payload, "unknown catalog notification"),
            }
            if let Some(kind) = MetaChange::parse(&payload) {
                m.catalog_changes.with_label_values(&[kind.as_str()]).inc();
            }
        }
        Heard::Notice { channel, .. } => {
            tracing::warn!(channel, "notification on an unknown channel")
        }
    }
}

/// Takes (or keeps) the cluster's jobs that no other live broker holds:
/// the storage upkeep (one broker at a time runs retention, compaction and
/// garbage collection of the shared storage) and the cluster-wide metrics.
/// When a holder dies or stops renewing its lease another broker takes its
/// jobs over at its next renewal.
async fn claim_jobs(broker: &Broker) {
    let Some(fence) = broker.membership.fence() else {
        return;
    };
    for job in [UPKEEP_JOB, METRICS_JOB] {
        let catalog = broker.catalog.clone();
        let held = match tokio::task::spawn_blocking(move || {
            sluice_catalog::BrokerRegistry::claim_job(&*catalog, job, fence)
        })
        .await
        {
            Ok(Ok(held)) => held,
            Ok(Err(sluice_catalog::CatalogError::Fenced(_))) => false,
            Ok(Err(e)) => {
                tracing::warn!(job, error = %e, "claiming a cluster job failed; retrying");
                continue;
            }
            Err(e) => {
                tracing::warn!(job, error = %e, "the job claim task failed");
                continue;
            }
        };
        if job == UPKEEP_JOB {
            broker.store.set_maintainer(held);
        } else {
            broker.membership.set_exports_cluster_metrics(held);
        }
    }
}

/// After the live brokers changed: which groups this broker coordinates.
async fn membership_changed(broker: &Broker) {
    sluice_observe::metrics()
        .live_brokers
        .set(broker.membership.live().len() as i64);
    if let Err(e) = broker.groups.reassign().await {
        tracing::warn!(error = %e, "reloading the groups this broker coordinates failed");
    }
}
