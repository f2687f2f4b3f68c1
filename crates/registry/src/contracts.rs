//! The AI event contracts shipped with the broker (`contracts/` in the
//! repository, embedded here): Avro schemas for inference, tool call,
//! retrieval, feedback, guardrail decision and evaluation result events,
//! each carrying the governance envelope by schema reference, and JSON
//! Schema equivalents derived from them (envelope inlined, `trace_id` and
//! `span_id` constrained to W3C hex). `install_ai_contracts` registers them
//! under `ai.`-prefixed subjects; it is idempotent.

use serde_json::{json, Map, Value};

use crate::error::RegistryError;
use crate::model::{SchemaReference, SchemaType};
use crate::registry::{Registry, SchemaRequest};

/// Subject of the shared governance envelope (Avro).
pub const ENVELOPE_SUBJECT: &str = "ai.sluice.Envelope";
/// Full name of the envelope record (the Avro reference name).
pub const ENVELOPE_NAME: &str = "ai.sluice.Envelope";

const ENVELOPE: &str = include_str!("../../../contracts/avro/envelope.avsc");

/// (kind, Avro schema text). Topic `ai.<kind>`, Avro subject
/// `ai.<kind>-value`, JSON Schema subject `ai.<kind>.json-value`.
pub const EVENTS: [(&str, &str); 6] = [
    (
        "inference",
        include_str!("../../../contracts/avro/inference.avsc"),
    ),
    (
        "tool_call",
        include_str!("../../../contracts/avro/tool_call.avsc"),
    ),
    (
        "retrieval",
        include_str!("../../../contracts/avro/retrieval.avsc"),
    ),
    (
        "feedback",
        include_str!("../../../contracts/avro/feedback.avsc"),
    ),
    (
        "guardrail_decision",
        include_str!("../../../contracts/avro/guardrail_decision.avsc"),
    ),
    (
        "evaluation_result",
        include_str!("../../../contracts/avro/evaluation_result.avsc"),
    ),
];

/// The Avro subject of an event kind.
pub fn avro_subject(kind: &str) -> String {
    format!("ai.{kind}-value")
}

/// The JSON Schema subject of an event kind.
pub fn json_subject(kind: &str) -> String {
    format!("ai.{kind}.json-value")
}

/// Registers the envelope, the Avro event schemas and their JSON Schema
/// equivalents. Returns (subject, id) for each, envelope first.
pub fn install_ai_contracts(registry: &Registry) -> Result<Vec<(String, u32)>, RegistryError> {
    let mut out = Vec::new();
    let env = registry.register(
        ENVELOPE_SUBJECT,
        &SchemaRequest::new(SchemaType::Avro, ENVELOPE),
        false,
    )?;
    out.push((ENVELOPE_SUBJECT.to_string(), env.id));
    for (kind, text) in EVENTS {
        let mut req = SchemaRequest::new(SchemaType::Avro, text);
        req.references = vec![SchemaReference {
            name: ENVELOPE_NAME.to_string(),
            subject: ENVELOPE_SUBJECT.to_string(),
            version: env.version,
        }];
        let subject = avro_subject(kind);
        let r = registry.register(&subject, &req, false)?;
        out.push((subject, r.id));
    }
    for (kind, text) in EVENTS {
        let schema = json_schema_for(text)?;
        let subject = json_subject(kind);
        let r = registry.register(
            &subject,
            &SchemaRequest::new(SchemaType::Json, schema),
            false,
        )?;
        out.push((subject, r.id));
    }
    Ok(out)
}

/// TensorZero's three topics (seed 004) and their JSON Schema contracts:
/// (topic suffix, schema text). Topic `{prefix}_{suffix}`, subject
/// `{prefix}_{suffix}-value`.
pub const TENSORZERO: [(&str, &str); 3] = [
    (
        "model_inference",
        include_str!("../../../contracts/tensorzero/model_inference.json"),
    ),
    (
        "chat_inference",
        include_str!("../../../contracts/tensorzero/chat_inference.json"),
    ),
    (
        "json_inference",
        include_str!("../../../contracts/tensorzero/json_inference.json"),
    ),
];

