//! The OTLP receivers' [`Sink`]: records go through the broker's own write
//! path (`sluice_ops::produce`), topics are created as a Kafka producer's
//! first write would create them (auto-create on), GenAI event topics are
//! created bound to their JSON contract (installing the AI contracts
//! first), and with `--http-auth basic` a sender needs a Sluice user's
//! HTTP Basic credentials and Write on each topic.

use crate::http_auth::HttpAuth;
use bytes::Bytes;
use sluice_broker::security::acl::{Operation, ResourceType};
use sluice_broker::security::authz::Caller;
use sluice_broker::Broker;
use sluice_ops::produce::{produce, OutRecord, ProduceError};
use sluice_otlp::{Record, Sink, SinkError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct BrokerSink {
    broker: Arc<Broker>,
    /// Set when the HTTP side authenticates (`--http-auth basic`).
    auth: Option<Arc<HttpAuth>>,
}

impl BrokerSink {
    pub fn new(broker: Arc<Broker>, auth: Option<Arc<HttpAuth>>) -> Arc<Self> {
        Arc::new(Self { broker, auth })
    }

    fn may_write(&self, who: &Caller, topic: &str) -> Result<(), SinkError> {
        if self
            .broker
            .authorizer
            .allows(who, Operation::Write, ResourceType::Topic, topic)
        {
            Ok(())
        } else {
            Err(SinkError::Forbidden(topic.to_string()))
        }
    }

    async fn append(
        &self,
        who: &Caller,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<(), SinkError> {
        let out = records
            .into_iter()
            .map(|r| OutRecord {
                partition: None,
                key: r.key,
                value: Some(r.value),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (Bytes::from(k.into_bytes()), Some(v)))
                    .collect(),
                timestamp: r.timestamp,
            })
            .collect();
        let results = produce(&self.broker, who, topic, out)
            .await
            .map_err(|e| match e {
                ProduceError::NoSuchTopic(t) => SinkError::NoSuchTopic(t),
                other => SinkError::Unavailable(other.to_string()),
            })?;
        let mut invalid = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(_) => {}
                Err(ProduceError::Invalid(m)) => {
                    // Records of contract topics go one per batch: the
                    // message's own "record 0: " says nothing.
                    let m = m.strip_prefix("record 0: ").unwrap_or(&m);
                    invalid.push(format!("record {i}: {m}"))
                }
                Err(e) => return Err(SinkError::Unavailable(e.to_string())),
            }
        }
        if invalid.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Invalid(invalid.join("; ")))
        }
    }
}

impl Sink for BrokerSink {
    type Who = Caller;

    async fn authenticate(
        &self,
        authorization: Option<String>,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, SinkError> {
        let host = peer.map_or_else(|| "*".to_string(), |p| p.ip().to_string());
        match &self.auth {
            None => Ok(Caller::anonymous(host)),
            Some(auth) => match authorization {
                Some(a) => auth
                    .caller_of(&a, host)
                    .await
                    .ok_or(SinkError::Unauthenticated),
                None => Err(SinkError::Unauthenticated),
            },
        }
    }

    async fn write(
        &self,
        who: &Caller,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<(), SinkError> {
        self.may_write(who, topic)?;
        sluice_broker::handlers::find_or_create_topic(&self.broker, topic, true)
            .await
            .map_err(|_| SinkError::NoSuchTopic(topic.to_string()))?;
        self.append(who, topic, records).await
    }

    async fn write_events(
        &self,
        who: &Caller,
        topic: &str,
        subject: &str,
        records: Vec<Record>,
    ) -> Result<(), SinkError> {
        self.may_write(who, topic)?;
        if self.broker.store.topic(topic).is_none() {
            if !self.broker.config.auto_create_topics_enable {
                return Err(SinkError::NoSuchTopic(topic.to_string()));
            }
            let registry = self.broker.registry.clone();
            tokio::task::spawn_blocking(move || sluice_registry::install_ai_contracts(&registry))
                .await
                .map_err(|e| SinkError::Unavailable(e.to_string()))?
                .map_err(|e| SinkError::Unavailable(format!("installing the AI contracts: {e}")))?;
            let mut configs = BTreeMap::new();
            configs.insert(
                sluice_registry::keys::VALUE_FORMAT.to_string(),
                "json".to_string(),
            );
            configs.insert(
                sluice_registry::keys::VALUE_SUBJECT.to_string(),
                subject.to_string(),
            );
            match self
                .broker
                .store
                .create_topic(topic, self.broker.config.num_partitions.max(1), configs)
                .await
            {
                Ok(_) => tracing::info!(
                    topic,
                    subject,
                    "created a GenAI event topic bound to its contract"
                ),
                Err(sluice_storage::StorageError::TopicExists(_)) => {}
                Err(e) => return Err(SinkError::Unavailable(e.to_string())),
            }
        }
        self.append(who, topic, records).await
    }
}
