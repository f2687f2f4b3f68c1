//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups and OffsetDelete, translated to and from the coordinator.

use super::{code, str_bytes};
use crate::groups::consumer_protocol::subscription_topics;
use crate::groups::state::{Deferred, GroupState, JoinRequest, JoinResult, SyncResult};
use crate::Broker;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use sluice_catalog::CommittedOffset;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest committed metadata string accepted (Kafka's offset.metadata.max.bytes).
const MAX_METADATA: usize = 4096;

fn opt_str(s: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    s.as_ref().map(|v| v.as_str().to_string())
}

/// FindCoordinator: the broker a group or transactional id hashes to among
/// the live brokers (this one on the embedded broker).
pub fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    let keys = if version >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    let is_group = req.key_type == 0;
    let mut coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let mut c = Coordinator::default();
            if is_group || req.key_type == 1 {
                let b = if is_group {
                    broker.membership.coordinator(key.as_str())
                } else {
                    broker.membership.txn_coordinator(key.as_str())
                };
                c.node_id = BrokerId(b.broker_id);
                c.host = str_bytes(b.host);
                c.port = b.port;
            } else {
                c.error_code = code(ResponseError::CoordinatorNotAvailable);
                c.error_message = Some(str_bytes("unknown coordinator key type"));
                c.node_id = BrokerId(-1);
                c.port = -1;
            }
            c.key = key;
            c
        })
        .collect();
    if version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.pop() {
        resp.error_code = c.error_code;
        if version >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    resp
}

/// JoinGroup: the membership change happens now, in request order; the
/// returned future resolves when the group's join phase completes.
pub fn join_group(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> BoxFuture<'static, JoinGroupResponse> {
    let group_id = req.group_id.0.as_str().to_string();
    let refused = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        broker.coordinator_error(&group_id)
    };
    let (deferred, fallback) = if let Some(e) = refused {
        let e = JoinResult::error(e, req.member_id.as_str());
        (Deferred::Now(e.clone()), e)
    } else {
        let group = broker.groups.get_or_create(&group_id);
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = if version >= 1 {
            Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
        } else {
            session
        };
        let join = JoinRequest {
            member_id: req.member_id.as_str().to_string(),
            instance_id: opt_str(&req.group_instance_id),
            client_id: client_id.to_string(),
            client_host: format!("/{}", peer.ip()),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: req.protocol_type.as_str().to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.as_str().to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let fallback = JoinResult::error(ResponseError::RebalanceInProgress, &join.member_id);
        (group.join(join), fallback)
    };
    Box::pin(async move {
        let result = deferred.resolve(fallback).await;
        let mut resp = JoinGroupResponse::default();
        resp.error_code = result.error;
        resp.generation_id = result.generation;
        if version >= 7 {
            resp.protocol_type = result.protocol_type.map(str_bytes);
        }
        resp.protocol_name = Some(str_bytes(result.protocol_name.unwrap_or_default()));
        resp.leader = str_bytes(result.leader);
        resp.member_id = str_bytes(result.member_id);
        resp.skip_assignment = version >= 9 && result.skip_assignment;
        resp.members = result
            .members
            .into_iter()
            .map(|(id, instance, metadata)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = str_bytes(id);
                m.group_instance_id = if version >= 5 {
                    instance.map(str_bytes)
                } else {
                    None
                };
                m.metadata = metadata;
                m
            })
            .collect();
        resp
    })
}

/// SyncGroup: applied now, answered when the leader's assignment arrives.
pub fn sync_group(
    broker: &Broker,
    req: SyncGroupRequest,
    version: i16,
) -> BoxFuture<'static, SyncGroupResponse> {
    let group_id = req.group_id.0.as_str();
    let fallback = SyncResult::error(ResponseError::RebalanceInProgress);
    let deferred = match broker.groups.group(group_id) {
        _ if broker.coordinator_error(group_id).is_some() => {
            Deferred::Now(SyncResult::error(ResponseError::NotCoordinator))
        }
        None => Deferred::Now(SyncResult::error(ResponseError::UnknownMemberId)),
        Some(group) => {
            let assignments = req
                .assignments
                .into_iter()
                .map(|a| (a.member_id.as_str().to_string(), a.assignment))
                .collect();
            let instance = opt_str(&req.group_instance_id);
            group.sync(
                req.member_id.as_str(),
                instance.as_deref(),
                req.generation_id,
                assignments,
            )
        }
    };
    Box::pin(async move {
        let result = deferred.resolve(fallback).await;
        let mut resp = SyncGroupResponse::default();
        resp.error_code = result.error;
        if version >= 5 {
            resp.protocol_type = result.protocol_type.map(str_bytes);
            resp.protocol_name = result.protocol_name.map(str_bytes);
        }
        resp.assignment = result.assignment;
        resp
    })
}

