//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions.

use super::{code, str_bytes, validate_topic_name};
use crate::topic_config;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use sluice_storage::StorageError;
use std::collections::{BTreeMap, HashSet};

/// Config source codes of DescribeConfigs/CreateTopics.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DEFAULT: i8 = 5;

/// A topic's effective configs: explicit ones, then defaults.
pub fn effective_configs(explicit: &BTreeMap<String, String>) -> Vec<(String, String, i8)> {
    let mut out: Vec<(String, String, i8)> = topic_config::defaults()
        .map(|(k, d)| match explicit.get(k) {
            Some(v) => (k.to_string(), v.clone(), SOURCE_TOPIC),
            None => (k.to_string(), d.to_string(), SOURCE_DEFAULT),
        })
        .collect();
    for (k, v) in explicit {
        if topic_config::default_of(k).is_none() {
            out.push((k.clone(), v.clone(), SOURCE_TOPIC));
        }
    }
    out
}

/// What is wrong with a manual replica assignment (Kafka's checks): it
/// excludes a partition count and replication factor, numbers partitions
/// 0.. without gaps, and names live brokers, each once per partition. A
/// valid one only sets the partition count: storage is shared, so every
/// broker serves every partition whatever the assignment says.
fn manual_assignment_error(
    broker: &Broker,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Option<(ResponseError, String)> {
    if t.assignments.is_empty() {
        return None;
    }
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Some((
            ResponseError::InvalidRequest,
            "a manual replica assignment excludes num_partitions and replication_factor".into(),
        ));
    }
    let mut live: Vec<i32> = broker
        .membership
        .live()
        .iter()
        .map(|b| b.broker_id)
        .collect();
    live.push(broker.membership.me().broker_id);
    let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return Some((
            ResponseError::InvalidReplicaAssignment,
            "partitions of a replica assignment must be numbered from 0 without gaps".into(),
        ));
    }
    let replicas = t.assignments[0].broker_ids.len();
    for a in &t.assignments {
        let mut ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if ids.is_empty() || ids.len() != replicas {
            return Some((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "partition {} lists {} replicas; every partition needs the same number, at least one",
                    a.partition_index,
                    ids.len()
                ),
            ));
        }
        if let Some(b) = ids.iter().find(|b| !live.contains(b)) {
            return Some((
                ResponseError::BrokerNotAvailable,
                format!("broker {b} in the replica assignment is not a live broker"),
            ));
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != a.broker_ids.len() {
            return Some((
                ResponseError::InvalidReplicaAssignment,
                format!("partition {} lists a broker twice", a.partition_index),
            ));
        }
    }
    None
}

pub async fn create_topics(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.as_str().to_string()))
        .map(|t| t.name.0.as_str().to_string())
        .collect();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        let fail = |r: &mut CreatableTopicResult, e: ResponseError, m: String| {
            r.error_code = code(e);
            r.error_message = Some(str_bytes(m));
        };
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            let key = c.name.as_str().to_string();
            match &c.value {
                Some(v) => {
                    if let Err(m) = topic_config::validate(&key, v.as_str()) {
                        config_error.get_or_insert(m);
                    }
                    configs.insert(key, v.as_str().to_string());
                }
                None => {
                    configs.remove(&key);
                }
            }
        }
        let assignment_error = manual_assignment_error(broker, &t);
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            broker.config.num_partitions.max(1)
        } else {
            t.num_partitions
        };
        if duplicates.contains(&name) {
            fail(
                &mut r,
                ResponseError::InvalidRequest,
                format!("topic '{name}' appears more than once in the request"),
            );
        } else if let Err(m) = validate_topic_name(&name) {
            fail(&mut r, ResponseError::InvalidTopicException, m);
        } else if broker.store.topic(&name).is_some() {
            fail(
                &mut r,
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            );
        } else if let Some((e, m)) = assignment_error {
            fail(&mut r, e, m);
        } else if partitions <= 0 || partitions > 100_000 {
            fail(
                &mut r,
                ResponseError::InvalidPartitions,
                format!("number of partitions must be between 1 and 100000, got {partitions}"),
            );
        } else if !(t.replication_factor == -1 || t.replication_factor >= 1) {
            fail(
                &mut r,
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor must be positive, got {}",
                    t.replication_factor
                ),
            );
        } else if let Some(m) = config_error.or_else(|| topic_config::validate_all(&configs).err())
        {
            fail(&mut r, ResponseError::InvalidConfig, m);
        } else if !req.validate_only {
            match broker
                .store
                .create_topic(&name, partitions, configs.clone())
                .await
            {
                Ok(topic) => {
                    r.topic_id = topic.record.id;
                    tracing::info!(topic = %name, partitions, "created topic");
                }
                Err(StorageError::TopicExists(_)) => fail(
                    &mut r,
                    ResponseError::TopicAlreadyExists,
                    format!("topic '{name}' already exists"),
                ),
                Err(e) => fail(&mut r, ResponseError::KafkaStorageError, e.to_string()),
            }
        }
        if version >= 5 && r.error_code == 0 {
            r.num_partitions = partitions;
            // Storage is shared and durable: every topic behaves as fully replicated.
            r.replication_factor = match t.assignments.first() {
                Some(a) => a.broker_ids.len() as i16,
                None if t.replication_factor == -1 => 1,
                None => t.replication_factor,
            };
            r.configs = Some(
                effective_configs(&configs)
                    .into_iter()
                    .map(|(k, v, source)| {
                        let mut c = CreatableTopicConfigs::default();
                        c.name = str_bytes(k);
                        c.value = Some(str_bytes(v));
                        c.config_source = source;
                        c
                    })
                    .collect(),
            );
        }
        resp.topics.push(r);
    }
    resp
}

pub async fn delete_topics(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        let resolved = match &name {
            Some(n) => Some(n.0.as_str().to_string()),
            None => broker.store.topic_by_id(&id).map(|t| t.record.name.clone()),
        };
        r.name = name.or_else(|| resolved.clone().map(|n| TopicName(str_bytes(n))));
        match resolved {
            None => r.error_code = code(ResponseError::UnknownTopicId),
            Some(n) => match broker.store.delete_topic(&n).await {
                Ok(()) => tracing::info!(topic = %n, "deleted topic"),
                Err(StorageError::NoSuchTopic(_)) => {
                    r.error_code = code(ResponseError::UnknownTopicOrPartition)
                }
                Err(e) => {
                    r.error_code = code(ResponseError::KafkaStorageError);
                    r.error_message = Some(str_bytes(e.to_string()));
                }
            },
        }
        if version < 5 {
            r.error_message = None;
        }
        resp.responses.push(r);
    }
    resp
}

pub async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let mut fail = |e: ResponseError, m: String| {
            r.error_code = code(e);
            r.error_message = Some(str_bytes(m));
        };
        match broker.store.topic(&name) {
            None => fail(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ),
            Some(topic) => {
                let current = topic.partitions.len() as i32;
                if t.count <= current {
                    fail(
                        ResponseError::InvalidPartitions,
                        format!("topic '{name}' has {current} partitions; the new count must be larger, got {}", t.count),
                    );
                } else if t.count > 100_000 {
                    fail(
                        ResponseError::InvalidPartitions,
                        "at most 100000 partitions".into(),
                    );
                } else if !req.validate_only {
                    if let Err(e) = broker.store.add_partitions(&name, t.count).await {
                        fail(ResponseError::KafkaStorageError, e.to_string());
                    } else {
                        tracing::info!(topic = %name, from = current, to = t.count, "added partitions");
                    }
                }
            }
        }
        resp.results.push(r);
    }
    resp
}
