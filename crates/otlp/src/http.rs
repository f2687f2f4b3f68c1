//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs` and `/v1/metrics` with
//! `application/x-protobuf` or `application/json` bodies, identity or gzip.
//! Answers as the OTLP specification asks: 200 with the export response
//! (its `partial_success` carrying warnings) in the request's encoding;
//! errors as a `google.rpc.Status` in the request's encoding (JSON when the
//! content type itself is refused): 400 for a body that does not decode,
//! 401/403 without the rights, 404 for a topic that cannot be created, 413
//! for a body past the limit, 415 for another content type or encoding,
//! 429 when the receiver's in-flight bytes are full and 503 when storage
//! cannot take the data (both with `Retry-After`).

use crate::ingest::Ingest;
use crate::{Signal, Sink, SinkError};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the body of OTLP error answers (its `details` are
/// not sent). Declared here: opentelemetry-proto does not carry it.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Body {
    Proto,
    Json,
}

impl Body {
    fn content_type(self) -> &'static str {
        match self {
            Body::Proto => PROTOBUF,
            Body::Json => JSON,
        }
    }
}

fn status_body(status: StatusCode, grpc_code: i32, message: String, body: Body) -> Response {
    let s = RpcStatus {
        code: grpc_code,
        message,
    };
    let bytes = match body {
        Body::Proto => s.encode_to_vec(),
        Body::Json => serde_json::to_vec(&s).unwrap_or_default(),
    };
    let mut r = (status, [(header::CONTENT_TYPE, body.content_type())], bytes).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// gRPC status codes used in the bodies (google.rpc.Code).
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn sink_error(e: SinkError, body: Body) -> Response {
    let (status, c) = match &e {
        SinkError::Unauthenticated => (StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED),
        SinkError::Forbidden(_) => (StatusCode::FORBIDDEN, code::PERMISSION_DENIED),
        SinkError::NoSuchTopic(_) => (StatusCode::NOT_FOUND, code::NOT_FOUND),
        SinkError::Invalid(_) => (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
        SinkError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE),
    };
    let mut r = status_body(status, c, e.to_string(), body);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sluice\""),
        );
    }
    r
}

/// The receiver's routes.
pub fn router<S: Sink>(ingest: Arc<Ingest<S>>) -> Router {
    // The limit applies to the body as sent; a gzip body is also bounded
    // after decompression, below.
    let limit = ingest.config.max_body_bytes;
    Router::new()
        .route(
            "/v1/traces",
            post(|st, req| export(st, req, Signal::Traces)),
        )
        .route("/v1/logs", post(|st, req| export(st, req, Signal::Logs)))
        .route(
            "/v1/metrics",
            post(|st, req| export(st, req, Signal::Metrics)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingest)
}

/// A request refused before it is decoded (kept small: the response is
/// built from it at the end).
struct Refusal {
    status: StatusCode,
    message: String,
    body: Body,
}

impl Refusal {
    fn respond(self) -> Response {
        status_body(self.status, code::INVALID_ARGUMENT, self.message, self.body)
    }
}

/// The body's encoding from its content type, or the refusal.
fn body_kind(headers: &HeaderMap) -> Result<Body, Refusal> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        PROTOBUF => Ok(Body::Proto),
        JSON => Ok(Body::Json),
        _ => Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("content type {ct:?} is not {PROTOBUF} or {JSON}"),
            body: Body::Json,
        }),
    }
}

/// The body, decompressed (bounded by `limit`).
fn inflate(headers: &HeaderMap, raw: Bytes, limit: usize, body: Body) -> Result<Bytes, Refusal> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(&raw[..]).take(limit as u64 + 1);
            if let Err(e) = d.read_to_end(&mut out) {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("the gzip body does not decompress: {e}"),
                    body,
                });
            }
            if out.len() > limit {
                return Err(Refusal {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!("the body decompresses past the limit of {limit} bytes"),
                    body,
                });
            }
            Ok(out.into())
        }
        other => Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("content encoding {other:?} is not gzip or identity"),
            body,
        }),
    }
}

fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    bytes: &[u8],
    body: Body,
) -> Result<M, String> {
    match body {
        Body::Proto => {
            M::decode(bytes).map_err(|e| format!("not an OTLP protobuf export request: {e}"))
        }
        Body::Json => serde_json::from_slice(bytes)
            .map_err(|e| format!("not an OTLP/JSON export request: {e}")),
    }
}

fn ok<M: Message + serde::Serialize>(m: &M, body: Body) -> Response {
    let bytes = match body {
        Body::Proto => m.encode_to_vec(),
        Body::Json => serde_json::to_vec(m).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, body.content_type())],
        bytes,
    )
        .into_response()
}

async fn export<S: Sink>(
    State(ingest): State<Arc<Ingest<S>>>,
    req: Request,
    signal: Signal,
) -> Response {
    let body = match body_kind(req.headers()) {
        Ok(b) => b,
        Err(r) => return r.respond(),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let who = match ingest.sink.authenticate(authorization, peer).await {
        Ok(w) => w,
        Err(e) => return sink_error(e, body),
    };
    let (parts, raw) = req.into_parts();
    let limit = ingest.config.max_body_bytes;
    let raw = match axum::body::to_bytes(raw, limit).await {
        Ok(b) => b,
        Err(e) => {
            return status_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::INVALID_ARGUMENT,
                format!("the body could not be read within the limit of {limit} bytes: {e}"),
                body,
            )
        }
    };
    let Some(_room) = ingest.admit(raw.len()) else {
        return status_body(
            StatusCode::TOO_MANY_REQUESTS,
            code::RESOURCE_EXHAUSTED,
            "the receiver is busy; retry later".into(),
            body,
        );
    };
    let bytes = match inflate(&parts.headers, raw, limit, body) {
        Ok(b) => b,
        Err(r) => return r.respond(),
    };
    let bad = |m: String| status_body(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, m, body);
    let result = match signal {
        Signal::Traces => {
            let r: ExportTraceServiceRequest = match decode(&bytes, body) {
                Ok(r) => r,
                Err(m) => return bad(m),
            };
            ingest.traces(&who, &r).await.map(|warning| {
                ok(
                    &ExportTraceServiceResponse {
                        partial_success: warning.map(|w| ExportTracePartialSuccess {
                            rejected_spans: 0,
                            error_message: w,
                        }),
                    },
                    body,
                )
            })
        }
        Signal::Logs => {
            let r: ExportLogsServiceRequest = match decode(&bytes, body) {
                Ok(r) => r,
                Err(m) => return bad(m),
            };
            ingest.logs(&who, &r).await.map(|warning| {
                ok(
                    &ExportLogsServiceResponse {
                        partial_success: warning.map(|w| ExportLogsPartialSuccess {
                            rejected_log_records: 0,
                            error_message: w,
                        }),
                    },
                    body,
                )
            })
        }
        Signal::Metrics => {
            let r: ExportMetricsServiceRequest = match decode(&bytes, body) {
                Ok(r) => r,
                Err(m) => return bad(m),
            };
            ingest.metrics(&who, &r).await.map(|warning| {
                ok(
                    &ExportMetricsServiceResponse {
                        partial_success: warning.map(|w| ExportMetricsPartialSuccess {
                            rejected_data_points: 0,
                            error_message: w,
                        }),
                    },
                    body,
                )
            })
        }
    };
    result.unwrap_or_else(|e| sink_error(e, body))
}
