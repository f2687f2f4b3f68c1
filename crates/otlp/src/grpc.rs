//! OTLP/gRPC: the collector's TraceService, LogsService and MetricsService
//! (`Export`), gzip accepted. Errors are gRPC statuses as OTLP asks:
//! INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND,
//! RESOURCE_EXHAUSTED when the receiver is full and UNAVAILABLE when
//! storage cannot take the data (both retryable for OTLP exporters).

use crate::ingest::Ingest;
use crate::{Sink, SinkError};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::future::Future;
use std::sync::Arc;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

fn status(e: SinkError) -> Status {
    let m = e.to_string();
    match e {
        SinkError::Unauthenticated => Status::unauthenticated(m),
        SinkError::Forbidden(_) => Status::permission_denied(m),
        SinkError::NoSuchTopic(_) => Status::not_found(m),
        SinkError::Invalid(_) => Status::invalid_argument(m),
        SinkError::Unavailable(_) => Status::unavailable(m),
    }
}

/// The three services over one [`Ingest`].
pub struct Services<S: Sink>(Arc<Ingest<S>>);

impl<S: Sink> Clone for Services<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: Sink> Services<S> {
    /// Authenticates and admits a request; its sender.
    async fn admit<M: Message>(
        &self,
        req: &Request<M>,
    ) -> Result<(S::Who, tokio::sync::OwnedSemaphorePermit), Status> {
        let authorization = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let who = self
            .0
            .sink
            .authenticate(authorization, req.remote_addr())
            .await
            .map_err(status)?;
        let room = self
            .0
            .admit(req.get_ref().encoded_len())
            .ok_or_else(|| Status::resource_exhausted("the receiver is busy; retry later"))?;
        Ok((who, room))
    }
}

#[tonic::async_trait]
impl<S: Sink> TraceService for Services<S> {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (who, _room) = self.admit(&req).await?;
        let warning = self.0.traces(&who, req.get_ref()).await.map_err(status)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: warning.map(|w| ExportTracePartialSuccess {
                rejected_spans: 0,
                error_message: w,
            }),
        }))
    }
}

#[tonic::async_trait]
impl<S: Sink> LogsService for Services<S> {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (who, _room) = self.admit(&req).await?;
        let warning = self.0.logs(&who, req.get_ref()).await.map_err(status)?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: warning.map(|w| ExportLogsPartialSuccess {
                rejected_log_records: 0,
                error_message: w,
            }),
        }))
    }
}

#[tonic::async_trait]
impl<S: Sink> MetricsService for Services<S> {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (who, _room) = self.admit(&req).await?;
        let warning = self.0.metrics(&who, req.get_ref()).await.map_err(status)?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: warning.map(|w| ExportMetricsPartialSuccess {
                rejected_data_points: 0,
                error_message: w,
            }),
        }))
    }
}

/// Serves the three services on `listener` until `shutdown` completes.
pub async fn serve<S: Sink>(
    ingest: Arc<Ingest<S>>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let limit = ingest.config.max_body_bytes;
    let s = Services(ingest);
    tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(s.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            LogsServiceServer::new(s.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::new(s)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
