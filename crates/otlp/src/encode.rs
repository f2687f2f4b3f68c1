//! Export requests into Kafka records, as the OpenTelemetry Collector's
//! Kafka exporter writes them: the whole export request as one value
//! (`otlp_proto`: protobuf; `otlp_json`: OTLP/JSON), except that spans are
//! split into one request per trace keyed by the trace id in lowercase hex
//! (its `partition_traces_by_id`, so a trace's spans share a partition).

use crate::{Encoding, Record};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use std::collections::HashMap;

/// Lowercase hex of an id.
pub fn hex(id: &[u8]) -> String {
    let mut s = String::with_capacity(id.len() * 2);
    for b in id {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
    }
    s
}

fn value<M: Message + serde::Serialize>(m: &M, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Proto => m.encode_to_vec().into(),
        // Serializing generated structs of strings, numbers and vectors
        // cannot fail; an empty value would be the visible sign if it did.
        Encoding::Json => serde_json::to_vec(m).unwrap_or_default().into(),
    }
}

/// One record per trace, keyed by its trace id, each holding its spans
/// under their original resource and scope, in the order first seen.
pub fn traces(req: &ExportTraceServiceRequest, encoding: Encoding) -> Vec<Record> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut per_trace: HashMap<Vec<u8>, ExportTraceServiceRequest> = HashMap::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let out = per_trace.entry(span.trace_id.clone()).or_insert_with(|| {
                    order.push(span.trace_id.clone());
                    ExportTraceServiceRequest::default()
                });
                // The same resource and scope as the last span's: append.
                let same_resource = out
                    .resource_spans
                    .last()
                    .is_some_and(|r| r.resource == rs.resource && r.schema_url == rs.schema_url);
                if !same_resource {
                    out.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    });
                }
                let Some(r) = out.resource_spans.last_mut() else {
                    continue;
                };
                let same_scope = r
                    .scope_spans
                    .last()
                    .is_some_and(|s| s.scope == ss.scope && s.schema_url == ss.schema_url);
                if !same_scope {
                    r.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                }
                if let Some(s) = r.scope_spans.last_mut() {
                    s.spans.push(span.clone());
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let r = per_trace.remove(&id)?;
            Some(Record {
                key: Some(hex(&id).into_bytes().into()),
                value: value(&r, encoding),
                ..Record::default()
            })
        })
        .collect()
}

/// The logs request as one record (no key), as the exporter sends it;
/// none for an empty request.
pub fn logs(req: &ExportLogsServiceRequest, encoding: Encoding) -> Vec<Record> {
    if req.resource_logs.is_empty() {
        return Vec::new();
    }
    vec![Record {
        value: value(req, encoding),
        ..Record::default()
    }]
}

/// The metrics request as one record (no key); none for an empty request.
pub fn metrics(req: &ExportMetricsServiceRequest, encoding: Encoding) -> Vec<Record> {
    if req.resource_metrics.is_empty() {
        return Vec::new();
    }
    vec![Record {
        value: value(req, encoding),
        ..Record::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("s{id}"),
            ..Span::default()
        }
    }

    #[test]
    fn spans_split_per_trace_keyed_by_hex_id() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(0xab, 1), span(0x01, 2), span(0xab, 3)],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let recs = traces(&req, Encoding::Proto);
        assert_eq!(recs.len(), 2);
        // Empty exports make no records.
        assert!(traces(&ExportTraceServiceRequest::default(), Encoding::Proto).is_empty());
        assert!(logs(&ExportLogsServiceRequest::default(), Encoding::Json).is_empty());
        assert!(metrics(&ExportMetricsServiceRequest::default(), Encoding::Proto).is_empty());
        assert_eq!(recs[0].key.as_deref(), Some("ab".repeat(16).as_bytes()));
        assert_eq!(recs[1].key.as_deref(), Some("01".repeat(16).as_bytes()));
        let first = ExportTraceServiceRequest::decode(recs[0].value.clone()).unwrap();
        let names: Vec<_> = first.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["s1", "s3"]);
        // OTLP/JSON: ids as hex, field names in camelCase.
        let json: serde_json::Value =
            serde_json::from_slice(&traces(&req, Encoding::Json)[1].value).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
            "01".repeat(16)
        );
    }
}
