//! Confluent REST Proxy compatible produce, for clients that do not speak
//! Kafka (serverless functions, browsers, scripts):
//!
//! - v3 `POST /v3/clusters/{cluster_id}/topics/{topic}/records`: one JSON
//!   record (`partition_id`, `headers` [{name, value: base64}], `key` and
//!   `value` as {type: JSON|BINARY|STRING, data}, `timestamp` RFC 3339), or
//!   several concatenated in one (streamed) request body, as Confluent's v3
//!   accepts; one result object per record (`error_code` 200 with
//!   `partition_id`, `offset`, `timestamp`; or the record's error), in
//!   order. Unknown cluster or topic: 404.
//! - v2 `POST /topics/{topic}` with `application/vnd.kafka.json.v2+json`
//!   (keys and values are JSON) or `application/vnd.kafka.binary.v2+json`
//!   (base64): `{"records": [{key, value, partition}]}` answered with
//!   `{"offsets": [{partition, offset, error_code, error}]}`.
//!
//! Records meet the topic's contracts like any producer's (see
//! [`sluice_ops::produce`]); with the HTTP side's authentication on, the
//! caller needs Write on the topic.

use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_broker::security::authz::Caller;
use sluice_broker::Broker;
use sluice_ops::produce::{produce, Landed, OutRecord, ProduceError};
use std::sync::Arc;

/// Largest request body read.
pub const MAX_BODY: usize = 64 << 20;

type Who = Option<axum::Extension<Caller>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error_code": status.as_u16(), "message": message.into()})),
    )
        .into_response()
}

