//! The cluster as one broker sees it (`GET /v1/cluster`, `sluice cluster
//! status`): the live brokers with their address, zone and lease, the
//! consumer groups each coordinates (every group with committed offsets or
//! members, placed by the same hash the brokers use) and the background
//! jobs each holds in the catalog.

use crate::admin::AdminError;
use serde::{Deserialize, Serialize};
use sluice_broker::Broker;
use sluice_catalog::{BrokerRegistry, OffsetStore};
use std::collections::BTreeSet;

/// One live broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerView {
    pub broker_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub epoch: i64,
    /// Since the broker last renewed its lease (as of this broker's last
    /// reload of the membership).
    pub lease_age_ms: i64,
    pub lease_expires_ms: i64,
    /// The broker answering.
    pub this: bool,
    pub groups: Vec<String>,
    pub jobs: Vec<String>,
}

/// The cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    pub cluster_id: String,
    /// `cluster` or `embedded`.
    pub mode: String,
    /// The broker answering.
    pub broker_id: i32,
    pub brokers: Vec<BrokerView>,
}

pub async fn cluster_view(broker: &Broker) -> Result<ClusterView, AdminError> {
    let m = &broker.membership;
    let catalog = broker.catalog.clone();
    let cluster = m.is_cluster();
    let (offset_groups, jobs) = crate::admin::catalog_call(move || {
        let jobs = if cluster { catalog.jobs()? } else { Vec::new() };
        Ok((catalog.offset_groups()?, jobs))
    })
    .await?;
    let mut groups: BTreeSet<String> = offset_groups.into_iter().collect();
    groups.extend(broker.groups.list().into_iter().map(|(g, _, _)| g));
    let live = m.live();
    // Alone, the broker runs its own upkeep; in a cluster, the holders of
    // the catalog's jobs do.
    let jobs_of = |id: i32| -> Vec<String> {
        if !cluster {
            return vec![
                sluice_broker::cluster::UPKEEP_JOB.to_string(),
                sluice_broker::cluster::METRICS_JOB.to_string(),
            ];
        }
        jobs.iter()
            .filter(|j| j.held && j.broker_id == id)
            .map(|j| j.name.clone())
            .collect()
    };
    let brokers = live
        .iter()
        .map(|b| BrokerView {
            broker_id: b.broker_id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
            epoch: b.epoch,
            lease_age_ms: b.lease_age_ms,
            lease_expires_ms: b.lease_expires_ms,
            this: b.broker_id == m.id(),
            groups: groups
                .iter()
                .filter(|g| m.coordinator(g).broker_id == b.broker_id)
                .cloned()
                .collect(),
            jobs: jobs_of(b.broker_id),
        })
        .collect();
    Ok(ClusterView {
        cluster_id: broker.cluster_id.clone(),
        mode: if m.is_cluster() {
            "cluster"
        } else {
            "embedded"
        }
        .into(),
        broker_id: m.id(),
        brokers,
    })
}
