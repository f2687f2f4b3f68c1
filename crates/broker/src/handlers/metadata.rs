//! Metadata and DescribeCluster: the live brokers and, per partition, a
//! leader. Storage is shared and any broker serves any partition, so the
//! leader only tells clients where the partition's tail is likely cached:
//! partitions are spread over the live brokers by a stable hash (all of
//! them on the embedded broker), and a client that names its zone
//! (`zone=` in its `client.id`) is given only the brokers of that zone.
//! Unknown topics are auto-created when the broker setting and the request
//! allow it.

use super::{code, find_or_create_topic, str_bytes};
use crate::cluster::placement::zone_of_client_id;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use sluice_catalog::BrokerRecord;
use sluice_storage::Topic;

fn topic_entry(broker: &Broker, t: &Topic, brokers: &[BrokerRecord]) -> MetadataResponseTopic {
    let mut mt = MetadataResponseTopic::default();
    mt.name = Some(TopicName(str_bytes(t.record.name.clone())));
    mt.topic_id = t.record.id;
    mt.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let leader = broker
                .membership
                .partition_leader(brokers, &t.record.id, p.partition())
                .map(|b| b.broker_id)
                .unwrap_or(broker.config.node_id);
            // Every broker holds every partition: the leader first.
            let mut replicas = vec![BrokerId(leader)];
            replicas.extend(
                brokers
                    .iter()
                    .filter(|b| b.broker_id != leader)
                    .map(|b| BrokerId(b.broker_id)),
            );
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.partition();
            mp.leader_id = BrokerId(leader);
            mp.leader_epoch = super::leader_epoch::LEADER_EPOCH;
            mp.isr_nodes = replicas.clone();
            mp.replica_nodes = replicas;
            mp
        })
        .collect();
    mt
}

pub async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
    client_id: &str,
) -> MetadataResponse {
    let brokers = broker.membership.brokers_for(zone_of_client_id(client_id));
    let mut resp = MetadataResponse::default();
    resp.brokers = brokers
        .iter()
        .map(|b| {
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.broker_id);
            mb.host = str_bytes(b.host.clone());
            mb.port = b.port;
            mb.rack = b.rack.clone().map(str_bytes);
            mb
        })
        .collect();
    resp.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    // The controller is one of the brokers this client is given (a client
    // pinned to its zone sends admin requests to it).
    resp.controller_id = BrokerId(
        brokers
            .iter()
            .map(|b| b.broker_id)
            .min()
            .unwrap_or_else(|| controller(broker)),
    );
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let requested = match req.topics {
        Some(list) if !(version == 0 && list.is_empty()) => Some(list),
        _ => None,
    };
    let allow_auto = version < 4 || req.allow_auto_topic_creation;
    match requested {
        None => {
            resp.topics = broker
                .store
                .topics()
                .iter()
                .map(|t| topic_entry(broker, t, &brokers))
                .collect();
        }
        Some(list) => {
            for rt in list {
                let name = match (&rt.name, rt.topic_id.is_nil()) {
                    (Some(n), _) => Some(n.0.as_str().to_string()),
                    (None, false) => broker
                        .store
                        .topic_by_id(&rt.topic_id)
                        .map(|t| t.record.name.clone()),
                    (None, true) => None,
                };
                let found = match &name {
                    Some(n) => find_or_create_topic(broker, n, allow_auto).await,
                    None => Err(ResponseError::UnknownTopicId),
                };
                match found {
                    Ok(t) => resp.topics.push(topic_entry(broker, &t, &brokers)),
                    Err(e) => {
                        let mut mt = MetadataResponseTopic::default();
                        mt.error_code = code(e);
                        mt.name = rt.name.clone();
                        mt.topic_id = rt.topic_id;
                        resp.topics.push(mt);
                    }
                }
            }
        }
    }
    resp
}

/// The broker named controller: the live broker with the lowest id (there
/// is no controller; tools only want a live broker).
fn controller(broker: &Broker) -> i32 {
    broker
        .membership
        .live()
        .first()
        .map(|b| b.broker_id)
        .unwrap_or(broker.config.node_id)
}

pub fn describe_cluster(broker: &Broker, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(broker.cluster_id.clone());
    resp.controller_id = BrokerId(controller(broker));
    resp.brokers = broker
        .membership
        .live()
        .iter()
        .map(|b| {
            let mut d = DescribeClusterBroker::default();
            d.broker_id = BrokerId(b.broker_id);
            d.host = str_bytes(b.host.clone());
            d.port = b.port;
            d.rack = b.rack.clone().map(str_bytes);
            d
        })
        .collect();
    resp
}