fn caller_of(who: Who) -> Caller {
    who.map(|axum::Extension(c)| c)
        .unwrap_or_else(|| Caller::anonymous("*".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V3Data {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    data: Value,
    // Schema-registry-backed serialization (AVRO, PROTOBUF, JSONSCHEMA
    // with a schema id) is refused below.
    #[serde(default)]
    schema_id: Option<Value>,
    #[serde(default)]
    subject: Option<Value>,
    #[serde(default)]
    schema_version: Option<Value>,
    #[serde(default)]
    subject_name_strategy: Option<Value>,
    #[serde(default)]
    schema: Option<Value>,
}

#[derive(Deserialize)]
struct V3Header {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V3Record {
    #[serde(default)]
    partition_id: Option<i32>,
    #[serde(default)]
    headers: Vec<V3Header>,
    #[serde(default)]
    key: Option<V3Data>,
    #[serde(default)]
    value: Option<V3Data>,
    #[serde(default)]
    timestamp: Option<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("not base64: {e}"))
}

/// A v3 key or value's bytes.
fn v3_bytes(d: Option<V3Data>, what: &str) -> Result<Option<bytes::Bytes>, String> {
    let Some(d) = d else { return Ok(None) };
    if d.schema_id.is_some()
        || d.subject.is_some()
        || d.schema_version.is_some()
        || d.subject_name_strategy.is_some()
        || d.schema.is_some()
    {
        return Err(format!(
            "{what}: schema-based serialization is not supported; send JSON, BINARY or STRING (topics check plain JSON with sluice.value.format=json)"
        ));
    }
    let kind = d.kind.as_deref().unwrap_or("JSON").to_ascii_uppercase();
    match (kind.as_str(), d.data) {
        (_, Value::Null) => Ok(None),
        ("JSON", v) => Ok(Some(
            serde_json::to_vec(&v).map_err(|e| e.to_string())?.into(),
        )),
        ("BINARY", Value::String(s)) => {
            Ok(Some(b64(&s).map_err(|e| format!("{what}: {e}"))?.into()))
        }
        ("STRING", Value::String(s)) => Ok(Some(s.into_bytes().into())),
        ("BINARY" | "STRING", _) => Err(format!("{what}: {kind} data must be a string")),
        (other, _) => Err(format!(
            "{what}: type {other} is not one of JSON, BINARY, STRING"
        )),
    }
}

fn v3_record(r: V3Record) -> Result<OutRecord, String> {
    let timestamp = match r.timestamp {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| format!("timestamp {t:?} is not RFC 3339: {e}"))?
                .timestamp_millis(),
        ),
    };
    let mut headers = Vec::with_capacity(r.headers.len());
    for h in r.headers {
        let v = match h.value {
            None => None,
            Some(v) => Some(bytes::Bytes::from(
                b64(&v).map_err(|e| format!("header {}: {e}", h.name))?,
            )),
        };
        headers.push((bytes::Bytes::from(h.name.into_bytes()), v));
    }
    Ok(OutRecord {
        partition: r.partition_id,
        key: v3_bytes(r.key, "key")?,
        value: v3_bytes(r.value, "value")?,
        headers,
        timestamp,
    })
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn status_of(e: &ProduceError) -> StatusCode {
    match e {
        ProduceError::NoSuchTopic(_) | ProduceError::NoSuchPartition { .. } => {
            StatusCode::NOT_FOUND
        }
        ProduceError::Invalid(_) => StatusCode::BAD_REQUEST,
        ProduceError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `POST /v3/clusters/{cluster_id}/topics/{topic}/records`.
pub async fn produce_v3(
    State(b): State<Arc<Broker>>,
    who: Who,
    Path((cluster_id, topic)): Path<(String, String)>,
    body: Body,
) -> Response {
    if cluster_id != b.cluster_id {
        return error(
            StatusCode::NOT_FOUND,
            format!("cluster {cluster_id} not found"),
        );
    }
    // One JSON object, or several one after another (a streamed request).
    let mut parsed = Vec::new();
    for item in serde_json::Deserializer::from_slice(&body).into_iter::<V3Record>() {
        parsed.push(item.map_err(|e| e.to_string()).and_then(v3_record));
    }
    if parsed.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the request body holds no record");
    }
    let streamed = parsed.len() > 1;
    let good: Vec<OutRecord> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let caller = caller_of(who);
    let mut landed = match produce(&b, &caller, &topic, good).await {
        Ok(r) => r.into_iter(),
        Err(e) => return error(status_of(&e), e.to_string()),
    };
    let results: Vec<(StatusCode, Value)> = parsed
        .into_iter()
        .map(|p| match p {
            Err(why) => (
                StatusCode::BAD_REQUEST,
                json!({"error_code": 400, "message": why}),
            ),
            Ok(_) => match landed.next() {
                Some(Ok(Landed {
                    partition,
                    offset,
                    timestamp,
                })) => (
                    StatusCode::OK,
                    json!({
                        "error_code": 200,
                        "cluster_id": b.cluster_id,
                        "topic_name": topic,
                        "partition_id": partition,
                        "offset": offset,
                        "timestamp": rfc3339(timestamp),
                    }),
                ),
                Some(Err(e)) => {
                    let s = status_of(&e);
                    (
                        s,
                        json!({"error_code": s.as_u16(), "message": e.to_string()}),
                    )
                }
                None => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error_code": 500, "message": "no result"}),
                ),
            },
        })
        .collect();
    if !streamed {
        let (status, v) = results.into_iter().next().unwrap_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error_code": 500, "message": "no result"}),
        ));
        return (status, axum::Json(v)).into_response();
    }
    // Streamed: 200, one result object per record, one per line.
    let mut out = String::new();
    for (_, v) in results {
        out.push_str(&v.to_string());
        out.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Record {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    partition: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Request {
    records: Vec<V2Record>,
    #[serde(default)]
    key_schema: Option<Value>,
    #[serde(default)]
    value_schema: Option<Value>,
    #[serde(default)]
    key_schema_id: Option<Value>,
    #[serde(default)]
    value_schema_id: Option<Value>,
}

/// `POST /topics/{topic}` (REST Proxy v2).
pub async fn produce_v2(
    State(b): State<Arc<Broker>>,
    who: Who,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let binary = if ct.starts_with("application/vnd.kafka.json.v2+json") {
        false
    } else if ct.starts_with("application/vnd.kafka.binary.v2+json") {
        true
    } else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json",
        );
    };
    let req: V2Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    if req.key_schema.is_some()
        || req.value_schema.is_some()
        || req.key_schema_id.is_some()
        || req.value_schema_id.is_some()
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema-based (Avro/Protobuf/JSON Schema) v2 produce is not supported; use the json or binary embedded format",
        );
    }
    let bytes_of = |v: Value, what: &str| -> Result<Option<bytes::Bytes>, String> {
        match (v, binary) {
            (Value::Null, _) => Ok(None),
            (Value::String(s), true) => b64(&s)
                .map(|b| Some(b.into()))
                .map_err(|e| format!("{what}: {e}")),
            (_, true) => Err(format!("{what}: binary data must be a base64 string")),
            (v, false) => serde_json::to_vec(&v)
                .map(|b| Some(b.into()))
                .map_err(|e| e.to_string()),
        }
    };
    let mut records = Vec::with_capacity(req.records.len());
    for (i, r) in req.records.into_iter().enumerate() {
        let rec = bytes_of(r.key, "key").and_then(|k| {
            bytes_of(r.value, "value").map(|v| OutRecord {
                partition: r.partition,
                key: k,
                value: v,
                ..OutRecord::default()
            })
        });
        match rec {
            Ok(r) => records.push(r),
            Err(why) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("record {i}: {why}"),
                )
            }
        }
    }
    let caller = caller_of(who);
    let landed = match produce(&b, &caller, &topic, records).await {
        Ok(r) => r,
        Err(e) => return error(status_of(&e), e.to_string()),
    };
    let offsets: Vec<Value> = landed
        .into_iter()
        .map(|r| match r {
            Ok(l) => json!({"partition": l.partition, "offset": l.offset, "error_code": null, "error": null}),
            Err(e) => json!({"partition": null, "offset": null,
                             "error_code": if matches!(e, ProduceError::Invalid(_)) { 42206 } else { 50003 },
                             "error": e.to_string()}),
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/vnd.kafka.v2+json")],
        axum::Json(json!({"key_schema_id": null, "value_schema_id": null, "offsets": offsets})),
    )
        .into_response()
}