/// Registers the TensorZero contracts for topics named with `prefix`;
/// returns (topic, subject, schema id) for each. Idempotent.
pub fn install_tensorzero(
    registry: &Registry,
    prefix: &str,
) -> Result<Vec<(String, String, u32)>, RegistryError> {
    TENSORZERO
        .iter()
        .map(|(suffix, text)| {
            let topic = format!("{prefix}_{suffix}");
            let subject = format!("{topic}-value");
            let r = registry.register(
                &subject,
                &SchemaRequest::new(SchemaType::Json, *text),
                false,
            )?;
            Ok((topic, subject, r.id))
        })
        .collect()
}

/// The JSON Schema equivalent of one embedded Avro event schema.
pub fn json_schema_for(avro_text: &str) -> Result<String, RegistryError> {
    let bad = |e: String| RegistryError::InvalidSchema(format!("contract: {e}"));
    let env: Value = serde_json::from_str(ENVELOPE).map_err(|e| bad(e.to_string()))?;
    let ev: Value = serde_json::from_str(avro_text).map_err(|e| bad(e.to_string()))?;
    let mut root = convert(&ev, &env);
    if let Value::Object(m) = &mut root {
        let mut with_schema = Map::new();
        with_schema.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        with_schema.extend(std::mem::take(m));
        *m = with_schema;
    }
    serde_json::to_string_pretty(&root).map_err(|e| bad(e.to_string()))
}

