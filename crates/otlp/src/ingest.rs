//! What both transports do with a decoded export request: write it to its
//! topic, derive and write the GenAI events of spans, and bound the bytes
//! being handled at once.

use crate::{encode, genai, OtlpConfig, Record, Sink, SinkError};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

/// Shared by the HTTP and gRPC receivers.
pub struct Ingest<S: Sink> {
    pub(crate) sink: Arc<S>,
    pub(crate) config: OtlpConfig,
    inflight: Arc<Semaphore>,
    /// Permits stand for KiB, so the semaphore's u32 counts reach 4 TiB.
    inflight_kib: u32,
}

impl<S: Sink> Ingest<S> {
    pub fn new(sink: Arc<S>, config: OtlpConfig) -> Arc<Self> {
        let kib = (config.max_inflight_bytes / 1024).clamp(1, u32::MAX as usize) as u32;
        Arc::new(Self {
            sink,
            config,
            inflight: Arc::new(Semaphore::new(kib as usize)),
            inflight_kib: kib,
        })
    }

    /// Room for a request of `bytes`, or None when the receiver is full
    /// (the sender is told to retry later).
    pub(crate) fn admit(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = (bytes / 1024).clamp(1, self.inflight_kib as usize) as u32;
        self.inflight.clone().try_acquire_many_owned(kib).ok()
    }

    pub(crate) fn topic(&self, signal: Signal) -> &str {
        match signal {
            Signal::Traces => &self.config.spans_topic,
            Signal::Logs => &self.config.logs_topic,
            Signal::Metrics => &self.config.metrics_topic,
        }
    }

    async fn write(
        &self,
        who: &S::Who,
        signal: Signal,
        records: Vec<Record>,
    ) -> Result<(), SinkError> {
        // An empty export (SDKs send them) writes nothing and creates no
        // topic.
        if records.is_empty() {
            return Ok(());
        }
        self.sink.write(who, self.topic(signal), records).await
    }

    /// Spans: written, then their GenAI events. A warning for OTLP's
    /// partial-success message when some GenAI events were refused (the
    /// spans themselves were all stored).
    pub async fn traces(
        &self,
        who: &S::Who,
        req: &ExportTraceServiceRequest,
    ) -> Result<Option<String>, SinkError> {
        self.write(
            who,
            Signal::Traces,
            encode::traces(req, self.config.encoding),
        )
        .await?;
        let Some(cfg) = &self.config.genai else {
            return Ok(None);
        };
        let ev = genai::events(req, cfg);
        let mut warnings = Vec::new();
        for (topic, subject, records) in [
            (
                &cfg.inference_topic,
                genai::INFERENCE_SUBJECT,
                ev.inferences,
            ),
            (
                &cfg.tool_call_topic,
                genai::TOOL_CALL_SUBJECT,
                ev.tool_calls,
            ),
        ] {
            if records.is_empty() {
                continue;
            }
            let n = records.len();
            if let Err(e) = self.sink.write_events(who, topic, subject, records).await {
                tracing::info!(topic, events = n, error = %e, "GenAI events not written");
                warnings.push(format!("{n} GenAI event(s) for {topic} not written: {e}"));
            }
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
    }

    pub async fn logs(
        &self,
        who: &S::Who,
        req: &ExportLogsServiceRequest,
    ) -> Result<Option<String>, SinkError> {
        self.write(who, Signal::Logs, encode::logs(req, self.config.encoding))
            .await
            .map(|_| None)
    }

    pub async fn metrics(
        &self,
        who: &S::Who,
        req: &ExportMetricsServiceRequest,
    ) -> Result<Option<String>, SinkError> {
        self.write(
            who,
            Signal::Metrics,
            encode::metrics(req, self.config.encoding),
        )
        .await
        .map(|_| None)
    }
}
