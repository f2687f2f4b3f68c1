//! Metadata and DescribeCluster: this broker is the only node, leader of
//! every partition. Unknown topics are auto-created when the broker setting
//! and the request allow it.

use super::{code, find_or_create_topic, str_bytes};
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
use sluice_storage::Topic;

fn topic_entry(t: &Topic, node: i32) -> MetadataResponseTopic {
    let mut mt = MetadataResponseTopic::default();
    mt.name = Some(TopicName(str_bytes(t.record.name.clone())));
    mt.topic_id = t.record.id;
    mt.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.partition;
            mp.leader_id = BrokerId(node);
            mp.leader_epoch = 0;
            mp.replica_nodes = vec![BrokerId(node)];
            mp.isr_nodes = vec![BrokerId(node)];
            mp
        })
        .collect();
    mt
}

pub async fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let node = broker.config.node_id;
    let mut resp = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(node);
    b.host = str_bytes(broker.config.advertised_host.clone());
    b.port = broker.config.advertised_port;
    resp.brokers = vec![b];
    resp.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    resp.controller_id = BrokerId(node);
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
                .map(|t| topic_entry(t, node))
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
                    Ok(t) => resp.topics.push(topic_entry(&t, node)),
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

pub fn describe_cluster(broker: &Broker, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = str_bytes(broker.cluster_id.clone());
    resp.controller_id = BrokerId(broker.config.node_id);
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(broker.config.node_id);
    b.host = str_bytes(broker.config.advertised_host.clone());
    b.port = broker.config.advertised_port;
    resp.brokers = vec![b];
    resp
}
