//! Operator views and actions over the broker's state, shared by the HTTP
//! admin API and the CLI: consumer groups with their committed offsets,
//! log-end offsets and lag (the columns of `kafka-consumer-groups.sh
//! --describe`), offset resets and group deletion.
//!
//! In a cluster every broker answers for every group: members, Burrow
//! status and actions are the coordinator's, so a group another broker
//! coordinates is shown from the catalog's committed offsets and the shared
//! log ends (state `Unknown`, no members or status), and an action on it is
//! refused with the coordinator's address.

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use sluice_broker::groups::consumer_protocol::assignment_partitions;
use sluice_broker::groups::state::GroupState;
use sluice_broker::Broker;
use sluice_catalog::CommittedOffset;
use std::collections::BTreeMap;

/// One row of the group list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub members: usize,
    /// Lag in records over the partitions the caller may see.
    #[serde(default)]
    pub total_lag: i64,
    /// The largest lag in seconds (event age) among them.
    #[serde(default)]
    pub max_lag_seconds: f64,
    /// Burrow's status of the group over them (OK, WARN, ERR); empty for a
    /// group another broker coordinates.
    #[serde(default)]
    pub status: String,
    /// The broker coordinating the group.
    #[serde(default)]
    pub coordinator: Option<CoordinatorView>,
}

/// The broker coordinating a group: in a cluster, the live broker its id
/// hashes to; alone, this one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoordinatorView {
    pub broker_id: i32,
    pub host: String,
    pub port: i32,
    /// The broker answering.
    pub this: bool,
}

/// The coordinator of `group` as this broker's membership places it.
pub fn coordinator_of(broker: &Broker, group: &str) -> CoordinatorView {
    let m = &broker.membership;
    let b = m.coordinator(group);
    CoordinatorView {
        this: b.broker_id == m.id(),
        broker_id: b.broker_id,
        host: b.host,
        port: b.port,
    }
}

/// Whether another broker of the cluster coordinates `group`.
fn coordinated_elsewhere(broker: &Broker, group: &str) -> bool {
    broker.membership.is_cluster() && !broker.groups.owns(group)
}

/// The error for an action on a group another broker coordinates.
fn not_coordinator(broker: &Broker, group: &str, what: &str) -> AdminError {
    let c = coordinator_of(broker, group);
    AdminError::NotCoordinator(format!(
        "consumer group '{group}' is coordinated by broker {} ({}:{}); {what} through that broker",
        c.broker_id, c.host, c.port
    ))
}

/// The state shown for a group another broker coordinates.
const UNKNOWN_STATE: &str = "Unknown";

/// A member of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A partition of a group: committed offset, log end and lag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Committed offset, if any.
    pub current_offset: Option<i64>,
    pub log_end_offset: i64,
    /// log end − committed; `None` without a committed offset.
    pub lag: Option<i64>,
    pub consumer_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
    /// Age in seconds of the first uncommitted record (0 when caught up).
    pub lag_seconds: f64,
    /// Burrow status of the partition.
    pub status: String,
    /// Lag change in records per second over the commit window.
    pub trend: f64,
    /// The lag at each commit of the window Burrow evaluates (the last ten),
    /// as `[time_ms, lag]`, oldest first: the trend behind `status`.
    #[serde(default)]
    pub commits: Vec<[i64; 2]>,
}

/// A group in detail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDetail {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    /// Burrow status of the group (OK, WARN, ERR).
    pub status: String,
    pub total_lag: i64,
    pub max_lag_seconds: f64,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionLag>,
    /// The broker coordinating the group (members, status and actions are
    /// its).
    #[serde(default)]
    pub coordinator: Option<CoordinatorView>,
}

/// One row of the topic list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicSummary {
    pub topic: String,
    pub id: String,
    pub partitions: usize,
    /// Records between log start and log end, over all partitions.
    pub messages: i64,
    pub size_bytes: u64,
    pub bytes_in_per_sec: f64,
    pub records_in_per_sec: f64,
    pub bytes_out_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicPartitionView {
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// A topic in detail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicDetail {
    #[serde(flatten)]
    pub summary: TopicSummary,
    pub configs: BTreeMap<String, String>,
    pub partition_details: Vec<TopicPartitionView>,
}

fn topic_summary(broker: &Broker, t: &sluice_storage::Topic) -> TopicSummary {
    let name = &t.record.name;
    let (mut messages, mut size) = (0i64, 0u64);
    for p in &t.partitions {
        let (log_start, hw) = p.offsets();
        messages += hw - log_start;
        size += p.size_bytes();
    }
    TopicSummary {
        topic: name.clone(),
        id: t.record.id.to_string(),
        partitions: t.partitions.len(),
        messages,
        size_bytes: size,
        bytes_in_per_sec: broker.rates.rate(&format!("bytes_in/{name}")),
        records_in_per_sec: broker.rates.rate(&format!("records_in/{name}")),
        bytes_out_per_sec: broker.rates.rate(&format!("bytes_out/{name}")),
    }
}