fn full_name(record: &Value) -> String {
    let name = record.get("name").and_then(Value::as_str).unwrap_or("");
    match record.get("namespace").and_then(Value::as_str) {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// Avro (as JSON) to JSON Schema: records become closed objects whose
/// fields without a default are required, `["null", T]` unions become
/// `anyOf`, enums string enums, long/int integers; the envelope reference
/// is inlined.
fn convert(avro: &Value, envelope: &Value) -> Value {
    match avro {
        Value::String(t) => match t.as_str() {
            "string" | "bytes" => json!({"type": "string"}),
            "int" | "long" => json!({"type": "integer"}),
            "float" | "double" => json!({"type": "number"}),
            "boolean" => json!({"type": "boolean"}),
            "null" => json!({"type": "null"}),
            ENVELOPE_NAME => convert(envelope, envelope),
            other => json!({"description": format!("Avro type {other}")}),
        },
        Value::Array(branches) => {
            let items: Vec<Value> = branches.iter().map(|b| convert(b, envelope)).collect();
            json!({"anyOf": items})
        }
        Value::Object(m) => match m.get("type").and_then(Value::as_str) {
            Some("record") => {
                let mut props = Map::new();
                let mut required = Vec::new();
                for f in m
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(name) = f.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let mut p = convert(f.get("type").unwrap_or(&Value::Null), envelope);
                    if let Value::Object(pm) = &mut p {
                        if let Some(d) = f.get("doc") {
                            pm.insert("description".into(), d.clone());
                        }
                        if let Some(a) = f.get("otel_attribute") {
                            pm.insert("x-otel-attribute".into(), a.clone());
                        }
                        match name {
                            "trace_id" => {
                                pm.insert("pattern".into(), json!("^[0-9a-f]{32}$"));
                            }
                            "span_id" => {
                                pm.insert("pattern".into(), json!("^[0-9a-f]{16}$"));
                            }
                            _ => {}
                        }
                        match f.get("default") {
                            Some(d) => {
                                pm.insert("default".into(), d.clone());
                            }
                            None => required.push(json!(name)),
                        }
                    }
                    props.insert(name.to_string(), p);
                }
                let mut out = Map::new();
                out.insert("title".into(), json!(full_name(avro)));
                if let Some(d) = m.get("doc") {
                    out.insert("description".into(), d.clone());
                }
                out.insert("type".into(), json!("object"));
                out.insert("properties".into(), Value::Object(props));
                out.insert("required".into(), Value::Array(required));
                out.insert("additionalProperties".into(), json!(false));
                Value::Object(out)
            }
            Some("enum") => {
                json!({"type": "string", "enum": m.get("symbols").cloned().unwrap_or(json!([]))})
            }
            Some("array") => {
                json!({"type": "array", "items": convert(m.get("items").unwrap_or(&Value::Null), envelope)})
            }
            Some("map") => {
                json!({"type": "object", "additionalProperties": convert(m.get("values").unwrap_or(&Value::Null), envelope)})
            }
            Some("fixed") => json!({"type": "string"}),
            Some(prim) => convert(&Value::String(prim.to_string()), envelope),
            None => json!({}),
        },
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{SubjectStrategy, ValidationMode};
    use std::path::PathBuf;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn install_is_idempotent() {
        let reg = Registry::in_memory().unwrap();
        let a = install_ai_contracts(&reg).unwrap();
        let b = install_ai_contracts(&reg).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 13);
        assert!(a.iter().all(|(s, _)| s.starts_with("ai.")));
        assert_eq!(
            reg.versions("ai.inference-value", false, false).unwrap(),
            vec![1]
        );
    }

    /// contracts/json/*.json are generated from the Avro contracts; set
    /// SLUICE_REGEN_CONTRACTS=1 to rewrite them.
    #[test]
    fn json_contract_files_match_generated() {
        let dir = repo().join("contracts/json");
        let regen = std::env::var("SLUICE_REGEN_CONTRACTS").is_ok();
        for (kind, text) in EVENTS {
            let generated = json_schema_for(text).unwrap() + "\n";
            let path = dir.join(format!("{kind}.json"));
            if regen {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &generated).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                on_disk,
                generated,
                "{} is stale (SLUICE_REGEN_CONTRACTS=1)",
                path.display()
            );
        }
    }

    /// Every example event validates (JSON contracts, content mode) and
    /// every example missing governance fields is refused.
    #[test]
    fn examples_validate_against_json_contracts() {
        let reg = Registry::in_memory().unwrap();
        let installed = install_ai_contracts(&reg).unwrap();
        let v = reg.validator();
        let examples = repo().join("contracts/examples");
        let mut checked = 0;
        for (kind, _) in EVENTS {
            let id = installed
                .iter()
                .find(|(s, _)| *s == json_subject(kind))
                .unwrap()
                .1;
            for (suffix, should_pass) in [("valid", true), ("missing-governance", false)] {
                let path = examples.join(format!("{kind}.{suffix}.json"));
                let body =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut payload = vec![0];
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&body);
                let topic = format!("ai.{kind}.json");
                let r = v.validate(
                    &topic,
                    false,
                    SubjectStrategy::TopicName,
                    ValidationMode::Content,
                    Some(&payload),
                );
                assert_eq!(r.is_ok(), should_pass, "{}: {r:?}", path.display());
                checked += 1;
            }
        }
        assert_eq!(checked, 12);
    }

    /// The valid examples, encoded as Avro binary by apache-avro, pass
    /// content validation against the Avro contracts; truncated ones fail.
    #[test]
    fn examples_validate_against_avro_contracts() {
        use crate::schema::Parsed;
        let reg = Registry::in_memory().unwrap();
        let installed = install_ai_contracts(&reg).unwrap();
        let v = reg.validator();
        for (kind, _) in EVENTS {
            let id = installed
                .iter()
                .find(|(s, _)| *s == avro_subject(kind))
                .unwrap()
                .1;
            let parsed = reg.parsed(id).unwrap();
            let Parsed::Avro(schema) = &*parsed else {
                panic!("not avro")
            };
            let path = repo().join(format!("contracts/examples/{kind}.valid.json"));
            let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let value = apache_avro::types::Value::try_from(json)
                .unwrap()
                .resolve(&schema.full)
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            #[allow(deprecated)]
            let body = apache_avro::to_avro_datum(&schema.full, value).unwrap();
            let mut payload = vec![0];
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&body);
            let topic = format!("ai.{kind}");
            let check = |p: &[u8]| {
                v.validate(
                    &topic,
                    false,
                    SubjectStrategy::TopicName,
                    ValidationMode::Content,
                    Some(p),
                )
            };
            assert_eq!(check(&payload), Ok(id), "{kind}");
            assert!(
                check(&payload[..payload.len() - 1]).is_err(),
                "{kind} truncated"
            );
        }
    }
}
