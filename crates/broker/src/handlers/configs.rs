//! DescribeConfigs and IncrementalAlterConfigs for topics (and a read-only
//! view of the broker's own settings).

use super::topics::{effective_configs, SOURCE_DEFAULT};
use super::{code, str_bytes};
use crate::topic_config;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_STATIC_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn entry(
    name: String,
    value: String,
    source: i8,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = Some(str_bytes(value));
    c.config_source = source;
    c.read_only = read_only;
    c
}

fn broker_configs(broker: &Broker) -> Vec<(String, String)> {
    let c = &broker.config;
    vec![
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics_enable.to_string(),
        ),
        ("num.partitions".into(), c.num_partitions.to_string()),
        ("message.max.bytes".into(), c.message_max_bytes.to_string()),
        (
            "socket.request.max.bytes".into(),
            c.max_request_bytes.to_string(),
        ),
        ("broker.id".into(), c.node_id.to_string()),
        (
            "advertised.listeners".into(),
            format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port),
        ),
    ]
}

pub fn describe(
    broker: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let wanted = |k: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
        };
        match res.resource_type {
            RESOURCE_TOPIC => match broker.store.topic(res.resource_name.as_str()) {
                Some(t) => {
                    r.configs = effective_configs(&t.record.configs)
                        .into_iter()
                        .filter(|(k, _, _)| wanted(k))
                        .map(|(k, v, s)| entry(k, v, s, false))
                        .collect();
                }
                None => {
                    r.error_code = code(ResponseError::UnknownTopicOrPartition);
                    r.error_message = Some(str_bytes(format!(
                        "topic '{}' does not exist",
                        res.resource_name.as_str()
                    )));
                }
            },
            RESOURCE_BROKER => {
                let name = res.resource_name.as_str();
                if name.is_empty() || name == broker.config.node_id.to_string() {
                    r.configs = broker_configs(broker)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| entry(k, v, SOURCE_STATIC_BROKER, true))
                        .collect();
                } else {
                    r.error_code = code(ResponseError::InvalidRequest);
                    r.error_message = Some(str_bytes(format!("unknown broker id '{name}'")));
                }
            }
            other => {
                r.error_code = code(ResponseError::InvalidRequest);
                r.error_message = Some(str_bytes(format!("unsupported resource type {other}")));
            }
        }
        resp.results.push(r);
    }
    let _ = SOURCE_DEFAULT;
    resp
}

/// Validates a topic's new explicit configs and (unless only validating)
/// stores them.
async fn store_topic_configs(
    broker: &Broker,
    name: &str,
    configs: std::collections::BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    topic_config::validate_all(&configs).map_err(|m| (ResponseError::InvalidConfig, m))?;
    if !validate_only {
        broker
            .store
            .set_topic_configs(name, configs)
            .await
            .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?;
        tracing::info!(topic = name, "altered topic configs");
    }
    Ok(())
}

/// The legacy AlterConfigs (API key 33, which librdkafka's `AlterConfigs`
/// still sends): a topic's explicit configs become exactly the ones given
/// (those left out go back to their defaults).
pub async fn alter_legacy(
    broker: &Broker,
    req: kafka_protocol::messages::AlterConfigsRequest,
    refused: &(dyn Fn(&str) -> Option<ResponseError> + Sync),
) -> kafka_protocol::messages::AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as Answer;
    let mut resp = kafka_protocol::messages::AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = Answer::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        let result: Result<(), (ResponseError, String)> = async {
            if res.resource_type != RESOURCE_TOPIC {
                return Err((
                    ResponseError::InvalidRequest,
                    "only topic configs can be altered; broker settings come from its config file"
                        .into(),
                ));
            }
            if let Some(e) = refused(name) {
                return Err((
                    e,
                    format!("not authorized to alter the configs of '{name}'"),
                ));
            }
            if broker.store.topic(name).is_none() {
                return Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                ));
            }
            let mut configs = std::collections::BTreeMap::new();
            for c in &res.configs {
                let key = c.name.as_str().to_string();
                if let Some(v) = &c.value {
                    topic_config::validate(&key, v.as_str())
                        .map_err(|m| (ResponseError::InvalidConfig, m))?;
                    configs.insert(key, v.as_str().to_string());
                }
            }
            store_topic_configs(broker, name, configs, req.validate_only).await
        }
        .await;
        if let Err((e, m)) = result {
            r.error_code = code(e);
            r.error_message = Some(str_bytes(m));
        }
        resp.responses.push(r);
    }
    resp
}

pub async fn incremental_alter(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let result: Result<(), (ResponseError, String)> = async {
            if res.resource_type != RESOURCE_TOPIC {
                return Err((
                    ResponseError::InvalidRequest,
                    "only topic configs can be altered; broker settings come from its config file"
                        .into(),
                ));
            }
            let name = res.resource_name.as_str();
            let topic = broker.store.topic(name).ok_or((
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ))?;
            let mut configs = topic.record.configs.clone();
            for c in &res.configs {
                let key = c.name.as_str().to_string();
                let value = c.value.as_ref().map(|v| v.as_str().to_string());
                match (c.config_operation, value) {
                    (OP_SET, Some(v)) => {
                        configs.insert(key, v);
                    }
                    (OP_DELETE, _) => {
                        configs.remove(&key);
                    }
                    (OP_APPEND | OP_SUBTRACT, Some(v)) => {
                        let current = configs
                            .get(&key)
                            .cloned()
                            .or_else(|| topic_config::default_of(&key).map(str::to_string))
                            .unwrap_or_default();
                        let mut items: Vec<String> = current
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect();
                        for item in v.split(',').filter(|s| !s.is_empty()) {
                            if c.config_operation == OP_APPEND {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            } else {
                                items.retain(|i| i != item);
                            }
                        }
                        configs.insert(key, items.join(","));
                    }
                    (op, _) => {
                        return Err((
                            ResponseError::InvalidConfig,
                            format!("invalid operation {op} for config {key}"),
                        ));
                    }
                }
            }
            store_topic_configs(broker, name, configs, req.validate_only).await
        }
        .await;
        if let Err((e, m)) = result {
            r.error_code = code(e);
            r.error_message = Some(str_bytes(m));
        }
        resp.responses.push(r);
    }
    resp
}