pub fn list_topics(broker: &Broker) -> Vec<TopicSummary> {
    broker
        .store
        .topics()
        .iter()
        .map(|t| topic_summary(broker, t))
        .collect()
}

pub fn describe_topic(broker: &Broker, name: &str) -> Result<TopicDetail, AdminError> {
    let t = broker
        .store
        .topic(name)
        .ok_or_else(|| AdminError::NotFound(format!("topic '{name}' does not exist")))?;
    Ok(TopicDetail {
        summary: topic_summary(broker, &t),
        configs: t.record.configs.clone(),
        partition_details: t
            .partitions
            .iter()
            .map(|p| {
                let (log_start, hw) = p.offsets();
                TopicPartitionView {
                    partition: p.partition(),
                    log_start_offset: log_start,
                    log_end_offset: hw,
                    size_bytes: p.size_bytes(),
                }
            })
            .collect(),
    })
}

/// Where to move a group's offsets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "to", content = "value")]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Timestamp(i64),
    Offset(i64),
}

/// A reset request: which topics, where to, and whether to apply it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetRequest {
    /// Topics to reset; empty means every topic the group has offsets for.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(flatten)]
    pub target: ResetTarget,
    #[serde(default)]
    pub execute: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetPlanRow {
    pub topic: String,
    pub partition: i32,
    pub current_offset: Option<i64>,
    pub new_offset: i64,
}

/// Admin failures, each with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
    /// The caller may not do this (the HTTP side's authorization).
    #[error("{0}")]
    Forbidden(String),
    /// Another broker of the cluster coordinates the group acted on.
    #[error("{0}")]
    NotCoordinator(String),
}

pub fn list_groups(broker: &Broker) -> Vec<GroupSummary> {
    broker
        .groups
        .list()
        .into_iter()
        .map(|(group, state, protocol_type)| {
            let members = broker.groups.member_count(&group);
            let coordinator = Some(coordinator_of(broker, &group));
            GroupSummary {
                group,
                state: state.as_str().to_string(),
                protocol_type,
                members,
                total_lag: 0,
                max_lag_seconds: 0.0,
                status: String::new(),
                coordinator,
            }
        })
        .collect()
}

/// Runs catalog work off the async workers; its failure is internal.
pub(crate) async fn catalog_call<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, sluice_catalog::CatalogError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?
        .map_err(|e| AdminError::Internal(e.to_string()))
}

/// A group's committed offsets as the catalog has them, for a group this
/// broker does not coordinate (its cache holds only its own groups').
async fn catalog_offsets(broker: &Broker, group: &str) -> Result<Vec<CommittedOffset>, AdminError> {
    use sluice_catalog::OffsetStore;
    let catalog = broker.catalog.clone();
    let g = group.to_string();
    catalog_call(move || catalog.group_offsets(&g)).await
}

/// Groups other brokers of the cluster coordinate, with committed offsets
/// in the catalog, each with its lag over the topics `may_see` allows.
async fn groups_coordinated_elsewhere(
    broker: &Broker,
    may_see: &impl Fn(&str) -> bool,
) -> Result<Vec<GroupSummary>, AdminError> {
    use sluice_catalog::OffsetStore;
    let catalog = broker.catalog.clone();
    let all = catalog_call(move || catalog.all_offsets()).await?;
    let mut by_group: BTreeMap<String, Vec<(String, i32, i64)>> = BTreeMap::new();
    for (group, o) in all {
        if coordinated_elsewhere(broker, &group) {
            by_group
                .entry(group)
                .or_default()
                .push((o.topic, o.partition, o.offset));
        }
    }
    let now = sluice_storage::now_ms();
    let mut out = Vec::with_capacity(by_group.len());
    for (group, offsets) in by_group {
        let seen = offsets.into_iter().filter(|(t, _, _)| may_see(t));
        let lag = crate::lag::lag_from_offsets(broker, seen, now).await;
        out.push(GroupSummary {
            state: UNKNOWN_STATE.to_string(),
            protocol_type: String::new(),
            members: 0,
            total_lag: lag.iter().map(|p| p.lag).sum(),
            max_lag_seconds: lag.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
            status: String::new(),
            coordinator: Some(coordinator_of(broker, &group)),
            group,
        });
    }
    Ok(out)
}

