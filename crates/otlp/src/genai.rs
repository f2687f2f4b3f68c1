//! GenAI spans into the AI contract events of `contracts/`.
//!
//! A span with a `gen_ai.operation.name` attribute (the OpenTelemetry
//! GenAI semantic conventions) becomes:
//! - `execute_tool`: a tool-call event (`ai.tool_call`, contract
//!   `ai.tool_call.json-value`);
//! - `invoke_agent` and `create_agent`: nothing (an agent's run is a tree
//!   of the spans below it; its inferences and tool calls are mapped);
//! - any other operation (`chat`, `text_completion`, `embeddings`,
//!   `generate_content`, ...): an inference event (`ai.inference`,
//!   contract `ai.inference.json-value`).
//!
//! The governance envelope comes from the span and its resource: trace and
//! span id, `service.name` / `service.instance.id` / `service.version` as
//! the producer, the tenant and classification from resource (or span)
//! attributes named by [`GenAiTopics`] (`tenant.id`, `data.classification`
//! by default), consent from `data.consent_scope`. Fields the conventions
//! define are mapped (with the older `gen_ai.system` and
//! `gen_ai.usage.prompt_tokens` / `completion_tokens` names as fallbacks);
//! every other span attribute is kept, as a string, in the event's
//! `attributes` map. A required field the span lacks is left out, so the
//! contract names it when it refuses the event.

use crate::encode::hex;
use crate::Record;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use serde_json::{json, Map, Value};

/// Topics and attribute names of the mapping.
#[derive(Debug, Clone)]
pub struct GenAiTopics {
    pub inference_topic: String,
    pub tool_call_topic: String,
    pub tenant_attribute: String,
    pub classification_attribute: String,
}

impl Default for GenAiTopics {
    fn default() -> Self {
        Self {
            inference_topic: "ai.inference".into(),
            tool_call_topic: "ai.tool_call".into(),
            tenant_attribute: "tenant.id".into(),
            classification_attribute: "data.classification".into(),
        }
    }
}

/// The contract subject events of each kind are checked against.
pub const INFERENCE_SUBJECT: &str = "ai.inference.json-value";
pub const TOOL_CALL_SUBJECT: &str = "ai.tool_call.json-value";

/// The events of one export request.
#[derive(Debug, Default)]
pub struct Events {
    pub inferences: Vec<Record>,
    pub tool_calls: Vec<Record>,
}

/// Span attributes the contracts map to fields (and so not repeated in
/// `attributes`).
const MAPPED: [&str; 22] = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.request.temperature",
    "gen_ai.request.max_tokens",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.conversation.id",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "gen_ai.tool.type",
    "gen_ai.agent.name",
    "error.type",
    "tenant.id",
    "data.classification",
    "data.consent_scope",
];

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(v: Option<&any_value::Value>) -> Option<String> {
    match v? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int(v: Option<&any_value::Value>) -> Option<i64> {
    match v? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(v: Option<&any_value::Value>) -> Option<f64> {
    match v? {
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn strings(v: Option<&any_value::Value>) -> Vec<String> {
    match v {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|x| string(x.value.as_ref()))
            .collect(),
        Some(any_value::Value::StringValue(s)) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        other => string(other).into_iter().collect(),
    }
}

/// An attribute value as JSON (arrays and maps kept as structure).
fn json_of(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(json_of).collect())
        }
        Some(any_value::Value::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, json_of),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => json!(hex(b)),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// Unmapped attributes as strings (structured values as their JSON).
fn others(attrs: &[KeyValue], skip: &[&str]) -> Map<String, Value> {
    attrs
        .iter()
        .filter(|kv| !MAPPED.contains(&kv.key.as_str()) && !skip.contains(&kv.key.as_str()))
        .map(|kv| {
            let v = kv.value.as_ref().map_or(Value::Null, json_of);
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (kv.key.clone(), Value::String(s))
        })
        .collect()
}

/// A stable event id for a span: the same span sent twice makes the same
/// event (a UUID whose bytes are taken from the trace and span ids).
fn event_id(span: &Span) -> String {
    let mut b = [0u8; 16];
    for (i, x) in span.trace_id.iter().take(8).enumerate() {
        b[i] = *x;
    }
    for (i, x) in span.span_id.iter().take(8).enumerate() {
        b[8 + i] = *x;
    }
    uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
}

/// Inserts `v` under `k` unless it is None (left out: the contract names a
/// missing required field; an optional one defaults to null).
fn put<T: Into<Value>>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(k.into(), v.into());
    }
}