pub fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    let instance = opt_str(&req.group_instance_id);
    let group_id = req.group_id.0.as_str();
    let result = match broker.groups.group(group_id) {
        _ if broker.coordinator_error(group_id).is_some() => Err(ResponseError::NotCoordinator),
        None => Err(ResponseError::UnknownMemberId),
        Some(g) => g.heartbeat(
            req.member_id.as_str(),
            instance.as_deref(),
            req.generation_id,
        ),
    };
    if let Err(e) = result {
        resp.error_code = code(e);
    }
    resp
}

pub fn leave_group(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    if let Some(e) = broker.coordinator_error(req.group_id.0.as_str()) {
        resp.error_code = code(e);
        return resp;
    }
    let group = broker.groups.group(req.group_id.0.as_str());
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_string(),
                    opt_str(&m.group_instance_id),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.as_str().to_string(), None)]
    };
    for (member_id, instance) in identities {
        let r = match &group {
            None => Err(ResponseError::UnknownMemberId),
            Some(g) => g.leave(&member_id, instance.as_deref()),
        };
        if version >= 3 {
            let mut m = MemberResponse::default();
            m.member_id = str_bytes(member_id);
            m.group_instance_id = instance.map(str_bytes);
            if let Err(e) = r {
                m.error_code = code(e);
            }
            resp.members.push(m);
        } else if let Err(e) = r {
            resp.error_code = code(e);
        }
    }
    resp
}

pub async fn offset_commit(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let instance = opt_str(&req.group_instance_id);
    let group_error = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else if let Some(e) = broker.coordinator_error(&group_id) {
        Some(e)
    } else if let Some(g) = broker.groups.consumer_group(&group_id) {
        // KIP-848: the member id and epoch of the consumer protocol.
        g.check_commit(req.member_id.as_str(), req.generation_id_or_member_epoch)
            .err()
    } else {
        broker
            .groups
            .get_or_create(&group_id)
            .check_commit(
                req.member_id.as_str(),
                instance.as_deref(),
                req.generation_id_or_member_epoch,
            )
            .err()
    };
    let now = sluice_storage::now_ms();
    let mut resp = OffsetCommitResponse::default();
    let mut accepted = Vec::new();
    let mut slots = Vec::new();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let topic = broker.store.topic(&name);
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            let err = if let Some(e) = group_error {
                Some(e)
            } else if topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                None
            };
            match err {
                Some(e) => pr.error_code = code(e),
                None => {
                    slots.push((resp.topics.len(), tr.partitions.len()));
                    accepted.push(CommittedOffset {
                        topic: name.clone(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: opt_str(&p.committed_metadata),
                        commit_ms: now,
                    });
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    let committed: Vec<(String, i32, i64)> = accepted
        .iter()
        .map(|o| (o.topic.clone(), o.partition, o.offset))
        .collect();
    if let Err(e) = broker.groups.commit(&group_id, accepted).await {
        tracing::error!(group = %group_id, error = %e, "offset commit failed");
        // Fenced: this broker's lease ran out, so it may not be the
        // coordinator any more; the client looks the coordinator up again.
        let err = match e {
            sluice_catalog::CatalogError::Fenced(_) => ResponseError::NotCoordinator,
            _ => ResponseError::KafkaStorageError,
        };
        for (t, p) in slots {
            resp.topics[t].partitions[p].error_code = code(err);
        }
    } else {
        for (topic, partition, offset) in committed {
            let log_end = broker
                .store
                .topic(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.offsets().1))
                .unwrap_or(offset);
            broker
                .lag
                .record_commit(&group_id, &topic, partition, offset, log_end, now);
        }
    }
    resp
}

/// Committed offset of one partition: (offset, leader epoch, metadata).
fn fetch_one(
    broker: &Broker,
    group: &str,
    topic: &str,
    partition: i32,
) -> (i64, i32, Option<String>) {
    match broker.groups.committed_one(group, topic, partition) {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, Some(String::new())),
    }
}

/// (topic, partitions) requested, or every committed one when `None`.
fn fetch_targets(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<i32>)> {
    match topics {
        Some(t) => t,
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for o in broker.groups.committed(group) {
                by_topic.entry(o.topic).or_default().push(o.partition);
            }
            by_topic.into_iter().collect()
        }
    }
}

