//! Request handlers, one module per group of Kafka APIs, plus the helpers
//! they share (topic name rules, auto-creation, error codes).

pub mod acls;
pub mod client_quotas;
pub mod configs;
pub mod consumer_groups;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer_id;
pub mod scram_users;
pub mod topics;
pub mod txn;
pub mod validation;

use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use sluice_storage::{StorageError, Topic};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name '{name}' contains '{c}': only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// Runs a blocking catalog call off the async workers; its error (or the
/// task's) as text for the response's error message.
pub async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> sluice_catalog::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The error code of a response error.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Finds a topic, creating it when auto-creation is on and allowed by the
/// request. Errors are Kafka error codes.
pub async fn find_or_create_topic(
    broker: &Broker,
    name: &str,
    allow_auto: bool,
) -> Result<Arc<Topic>, ResponseError> {
    if let Some(t) = broker.store.topic(name) {
        return Ok(t);
    }
    if validate_topic_name(name).is_err() {
        return Err(ResponseError::InvalidTopicException);
    }
    if !(allow_auto && broker.config.auto_create_topics_enable) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    match broker
        .store
        .create_topic(name, broker.config.num_partitions.max(1), BTreeMap::new())
        .await
    {
        Ok(t) => {
            tracing::info!(
                topic = name,
                partitions = t.partitions.len(),
                "auto-created topic"
            );
            Ok(t)
        }
        Err(StorageError::TopicExists(_)) => broker
            .store
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition),
        Err(e) => {
            tracing::error!(topic = name, error = %e, "auto-creating a topic failed");
            Err(ResponseError::KafkaStorageError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("llm.inferences_v1-a").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
