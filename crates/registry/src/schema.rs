//! One parsed schema of any type: dispatches parsing, canonical form,
//! record names, payload validation and compatibility to the per-type
//! modules.

use crate::avro::{self, AvroSchema};
use crate::error::RegistryError;
use crate::json::{self, JsonSchema};
use crate::model::SchemaType;
use crate::protobuf::{self, ProtoSchema};

/// A referenced schema, flattened: `name` as the referring schema names it
/// and the referenced schema's text.
#[derive(Debug, Clone)]
pub struct Dep {
    pub name: String,
    pub text: String,
}

/// A schema parsed by its library. Held behind an `Arc` in the cache,
/// so the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Avro(AvroSchema),
    Json(JsonSchema),
    Protobuf(ProtoSchema),
}

impl Parsed {
    /// Parses `text` as `ty` with its flattened references (dependencies
    /// before dependents).
    pub fn parse(ty: SchemaType, text: &str, deps: &[Dep]) -> Result<Parsed, RegistryError> {
        if text.trim().is_empty() {
            return Err(RegistryError::InvalidSchema("Empty schema".into()));
        }
        Ok(match ty {
            SchemaType::Avro => {
                let d: Vec<&str> = deps.iter().map(|d| d.text.as_str()).collect();
                Parsed::Avro(avro::parse(text, &d)?)
            }
            SchemaType::Json => {
                let d: Vec<(&str, &str)> = deps
                    .iter()
                    .map(|d| (d.name.as_str(), d.text.as_str()))
                    .collect();
                Parsed::Json(json::parse(text, &d)?)
            }
            SchemaType::Protobuf => {
                let d: Vec<(&str, &str)> = deps
                    .iter()
                    .map(|d| (d.name.as_str(), d.text.as_str()))
                    .collect();
                Parsed::Protobuf(protobuf::parse(text, &d)?)
            }
        })
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            Parsed::Avro(_) => SchemaType::Avro,
            Parsed::Json(_) => SchemaType::Json,
            Parsed::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// The canonical form used to deduplicate and look up schemas.
    pub fn canonical(&self) -> &str {
        match self {
            Parsed::Avro(s) => &s.canonical,
            Parsed::Json(s) => &s.canonical,
            Parsed::Protobuf(s) => &s.canonical,
        }
    }

    /// The name RecordNameStrategy uses: Avro full name of the root named
    /// type, Protobuf full name of the first message, JSON `title`.
    pub fn record_name(&self) -> Option<&str> {
        match self {
            Parsed::Avro(s) => s.record_name.as_deref(),
            Parsed::Json(s) => s.title.as_deref(),
            Parsed::Protobuf(s) => s.record_name.as_deref(),
        }
    }

    /// Checks a payload (after the 5-byte wire-format header).
    pub fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        match self {
            Parsed::Avro(s) => s.plan.validate(payload),
            Parsed::Json(s) => s.validate(payload),
            Parsed::Protobuf(s) => s.validate(payload),
        }
    }

    /// Protobuf given as a descriptor: its `.proto` source, rendered.
    pub fn rendered_text(&self) -> Option<&str> {
        match self {
            Parsed::Protobuf(s) => s.rendered.as_deref(),
            _ => None,
        }
    }

    /// The `format=serialized` text (Protobuf: base64 descriptor).
    pub fn serialized(&self) -> Option<&str> {
        match self {
            Parsed::Protobuf(s) => Some(&s.serialized),
            _ => None,
        }
    }

    /// Can `reader` read what `writer` wrote? Empty = yes; otherwise the
    /// incompatible differences.
    pub fn can_read(reader: &Parsed, writer: &Parsed) -> Vec<String> {
        match (reader, writer) {
            (Parsed::Avro(r), Parsed::Avro(w)) => avro::can_read(r, w),
            (Parsed::Json(r), Parsed::Json(w)) => json::can_read(r, w),
            (Parsed::Protobuf(r), Parsed::Protobuf(w)) => protobuf::can_read(r, w),
            _ => vec![format!(
                "{{errorType:'TYPE_MISMATCH', description:'Incompatible schema type: {} vs {}'}}",
                reader.schema_type(),
                writer.schema_type()
            )],
        }
    }
}