pub fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let group_id = g.group_id.0.as_str().to_string();
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
                    .collect()
            });
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            if let Some(e) = broker.coordinator_error(&group_id) {
                gr.error_code = code(e);
                resp.groups.push(gr);
                continue;
            }
            for (topic, parts) in fetch_targets(broker, &group_id, wanted) {
                let mut tr = OffsetFetchResponseTopics::default();
                tr.name = TopicName(str_bytes(topic.clone()));
                for p in parts {
                    let (offset, epoch, metadata) = fetch_one(broker, &group_id, &topic, p);
                    let mut pr = OffsetFetchResponsePartitions::default();
                    pr.partition_index = p;
                    pr.committed_offset = offset;
                    pr.committed_leader_epoch = epoch;
                    pr.metadata = metadata.map(str_bytes);
                    tr.partitions.push(pr);
                }
                gr.topics.push(tr);
            }
            resp.groups.push(gr);
        }
        return resp;
    }
    let group_id = req.group_id.0.as_str().to_string();
    if let Some(e) = broker.coordinator_error(&group_id) {
        resp.error_code = code(e);
        return resp;
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
            .collect()
    });
    for (topic, parts) in fetch_targets(broker, &group_id, wanted) {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = TopicName(str_bytes(topic.clone()));
        for p in parts {
            let (offset, epoch, metadata) = fetch_one(broker, &group_id, &topic, p);
            let mut pr = OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_offset = offset;
            if version >= 5 {
                pr.committed_leader_epoch = epoch;
            }
            pr.metadata = metadata.map(str_bytes);
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

pub fn list_groups(broker: &Broker, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    for (id, state, protocol_type) in broker.groups.list() {
        if !states.is_empty() && !states.contains(&state.as_str().to_ascii_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == "classic") {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(str_bytes(id));
        g.protocol_type = str_bytes(protocol_type);
        if version >= 4 {
            g.group_state = str_bytes(state.as_str());
        }
        if version >= 5 {
            g.group_type = str_bytes("classic");
        }
        resp.groups.push(g);
    }
    resp
}

pub fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut dg = DescribedGroup::default();
        dg.group_id = id.clone();
        if let Some(e) = broker.coordinator_error(id.0.as_str()) {
            dg.error_code = code(e);
            resp.groups.push(dg);
            continue;
        }
        match broker.groups.group(id.0.as_str()).map(|g| g.describe()) {
            Some(d) => {
                dg.group_state = str_bytes(d.state.as_str());
                dg.protocol_type = str_bytes(d.protocol_type);
                dg.protocol_data = str_bytes(d.protocol);
                dg.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            dm.group_instance_id = m.instance_id.map(str_bytes);
                        }
                        dm.client_id = str_bytes(m.client_id);
                        dm.client_host = str_bytes(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            None if broker.groups.exists(id.0.as_str()) => {
                dg.group_state = str_bytes(GroupState::Empty.as_str())
            }
            None => dg.group_state = str_bytes(GroupState::Dead.as_str()),
        }
        resp.groups.push(dg);
    }
    resp
}

pub async fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = DeletableGroupResult::default();
        if let Some(e) = broker.coordinator_error(id.0.as_str()) {
            r.error_code = code(e);
            r.group_id = id;
            resp.results.push(r);
            continue;
        }
        match broker.groups.delete_group(id.0.as_str()).await {
            Ok(()) => broker.lag.forget_group(id.0.as_str()),
            Err(e) => r.error_code = code(e),
        }
        r.group_id = id;
        resp.results.push(r);
    }
    resp
}

pub async fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    let group_id = req.group_id.0.as_str().to_string();
    if let Some(e) = broker.coordinator_error(&group_id) {
        resp.error_code = code(e);
        return resp;
    }
    if !broker.groups.exists(&group_id) {
        resp.error_code = code(ResponseError::GroupIdNotFound);
        return resp;
    }
    // Topics the group's members subscribe to cannot lose their offsets.
    let subscribed: Vec<String> = broker
        .groups
        .group(&group_id)
        .map(|g| g.describe())
        .filter(|d| d.protocol_type == "consumer")
        .map(|d| {
            d.members
                .iter()
                .filter_map(|m| subscription_topics(&m.metadata))
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    let mut to_delete = Vec::new();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if subscribed.contains(&name) {
                pr.error_code = code(ResponseError::GroupSubscribedToTopic);
            } else if broker
                .store
                .topic(&name)
                .and_then(|t| t.partition(p.partition_index).cloned())
                .is_none()
            {
                pr.error_code = code(ResponseError::UnknownTopicOrPartition);
            } else {
                to_delete.push((name.clone(), p.partition_index));
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if let Err(e) = broker.groups.delete_offsets(&group_id, to_delete).await {
        tracing::error!(group = %group_id, error = %e, "offset delete failed");
        resp.error_code = code(ResponseError::KafkaStorageError);
    }
    resp
}
