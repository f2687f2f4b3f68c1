//! OTLP ingest: the broker as an OpenTelemetry receiver.
//!
//! OTLP/HTTP (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`; protobuf or
//! JSON bodies, gzip) and OTLP/gRPC export requests are decoded with the
//! `opentelemetry-proto` definitions and written where the OpenTelemetry
//! Collector's Kafka exporter writes them (`otlp_spans`, `otlp_logs`,
//! `otlp_metrics`; `otlp_proto` or `otlp_json`; spans split per trace and
//! keyed by the trace id, its `partition_traces_by_id`), so whatever reads
//! those topics today reads these. Spans that follow the GenAI semantic
//! conventions are also turned into the AI contract events
//! ([`genai`]). Records reach the log through a [`Sink`], which the broker
//! implements with its own write path (no loopback Kafka client).
//!
//! - [`encode`]: export requests into Kafka records.
//! - [`genai`]: GenAI spans into inference and tool-call events.
//! - [`http`] and [`grpc`]: the two transports, with OTLP's error and
//!   partial-success answers and a bound on the bytes in flight.

pub mod encode;
pub mod genai;
pub mod grpc;
pub mod http;
mod ingest;

pub use ingest::{Ingest, Signal};

use bytes::Bytes;
use std::future::Future;

/// How the OTLP topics' values are encoded (the Kafka exporter's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The export request as protobuf (`otlp_proto`, the default).
    Proto,
    /// The export request as OTLP/JSON (`otlp_json`).
    Json,
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "otlp_proto" => Some(Self::Proto),
            "otlp_json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Where and how OTLP data is written.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub spans_topic: String,
    pub logs_topic: String,
    pub metrics_topic: String,
    pub encoding: Encoding,
    /// GenAI events' topics; None turns the mapping off.
    pub genai: Option<genai::GenAiTopics>,
    /// Largest request body (after decompression).
    pub max_body_bytes: usize,
    /// Request bytes being decoded and written at once; past it, requests
    /// are answered 429 / RESOURCE_EXHAUSTED with a retry hint.
    pub max_inflight_bytes: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            spans_topic: "otlp_spans".into(),
            logs_topic: "otlp_logs".into(),
            metrics_topic: "otlp_metrics".into(),
            encoding: Encoding::Proto,
            genai: Some(genai::GenAiTopics::default()),
            max_body_bytes: 16 << 20,
            max_inflight_bytes: 64 << 20,
        }
    }
}

/// One record for a topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch (None: now).
    pub timestamp: Option<i64>,
}

/// Why records could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("not allowed to write to topic '{0}'")]
    Forbidden(String),
    #[error("topic '{0}' does not exist and cannot be created")]
    NoSuchTopic(String),
    /// The topic's contract refused a record.
    #[error("{0}")]
    Invalid(String),
    /// Storage could not take them now; the sender should retry.
    #[error("{0}")]
    Unavailable(String),
}

/// Writes records to topics on behalf of a sender. Implemented by the
/// broker over its own write path.
pub trait Sink: Send + Sync + 'static {
    /// Who a request comes from, as the transport gave it.
    type Who: Send + Sync + Clone + 'static;

    /// Authenticates a request from its `authorization` header (HTTP) or
    /// metadata (gRPC) and the peer's address.
    fn authenticate(
        &self,
        authorization: Option<String>,
        peer: Option<std::net::SocketAddr>,
    ) -> impl Future<Output = Result<Self::Who, SinkError>> + Send;

    /// Writes `records` to `topic` (creating it as a Kafka producer's
    /// first write would); all or nothing is reported per call.
    fn write(
        &self,
        who: &Self::Who,
        topic: &str,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes GenAI contract events (JSON values) to `topic`, which is
    /// created bound to the contract `subject` if missing.
    fn write_events(
        &self,
        who: &Self::Who,
        topic: &str,
        subject: &str,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