/// The contract events of the GenAI spans in `req`.
pub fn events(req: &ExportTraceServiceRequest, cfg: &GenAiTopics) -> Events {
    let mut out = Events::default();
    for rs in &req.resource_spans {
        let res: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let a = &span.attributes;
                let Some(op) = string(attr(a, "gen_ai.operation.name")) else {
                    continue;
                };
                if op == "invoke_agent" || op == "create_agent" {
                    continue;
                }
                let either = |k: &str| attr(a, k).or_else(|| attr(res, k));
                let mut gov = Map::new();
                gov.insert("event_id".into(), json!(event_id(span)));
                let end = if span.end_time_unix_nano > 0 {
                    span.end_time_unix_nano
                } else {
                    span.start_time_unix_nano
                };
                let event_time = (end / 1_000_000) as i64;
                gov.insert("event_time".into(), json!(event_time));
                gov.insert(
                    "producer".into(),
                    json!({
                        "service": string(attr(res, "service.name")).unwrap_or_else(|| "unknown_service".into()),
                        "instance": string(attr(res, "service.instance.id")),
                        "version": string(attr(res, "service.version")),
                    }),
                );
                put(&mut gov, "tenant_id", string(either(&cfg.tenant_attribute)));
                put(
                    &mut gov,
                    "classification",
                    string(either(&cfg.classification_attribute)).map(|c| c.to_ascii_uppercase()),
                );
                gov.insert(
                    "consent_scope".into(),
                    json!(strings(either("data.consent_scope"))),
                );
                gov.insert("lineage_source_event_ids".into(), json!([]));
                gov.insert("schema_version".into(), json!("1.0"));
                gov.insert("trace_id".into(), json!(hex(&span.trace_id)));
                gov.insert("span_id".into(), json!(hex(&span.span_id)));

                let mut e = Map::new();
                e.insert("governance".into(), Value::Object(gov));
                e.insert("gen_ai_operation_name".into(), json!(op));
                let duration_ms = (span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano)
                    / 1_000_000) as i64;
                let failed = span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32);
                let error_type =
                    string(attr(a, "error.type")).or_else(|| failed.then(|| "error".into()));
                let skip = [
                    cfg.tenant_attribute.as_str(),
                    cfg.classification_attribute.as_str(),
                ];
                let is_tool = op == "execute_tool";
                if is_tool {
                    put(
                        &mut e,
                        "gen_ai_tool_name",
                        string(attr(a, "gen_ai.tool.name")),
                    );
                    put(
                        &mut e,
                        "gen_ai_tool_call_id",
                        string(attr(a, "gen_ai.tool.call.id")),
                    );
                    e.insert(
                        "gen_ai_tool_type".into(),
                        json!(string(attr(a, "gen_ai.tool.type"))),
                    );
                    e.insert(
                        "gen_ai_agent_name".into(),
                        json!(string(attr(a, "gen_ai.agent.name"))),
                    );
                    e.insert("arguments_ref".into(), Value::Null);
                    e.insert("status".into(), json!(if failed { "ERROR" } else { "OK" }));
                    e.insert("duration_ms".into(), json!(duration_ms));
                    e.insert("retry_count".into(), json!(0));
                } else {
                    put(
                        &mut e,
                        "gen_ai_provider_name",
                        string(
                            attr(a, "gen_ai.provider.name").or_else(|| attr(a, "gen_ai.system")),
                        ),
                    );
                    put(
                        &mut e,
                        "gen_ai_request_model",
                        string(attr(a, "gen_ai.request.model")),
                    );
                    e.insert(
                        "gen_ai_response_model".into(),
                        json!(string(attr(a, "gen_ai.response.model"))),
                    );
                    e.insert(
                        "gen_ai_response_id".into(),
                        json!(string(attr(a, "gen_ai.response.id"))),
                    );
                    e.insert(
                        "gen_ai_request_temperature".into(),
                        json!(float(attr(a, "gen_ai.request.temperature"))),
                    );
                    e.insert(
                        "gen_ai_request_max_tokens".into(),
                        json!(int(attr(a, "gen_ai.request.max_tokens"))),
                    );
                    put(
                        &mut e,
                        "gen_ai_usage_input_tokens",
                        int(attr(a, "gen_ai.usage.input_tokens")
                            .or_else(|| attr(a, "gen_ai.usage.prompt_tokens"))),
                    );
                    put(
                        &mut e,
                        "gen_ai_usage_output_tokens",
                        int(attr(a, "gen_ai.usage.output_tokens")
                            .or_else(|| attr(a, "gen_ai.usage.completion_tokens"))),
                    );
                    e.insert(
                        "gen_ai_response_finish_reasons".into(),
                        json!(strings(attr(a, "gen_ai.response.finish_reasons"))),
                    );
                    e.insert(
                        "gen_ai_conversation_id".into(),
                        json!(string(attr(a, "gen_ai.conversation.id"))),
                    );
                    e.insert("latency_ms".into(), json!(duration_ms));
                    e.insert("prompt_ref".into(), Value::Null);
                }
                e.insert("error_type".into(), json!(error_type));
                e.insert("attributes".into(), Value::Object(others(a, &skip)));
                let record = Record {
                    key: Some(hex(&span.trace_id).into_bytes().into()),
                    value: serde_json::to_vec(&Value::Object(e))
                        .unwrap_or_default()
                        .into(),
                    headers: vec![("traceparent".into(), traceparent(span).into_bytes().into())],
                    timestamp: Some(event_time),
                };
                if is_tool {
                    out.tool_calls.push(record);
                } else {
                    out.inferences.push(record);
                }
            }
        }
    }
    out
}