/// The group list with each group's lag, lag seconds and status, counted
/// over the topics `may_see` allows (what the console's group list and
/// `sluice top` show). The figures come from the same cached per-group
/// lag as `/metrics`.
pub async fn list_groups_with_lag(
    broker: &Broker,
    may_see: impl Fn(&str) -> bool,
) -> Vec<GroupSummary> {
    let now = sluice_storage::now_ms();
    let mut groups = list_groups(broker);
    for g in groups.iter_mut() {
        let lag = crate::lag::group_lag(broker, &g.group, now).await;
        let seen: Vec<_> = lag
            .partitions
            .iter()
            .filter(|p| may_see(&p.topic))
            .collect();
        g.total_lag = seen.iter().map(|p| p.lag).sum();
        g.max_lag_seconds = seen.iter().map(|p| p.lag_seconds).fold(0.0, f64::max);
        g.status = sluice_observe::burrow::group_status(seen.iter().map(|p| p.status))
            .as_str()
            .to_string();
    }
    if broker.membership.is_cluster() {
        match groups_coordinated_elsewhere(broker, &may_see).await {
            Ok(more) => {
                groups.extend(more);
                groups.sort_by(|a, b| a.group.cmp(&b.group));
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the groups other brokers coordinate failed")
            }
        }
    }
    groups
}

/// A group another broker coordinates, from the catalog's offsets.
async fn describe_group_elsewhere(broker: &Broker, group: &str) -> Result<GroupDetail, AdminError> {
    let offsets = catalog_offsets(broker, group).await?;
    let coordinator = coordinator_of(broker, group);
    if offsets.is_empty() {
        return Err(AdminError::NotFound(format!(
            "consumer group '{group}' has no committed offsets (broker {} coordinates it and knows its members)",
            coordinator.broker_id
        )));
    }
    let now = sluice_storage::now_ms();
    let lag = crate::lag::lag_from_offsets(
        broker,
        offsets
            .into_iter()
            .map(|o| (o.topic, o.partition, o.offset)),
        now,
    )
    .await;
    let partitions: Vec<PartitionLag> = lag
        .into_iter()
        .map(|p| PartitionLag {
            topic: p.topic,
            partition: p.partition,
            current_offset: Some(p.committed),
            log_end_offset: p.log_end,
            lag: Some(p.lag),
            consumer_id: None,
            host: None,
            client_id: None,
            lag_seconds: p.lag_seconds,
            status: String::new(),
            trend: 0.0,
            commits: Vec::new(),
        })
        .collect();
    Ok(GroupDetail {
        group: group.to_string(),
        state: UNKNOWN_STATE.to_string(),
        protocol_type: String::new(),
        protocol: String::new(),
        generation: -1,
        status: String::new(),
        total_lag: partitions.iter().filter_map(|p| p.lag).sum(),
        max_lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
        members: Vec::new(),
        partitions,
        coordinator: Some(coordinator),
    })
}

pub async fn describe_group(broker: &Broker, group: &str) -> Result<GroupDetail, AdminError> {
    if coordinated_elsewhere(broker, group) {
        return describe_group_elsewhere(broker, group).await;
    }
    if !broker.groups.exists(group) {
        return Err(AdminError::NotFound(format!(
            "consumer group '{group}' does not exist"
        )));
    }
    let desc = broker.groups.group(group).map(|g| g.describe());
    let mut owners: BTreeMap<TopicPartition, (String, String, String)> = BTreeMap::new();
    let mut members = Vec::new();
    if let Some(d) = &desc {
        for m in &d.members {
            let assignment: Vec<TopicPartition> = if d.protocol_type == "consumer" {
                assignment_partitions(&m.assignment)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, partition)| TopicPartition { topic, partition })
                    .collect()
            } else {
                Vec::new()
            };
            for tp in &assignment {
                owners.insert(
                    tp.clone(),
                    (
                        m.member_id.clone(),
                        m.client_host.clone(),
                        m.client_id.clone(),
                    ),
                );
            }
            members.push(MemberView {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                host: m.client_host.clone(),
                assignment,
            });
        }
    }
    let committed: BTreeMap<TopicPartition, CommittedOffset> = broker
        .groups
        .committed(group)
        .into_iter()
        .map(|o| {
            (
                TopicPartition {
                    topic: o.topic.clone(),
                    partition: o.partition,
                },
                o,
            )
        })
        .collect();
    let mut keys: Vec<TopicPartition> = committed
        .keys()
        .cloned()
        .chain(owners.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    let now = sluice_storage::now_ms();
    let lag = crate::lag::group_lag(broker, group, now).await;
    let partitions = keys
        .into_iter()
        .map(|tp| {
            let info = lag
                .partitions
                .iter()
                .find(|i| *i.topic == *tp.topic && i.partition == tp.partition);
            let log_end = broker
                .store
                .topic(&tp.topic)
                .and_then(|t| t.partition(tp.partition).map(|p| p.offsets().1))
                .unwrap_or(0);
            let current = committed.get(&tp).map(|o| o.offset);
            let owner = owners.get(&tp);
            PartitionLag {
                lag: current.map(|c| (log_end - c).max(0)),
                current_offset: current,
                log_end_offset: log_end,
                consumer_id: owner.map(|o| o.0.clone()),
                host: owner.map(|o| o.1.clone()),
                client_id: owner.map(|o| o.2.clone()),
                lag_seconds: info.map(|i| i.lag_seconds).unwrap_or(0.0),
                status: info.map(|i| i.status.as_str()).unwrap_or("OK").to_string(),
                trend: info.map(|i| i.trend).unwrap_or(0.0),
                commits: broker.lag.with_topic(group, &tp.topic, |tracks| {
                    tracks
                        .get(&tp.partition)
                        .map(|t| t.window.points().map(|c| [c.time_ms, c.lag]).collect())
                        .unwrap_or_default()
                }),
                topic: tp.topic,
                partition: tp.partition,
            }
        })
        .collect();
    let (state, protocol_type, protocol, generation) = match desc {
        Some(d) => (d.state, d.protocol_type, d.protocol, d.generation),
        None => (GroupState::Empty, String::new(), String::new(), 0),
    };
    Ok(GroupDetail {
        group: group.to_string(),
        state: state.as_str().to_string(),
        protocol_type,
        protocol,
        generation,
        status: lag.status.as_str().to_string(),
        total_lag: lag.total_lag,
        max_lag_seconds: lag.max_lag_seconds,
        members,
        partitions,
        coordinator: Some(coordinator_of(broker, group)),
    })
}

