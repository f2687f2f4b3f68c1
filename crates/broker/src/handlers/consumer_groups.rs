//! KIP-848 on the wire: ConsumerGroupHeartbeat and ConsumerGroupDescribe,
//! answered by the group's coordinator from [`crate::groups::kip848`].

use super::{code, str_bytes};
use crate::groups::kip848::{Heartbeat, TopicsView, Tp};
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self, Assignment};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;
use uuid::Uuid;

/// The topics members may subscribe to: the broker's topics, without the
/// internal ones.
fn topics_view(broker: &Broker) -> TopicsView {
    broker
        .store
        .topics()
        .iter()
        .filter(|t| !t.record.name.starts_with("__"))
        .map(|t| (t.record.name.clone(), (t.record.id, t.record.partitions)))
        .collect()
}

fn by_topic(tps: &BTreeSet<Tp>) -> BTreeMap<Uuid, Vec<i32>> {
    let mut out: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        out.entry(*t).or_default().push(*p);
    }
    out
}

pub fn heartbeat(
    broker: &Broker,
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    peer: SocketAddr,
) -> ConsumerGroupHeartbeatResponse {
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    resp.heartbeat_interval_ms = broker
        .groups
        .settings
        .consumer_heartbeat_interval
        .as_millis() as i32;
    let group_id = req.group_id.0.as_str();
    let refused = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        broker.coordinator_error(group_id)
    };
    if let Some(e) = refused {
        resp.error_code = code(e);
        return resp;
    }
    let Some(group) = broker.groups.consumer_group_or_create(group_id) else {
        resp.error_code = code(ResponseError::GroupIdNotFound);
        resp.error_message = Some(str_bytes(format!(
            "group {group_id} is a classic group with members"
        )));
        return resp;
    };
    let hb = Heartbeat {
        member_id: req.member_id.as_str().to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.as_str().to_string()),
        rack: req.rack_id.as_ref().map(|s| s.as_str().to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|t| t.iter().map(|n| n.0.as_str().to_string()).collect()),
        regex: req
            .subscribed_topic_regex
            .as_ref()
            .map(|s| s.as_str().to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.as_str().to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
                .collect()
        }),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
    };
    match group.heartbeat(hb, &topics_view(broker), Instant::now()) {
        Ok(a) => {
            resp.member_id = Some(str_bytes(a.member_id));
            resp.member_epoch = a.member_epoch;
            resp.assignment = a.assignment.map(|tps| {
                let mut out = Assignment::default();
                out.topic_partitions = by_topic(&tps)
                    .into_iter()
                    .map(|(id, partitions)| {
                        let mut t = consumer_group_heartbeat_response::TopicPartitions::default();
                        t.topic_id = id;
                        t.partitions = partitions;
                        t
                    })
                    .collect();
                out
            });
        }
        Err((e, message)) => {
            resp.error_code = code(e);
            resp.error_message = message.map(str_bytes);
        }
    }
    resp
}

fn describe_assignment(
    tps: &BTreeSet<Tp>,
    names: &BTreeMap<Uuid, String>,
) -> consumer_group_describe_response::Assignment {
    let mut out = consumer_group_describe_response::Assignment::default();
    out.topic_partitions = by_topic(tps)
        .into_iter()
        .map(|(id, partitions)| {
            let mut t = consumer_group_describe_response::TopicPartitions::default();
            t.topic_id = id;
            t.topic_name = TopicName(str_bytes(names.get(&id).cloned().unwrap_or_default()));
            t.partitions = partitions;
            t
        })
        .collect();
    out
}

pub fn describe(
    broker: &Broker,
    req: ConsumerGroupDescribeRequest,
    refused: &dyn Fn(&str) -> Option<ResponseError>,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<Uuid, String> = broker
        .store
        .topics()
        .iter()
        .map(|t| (t.record.id, t.record.name.clone()))
        .collect();
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut d = DescribedGroup::default();
        let gid = id.0.as_str();
        let error = refused(gid).or_else(|| broker.coordinator_error(gid));
        match (error, broker.groups.consumer_group(gid)) {
            (Some(e), _) => d.error_code = code(e),
            (None, None) => {
                d.error_code = code(ResponseError::GroupIdNotFound);
                d.error_message = Some(str_bytes(format!("no consumer group {gid}")));
            }
            (None, Some(g)) => {
                let v = g.view();
                d.group_state = str_bytes(v.state);
                d.group_epoch = v.epoch;
                d.assignment_epoch = v.assignment_epoch;
                d.assignor_name = str_bytes(v.assignor);
                d.members = v
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut out = consumer_group_describe_response::Member::default();
                        out.member_id = str_bytes(m.member_id);
                        out.instance_id = m.instance_id.map(str_bytes);
                        out.rack_id = m.rack.map(str_bytes);
                        out.member_epoch = m.epoch;
                        out.client_id = str_bytes(m.client_id);
                        out.client_host = str_bytes(m.client_host);
                        out.subscribed_topic_names = m
                            .topics
                            .into_iter()
                            .map(|t| TopicName(str_bytes(t)))
                            .collect();
                        out.subscribed_topic_regex = m.regex.map(str_bytes);
                        out.assignment = describe_assignment(&m.assigned, &names);
                        out.target_assignment = describe_assignment(&m.target, &names);
                        out
                    })
                    .collect();
            }
        }
        d.authorized_operations = i32::MIN;
        d.group_id = id;
        resp.groups.push(d);
    }
    resp
}