/// The span's W3C traceparent (sampled), so consumers can link back.
fn traceparent(span: &Span) -> String {
    format!("00-{}-{}-01", hex(&span.trace_id), hex(&span.span_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..KeyValue::default()
        }
    }
    fn s(x: &str) -> any_value::Value {
        any_value::Value::StringValue(x.into())
    }

    #[test]
    fn chat_and_tool_spans_become_events() {
        let chat = Span {
            trace_id: vec![0x4b; 16],
            span_id: vec![0x01; 8],
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 2_500_000_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(12)),
                kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(7)),
                kv("gen_ai.response.finish_reasons", s("stop")),
                kv("http.route", s("/chat")),
            ],
            ..Span::default()
        };
        let tool = Span {
            trace_id: vec![0x4b; 16],
            span_id: vec![0x02; 8],
            attributes: vec![
                kv("gen_ai.operation.name", s("execute_tool")),
                kv("gen_ai.tool.name", s("search")),
                kv("gen_ai.tool.call.id", s("call-1")),
            ],
            status: Some(Status {
                code: StatusCode::Error as i32,
                message: "boom".into(),
            }),
            ..Span::default()
        };
        let plain = Span {
            name: "not genai".into(),
            ..Span::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("agent")),
                        kv("tenant.id", s("acme")),
                        kv("data.classification", s("confidential")),
                    ],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![chat, tool, plain],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let ev = events(&req, &GenAiTopics::default());
        assert_eq!((ev.inferences.len(), ev.tool_calls.len()), (1, 1));
        let i: Value = serde_json::from_slice(&ev.inferences[0].value).unwrap();
        assert_eq!(i["governance"]["tenant_id"], "acme");
        assert_eq!(i["governance"]["classification"], "CONFIDENTIAL");
        assert_eq!(i["governance"]["trace_id"], "4b".repeat(16));
        assert_eq!(i["governance"]["producer"]["service"], "agent");
        assert_eq!(i["governance"]["event_time"], 2500);
        assert_eq!(i["gen_ai_usage_output_tokens"], 7);
        assert_eq!(i["latency_ms"], 1500);
        assert_eq!(i["gen_ai_response_finish_reasons"], json!(["stop"]));
        assert_eq!(i["attributes"], json!({"http.route": "/chat"}));
        let t: Value = serde_json::from_slice(&ev.tool_calls[0].value).unwrap();
        assert_eq!(t["status"], "ERROR");
        assert_eq!(t["error_type"], "error");
        assert_eq!(t["gen_ai_tool_call_id"], "call-1");
        assert_eq!(
            ev.tool_calls[0].key.as_deref(),
            Some("4b".repeat(16).as_bytes())
        );
    }
}