/// Plans (and with `execute`, applies) an offset reset. Like Kafka's tool,
/// it refuses while the group has active members.
pub async fn reset_offsets(
    broker: &Broker,
    group: &str,
    req: ResetRequest,
) -> Result<Vec<ResetPlanRow>, AdminError> {
    // Committing here would pass by the coordinator's cache of offsets.
    if coordinated_elsewhere(broker, group) {
        return Err(not_coordinator(broker, group, "reset its offsets"));
    }
    if let Some(g) = broker.groups.group(group) {
        if !g.is_empty() {
            return Err(AdminError::Conflict(format!(
                "consumer group '{group}' has active members; offsets can only be reset while it is inactive"
            )));
        }
    }
    let committed = broker.groups.committed(group);
    let topics: Vec<String> = if req.topics.is_empty() {
        let mut t: Vec<String> = committed.iter().map(|o| o.topic.clone()).collect();
        t.dedup();
        if t.is_empty() {
            return Err(AdminError::BadRequest(format!(
                "consumer group '{group}' has no committed offsets; name the topics to reset"
            )));
        }
        t
    } else {
        req.topics.clone()
    };
    let mut plan = Vec::new();
    for name in topics {
        let topic = broker
            .store
            .topic(&name)
            .ok_or_else(|| AdminError::NotFound(format!("topic '{name}' does not exist")))?;
        for p in &topic.partitions {
            let (log_start, hw) = p.offsets();
            let new_offset = match req.target {
                ResetTarget::Earliest => log_start,
                ResetTarget::Latest => hw,
                ResetTarget::Offset(o) => o.clamp(log_start, hw),
                ResetTarget::Timestamp(ts) => broker
                    .store
                    .offset_for_timestamp(p, ts)
                    .await
                    .map_err(|e| AdminError::Internal(e.to_string()))?
                    .map(|(o, _)| o)
                    .unwrap_or(hw),
            };
            let current = committed
                .iter()
                .find(|o| o.topic == name && o.partition == p.partition())
                .map(|o| o.offset);
            plan.push(ResetPlanRow {
                topic: name.clone(),
                partition: p.partition(),
                current_offset: current,
                new_offset,
            });
        }
    }
    if req.execute {
        let now = sluice_storage::now_ms();
        let offsets = plan
            .iter()
            .map(|r| CommittedOffset {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.new_offset,
                leader_epoch: -1,
                metadata: Some(String::new()),
                commit_ms: now,
            })
            .collect();
        broker
            .groups
            .commit(group, offsets)
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        tracing::info!(group, rows = plan.len(), "reset committed offsets");
    }
    Ok(plan)
}

pub async fn delete_group(broker: &Broker, group: &str) -> Result<(), AdminError> {
    if coordinated_elsewhere(broker, group) {
        return Err(not_coordinator(broker, group, "delete it"));
    }
    broker
        .groups
        .delete_group(group)
        .await
        .map(|()| broker.lag.forget_group(group))
        .map_err(|e| match e {
            ResponseError::GroupIdNotFound => {
                AdminError::NotFound(format!("consumer group '{group}' does not exist"))
            }
            ResponseError::NonEmptyGroup => AdminError::Conflict(format!(
                "consumer group '{group}' has active members; it can only be deleted when empty"
            )),
            other => AdminError::Internal(format!("{other:?}")),
        })
}
