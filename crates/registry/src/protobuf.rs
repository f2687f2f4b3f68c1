//! Protobuf: `.proto` text is compiled with `protox` (and base64-encoded
//! `FileDescriptorProto`s, which Confluent's Python serializer registers,
//! are decoded with `prost`) into a `prost-reflect` descriptor pool, against
//! the schema's references (keyed by import path) and the well-known
//! `google/protobuf/*` files. Payloads are decoded with `DynamicMessage`.
//!
//! Compatibility is hand-written (no Rust library provides it) after the
//! rules Confluent documents for Protobuf: messages are matched by name and
//! fields by number; removing a message, changing a field's kind, its
//! scalar type outside a wire-compatible group, or its message/enum type,
//! adding or removing a proto2 `required` field, removing a field from a
//! oneof, moving several fields into a new oneof or a field into an
//! existing oneof, changing the package, and changing the label of a
//! string/bytes field are incompatible; everything else (adding/removing
//! optional fields, renaming, enum changes, adding messages) is compatible.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use prost::Message;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor,
};
use prost_types::{DescriptorProto, FileDescriptorProto};
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::error::RegistryError;

/// The file name the registered schema gets inside its descriptor pool.
const ROOT: &str = "__sluice_schema__.proto";

/// A compiled Protobuf schema.
pub struct ProtoSchema {
    /// Base64 of the normalized `FileDescriptorProto` (no source info, no
    /// json names, no file name): equal for the same schema whether it was
    /// sent as `.proto` text or as a descriptor.
    pub canonical: String,
    /// Full name of the first message (RecordNameStrategy).
    pub record_name: Option<String>,
    /// Base64 `FileDescriptorProto`, the `format=serialized` form.
    pub serialized: String,
    /// `.proto` source rendered from the descriptor, when the schema was
    /// given as a descriptor and the rendering compiles back to it.
    pub rendered: Option<String>,
    file: FileDescriptor,
    top_messages: Vec<MessageDescriptor>,
}

struct Resolver {
    files: HashMap<String, File>,
    google: GoogleFileResolver,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(f) => Ok(f.clone()),
            None => self.google.open_file(name),
        }
    }
}

fn looks_base64(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn to_file(name: &str, text: &str) -> Result<File, RegistryError> {
    let invalid =
        |m: String| RegistryError::InvalidSchema(format!("Invalid Protobuf schema '{name}': {m}"));
    if looks_base64(text) {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| invalid(e.to_string()))?;
        let mut fdp =
            FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| invalid(e.to_string()))?;
        fdp.name = Some(name.to_string());
        Ok(File::from_file_descriptor_proto(fdp))
    } else {
        File::from_source(name, text).map_err(|e| invalid(e.to_string()))
    }
}

fn strip_json_names(m: &mut DescriptorProto) {
    for f in &mut m.field {
        f.json_name = None;
    }
    for n in &mut m.nested_type {
        strip_json_names(n);
    }
}

/// Parses `text` (`.proto` source or base64 descriptor) with its flattened
/// references `(import path, text)`.
pub fn parse(text: &str, deps: &[(&str, &str)]) -> Result<ProtoSchema, RegistryError> {
    let mut files = HashMap::new();
    for (name, t) in deps {
        files.insert(name.to_string(), to_file(name, t)?);
    }
    files.insert(ROOT.to_string(), to_file(ROOT, text)?);
    let mut compiler = protox::Compiler::with_file_resolver(Resolver {
        files,
        google: GoogleFileResolver::new(),
    });
    compiler.include_imports(true);
    compiler
        .open_file(ROOT)
        .map_err(|e| RegistryError::InvalidSchema(format!("Invalid Protobuf schema: {e}")))?;
    let pool: DescriptorPool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(ROOT)
        .ok_or_else(|| RegistryError::InvalidSchema("Invalid Protobuf schema: no file".into()))?;
    let mut fdp = file.file_descriptor_proto().clone();
    fdp.source_code_info = None;
    let serialized = {
        let mut s = fdp.clone();
        s.name = Some("schema.proto".into());
        B64.encode(s.encode_to_vec())
    };
    fdp.name = None;
    if fdp.syntax.as_deref() == Some("proto2") {
        fdp.syntax = None;
    }
    for m in &mut fdp.message_type {
        strip_json_names(m);
    }
    let canonical = B64.encode(fdp.encode_to_vec());
    let top_messages: Vec<MessageDescriptor> = file.messages().collect();
    let record_name = top_messages.first().map(|m| m.full_name().to_string());
    let rendered = if looks_base64(text) {
        crate::proto_text::render(file.file_descriptor_proto()).filter(|t| {
            parse(t, deps)
                .map(|p| p.canonical == canonical)
                .unwrap_or(false)
        })
    } else {
        None
    };
    Ok(ProtoSchema {
        canonical,
        record_name,
        serialized,
        rendered,
        file,
        top_messages,
    })
}

/// Zigzag varint as Confluent writes message indexes.
fn read_zigzag(buf: &mut &[u8]) -> Result<i64, String> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some((&b, rest)) = buf.split_first() else {
            return Err("truncated message index".into());
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("message index varint too long".into());
        }
    }
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

impl ProtoSchema {
    /// Resolves the message-index prefix of a payload and returns the rest.
    fn message_for<'p>(&self, payload: &'p [u8]) -> Result<(MessageDescriptor, &'p [u8]), String> {
        let mut buf = payload;
        let count = read_zigzag(&mut buf)?;
        if count == 0 {
            let m = self
                .top_messages
                .first()
                .ok_or("the schema defines no message")?;
            return Ok((m.clone(), buf));
        }
        if !(1..=64).contains(&count) {
            return Err(format!("invalid message index count {count}"));
        }
        let mut current: Option<MessageDescriptor> = None;
        for _ in 0..count {
            let i = read_zigzag(&mut buf)?;
            let i = usize::try_from(i).map_err(|_| format!("negative message index {i}"))?;
            let next = match &current {
                None => self.top_messages.get(i).cloned(),
                Some(m) => m.child_messages().nth(i),
            };
            current = Some(next.ok_or_else(|| format!("message index {i} out of range"))?);
        }
        current
            .map(|m| (m, buf))
            .ok_or_else(|| "empty message index".to_string())
    }

    /// The payload after the 5-byte header as JSON (proto3's JSON mapping,
    /// with the field names of the `.proto`).
    pub fn to_json(&self, payload: &[u8]) -> Result<serde_json::Value, String> {
        let (desc, body) = self.message_for(payload)?;
        let msg = DynamicMessage::decode(desc.clone(), body)
            .map_err(|e| format!("does not decode as {}: {e}", desc.full_name()))?;
        Ok(message_json(&msg, 0))
    }

    /// Checks the payload after the 5-byte header: message indexes, then a
    /// message that decodes with that descriptor.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let (desc, body) = self.message_for(payload)?;
        DynamicMessage::decode(desc.clone(), body)
            .map(|_| ())
            .map_err(|e| format!("does not decode as {}: {e}", desc.full_name()))
    }
}

/// Deepest nesting of messages turned into JSON (deeper ones are cut).
const JSON_DEPTH: usize = 64;

fn message_json(m: &DynamicMessage, depth: usize) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if depth > JSON_DEPTH {
        return serde_json::Value::Object(out);
    }
    for (f, v) in m.fields() {
        out.insert(f.name().to_string(), value_json(&f, v, depth));
    }
    serde_json::Value::Object(out)
}

fn value_json(f: &FieldDescriptor, v: &prost_reflect::Value, depth: usize) -> serde_json::Value {
    use prost_reflect::{MapKey, Value as V};
    use serde_json::Value as J;
    let float =
        |x: f64| serde_json::Number::from_f64(x).map_or(J::String(x.to_string()), J::Number);
    match v {
        V::Bool(b) => J::Bool(*b),
        V::I32(n) => J::from(*n),
        V::U32(n) => J::from(*n),
        // proto3 JSON writes 64-bit integers as strings.
        V::I64(n) => J::String(n.to_string()),
        V::U64(n) => J::String(n.to_string()),
        V::F32(x) => float(f64::from(*x)),
        V::F64(x) => float(*x),
        V::String(s) => J::String(s.clone()),
        V::Bytes(b) => J::String(B64.encode(b)),
        V::EnumNumber(n) => match f.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or(J::from(*n), |ev| J::String(ev.name().to_string())),
            _ => J::from(*n),
        },
        V::Message(m) => message_json(m, depth + 1),
        V::List(items) => J::Array(items.iter().map(|i| value_json(f, i, depth)).collect()),
        V::Map(entries) => {
            let value_field = match f.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => f.clone(),
            };
            let mut out = serde_json::Map::new();
            for (k, val) in entries {
                let key = match k {
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                    MapKey::String(s) => s.clone(),
                };
                out.insert(key, value_json(&value_field, val, depth));
            }
            J::Object(out)
        }
    }
}

// ---------------------------------------------------------------------------
// Compatibility
// ---------------------------------------------------------------------------

fn rel_name<'a>(full: &'a str, package: &str) -> &'a str {
    if package.is_empty() {
        full
    } else {
        full.strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full)
    }
}

fn all_messages(file: &FileDescriptor) -> Vec<MessageDescriptor> {
    fn walk(m: MessageDescriptor, out: &mut Vec<MessageDescriptor>) {
        if m.is_map_entry() {
            return;
        }
        let children: Vec<_> = m.child_messages().collect();
        out.push(m);
        for c in children {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    for m in file.messages() {
        walk(m, &mut out);
    }
    out
}

fn diff(kind: &str, path: &str, what: &str) -> String {
    format!("{{errorType:'{kind}', description:'{what} at path '{path}''}}")
}

fn scalar_group(k: &Kind) -> Option<u8> {
    Some(match k {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool => 1,
        Kind::Sint32 | Kind::Sint64 => 2,
        Kind::Fixed32 | Kind::Sfixed32 => 3,
        Kind::Fixed64 | Kind::Sfixed64 => 4,
        Kind::String | Kind::Bytes => 5,
        Kind::Float => 6,
        Kind::Double => 7,
        Kind::Message(_) | Kind::Enum(_) => return None,
    })
}

fn real_oneof(f: &FieldDescriptor) -> Option<String> {
    f.containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.name().to_string())
}

struct Cmp<'a> {
    w_pkg: &'a str,
    r_pkg: &'a str,
    errs: Vec<String>,
}

impl Cmp<'_> {
    fn named(&self, wk: &Kind, rk: &Kind) -> bool {
        let (wn, rn) = match (wk, rk) {
            (Kind::Message(a), Kind::Message(b)) => {
                (a.full_name().to_string(), b.full_name().to_string())
            }
            (Kind::Enum(a), Kind::Enum(b)) => {
                (a.full_name().to_string(), b.full_name().to_string())
            }
            _ => return false,
        };
        rel_name(&wn, self.w_pkg) == rel_name(&rn, self.r_pkg)
    }

    fn kinds(&mut self, wk: &Kind, rk: &Kind, path: &str) {
        match (scalar_group(wk), scalar_group(rk)) {
            (Some(a), Some(b)) => {
                if a != b {
                    self.errs.push(diff(
                        "FIELD_SCALAR_KIND_CHANGED",
                        path,
                        "The kind of a SCALAR field in the new schema does not match its kind in the old schema",
                    ));
                }
            }
            (None, None) => {
                let same_kind = matches!(
                    (wk, rk),
                    (Kind::Message(_), Kind::Message(_)) | (Kind::Enum(_), Kind::Enum(_))
                );
                if !same_kind {
                    self.errs.push(diff(
                        "FIELD_KIND_CHANGED",
                        path,
                        "The kind of a field changed",
                    ));
                } else if !self.named(wk, rk) {
                    self.errs.push(diff(
                        "FIELD_NAMED_TYPE_CHANGED",
                        path,
                        "The type of a MESSAGE or ENUM field in the new schema does not match its type in the old schema",
                    ));
                }
            }
            _ => self.errs.push(diff(
                "FIELD_KIND_CHANGED",
                path,
                "The kind of a field changed",
            )),
        }
    }

    fn field(&mut self, w: &FieldDescriptor, r: &FieldDescriptor, path: &str) {
        match (w.is_map(), r.is_map()) {
            (true, true) => {
                if let (Kind::Message(wm), Kind::Message(rm)) = (w.kind(), r.kind()) {
                    self.kinds(
                        &wm.map_entry_key_field().kind(),
                        &rm.map_entry_key_field().kind(),
                        path,
                    );
                    self.kinds(
                        &wm.map_entry_value_field().kind(),
                        &rm.map_entry_value_field().kind(),
                        path,
                    );
                }
                return;
            }
            (false, false) => {}
            _ => {
                self.errs.push(diff(
                    "FIELD_KIND_CHANGED",
                    path,
                    "A field changed between map and non-map",
                ));
                return;
            }
        }
        let (wk, rk) = (w.kind(), r.kind());
        let before = self.errs.len();
        self.kinds(&wk, &rk, path);
        if self.errs.len() == before
            && w.is_list() != r.is_list()
            && matches!(wk, Kind::String | Kind::Bytes)
        {
            self.errs.push(diff(
                "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
                path,
                "The label of a string or bytes field changed between repeated and singular",
            ));
        }
    }

    fn message(&mut self, w: &MessageDescriptor, r: &MessageDescriptor) {
        let base = format!("#/{}", rel_name(w.full_name(), self.w_pkg));
        let r_oneofs: Vec<String> = r
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_string())
            .collect();
        let w_oneofs: Vec<String> = w
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| o.name().to_string())
            .collect();
        for wf in w.fields() {
            let path = format!("{base}/{}", wf.number());
            match r.get_field(wf.number()) {
                None => {
                    if wf.cardinality() == Cardinality::Required {
                        self.errs.push(diff(
                            "REQUIRED_FIELD_REMOVED",
                            &path,
                            "A required field was removed",
                        ));
                    }
                    if let Some(o) = real_oneof(&wf) {
                        if r_oneofs.contains(&o) {
                            self.errs.push(diff(
                                "ONEOF_FIELD_REMOVED",
                                &path,
                                "A field was removed from a oneof",
                            ));
                        }
                    }
                }
                Some(rf) => {
                    self.field(&wf, &rf, &path);
                    if let (Some(o), None) = (real_oneof(&wf), real_oneof(&rf)) {
                        if r_oneofs.contains(&o) {
                            self.errs.push(diff(
                                "ONEOF_FIELD_REMOVED",
                                &path,
                                "A field was moved out of a oneof",
                            ));
                        }
                    }
                }
            }
        }
        for rf in r.fields() {
            if w.get_field(rf.number()).is_none() && rf.cardinality() == Cardinality::Required {
                let path = format!("{base}/{}", rf.number());
                self.errs.push(diff(
                    "REQUIRED_FIELD_ADDED",
                    &path,
                    "A required field was added",
                ));
            }
        }
        for o in r.oneofs().filter(|o| !o.is_synthetic()) {
            let moved = o
                .fields()
                .filter(|rf| {
                    w.get_field(rf.number())
                        .is_some_and(|wf| real_oneof(&wf).is_none())
                })
                .count();
            let path = format!("{base}/{}", o.name());
            if moved > 1 {
                self.errs.push(diff(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    &path,
                    "Multiple fields were moved into a oneof",
                ));
            } else if moved == 1 && w_oneofs.iter().any(|n| n == o.name()) {
                self.errs.push(diff(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    &path,
                    "A field was moved into an existing oneof",
                ));
            }
        }
    }
}

/// Can `reader` read everything written with `writer`? Returns the
/// incompatible differences (empty = compatible).
pub fn can_read(reader: &ProtoSchema, writer: &ProtoSchema) -> Vec<String> {
    let w_pkg = writer.file.package_name();
    let r_pkg = reader.file.package_name();
    let mut c = Cmp {
        w_pkg,
        r_pkg,
        errs: Vec::new(),
    };
    if w_pkg != r_pkg {
        c.errs
            .push(diff("PACKAGE_CHANGED", "#/", "The package changed"));
    }
    let readers: HashMap<String, MessageDescriptor> = all_messages(&reader.file)
        .into_iter()
        .map(|m| (rel_name(m.full_name(), r_pkg).to_string(), m))
        .collect();
    for w in all_messages(&writer.file) {
        let name = rel_name(w.full_name(), w_pkg).to_string();
        match readers.get(&name) {
            None => c.errs.push(diff(
                "MESSAGE_REMOVED",
                &format!("#/{name}"),
                "A message in the old schema is missing in the new schema",
            )),
            Some(r) => c.message(&w, r),
        }
    }
    c.errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> ProtoSchema {
        parse(t, &[]).unwrap()
    }

    fn compatible(reader: &str, writer: &str) -> bool {
        let errs = can_read(&p(reader), &p(writer));
        errs.is_empty()
    }

    const V1: &str =
        "syntax = \"proto3\"; package ex; message U { int32 id = 1; string name = 2; }";

    #[test]
    fn text_and_descriptor_forms_share_a_canonical_form() {
        let a = p(V1);
        let b = p(&a.serialized);
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.record_name.as_deref(), Some("ex.U"));
    }

    #[test]
    fn descriptors_render_back_to_proto_text() {
        let src = "syntax = \"proto3\";\npackage ex.v1;\nimport \"google/protobuf/timestamp.proto\";\noption go_package = \"ex/v1\";\n\
            message Order {\n  int64 id = 1;\n  optional string note = 2;\n  map<string, int32> qty = 3;\n  repeated Line lines = 4;\n\
            oneof pay { string card = 5; bytes token = 6; }\n  google.protobuf.Timestamp at = 7;\n  Status status = 8;\n\
            message Line { string sku = 1; }\n  enum Status { NEW = 0; DONE = 1; }\n  reserved 10 to 12;\n  reserved \"old\";\n}\n\
            service Orders { rpc Get (Order) returns (stream Order); }\n";
        let a = p(src);
        let b = p(&a.serialized);
        let text = b.rendered.clone().expect("rendered");
        assert!(text.contains("map<string, int32> qty = 3;"), "{text}");
        assert_eq!(p(&text).canonical, a.canonical);
        let p2 = p("syntax = \"proto2\"; message M { required int32 a = 1 [default = 4]; optional string s = 2 [default = \"x\\\"y\"]; }");
        let r = p(&p2.serialized).rendered.expect("proto2 rendered");
        assert_eq!(p(&r).canonical, p2.canonical, "{r}");
    }

    #[test]
    fn field_rules() {
        let removed = "syntax = \"proto3\"; package ex; message U { int32 id = 1; }";
        let retyped =
            "syntax = \"proto3\"; package ex; message U { int32 id = 1; double name = 2; }";
        let widened =
            "syntax = \"proto3\"; package ex; message U { int64 id = 1; bytes name = 2; }";
        let renamed =
            "syntax = \"proto3\"; package ex; message U { int32 ident = 1; string title = 2; }";
        assert!(compatible(removed, V1));
        assert!(compatible(V1, removed));
        assert!(!compatible(retyped, V1));
        assert!(compatible(widened, V1));
        assert!(compatible(renamed, V1));
        let other_pkg =
            "syntax = \"proto3\"; package ex2; message U { int32 id = 1; string name = 2; }";
        assert!(!compatible(other_pkg, V1));
        let no_msg = "syntax = \"proto3\"; package ex; message V { int32 id = 1; }";
        assert!(!compatible(no_msg, V1));
    }

    #[test]
    fn required_and_oneof_rules() {
        let a = "syntax = \"proto2\"; message M { optional int32 a = 1; }";
        let b = "syntax = \"proto2\"; message M { optional int32 a = 1; required int32 b = 2; }";
        assert!(!compatible(b, a));
        assert!(!compatible(a, b));
        let plain = "syntax = \"proto3\"; message M { int32 a = 1; int32 b = 2; }";
        let oneof = "syntax = \"proto3\"; message M { oneof x { int32 a = 1; int32 b = 2; } }";
        assert!(!compatible(oneof, plain));
        let one = "syntax = \"proto3\"; message M { oneof x { int32 a = 1; } }";
        let one_less = "syntax = \"proto3\"; message M { oneof x { int32 a = 1; } int32 c = 3; }";
        assert!(compatible(one_less, one));
    }

    #[test]
    fn payload_validation_with_message_indexes() {
        let s = p("syntax = \"proto3\"; message A { int32 x = 1; message N { string s = 1; } } message B { string y = 1; }");
        // [0] shortcut + field 1 varint 5
        assert!(s.validate(&[0, 0x08, 0x05]).is_ok());
        // indexes [1] (count 1 -> zigzag 2, index 1 -> 2): message B, field 1 string "a"
        assert!(s.validate(&[2, 2, 0x0a, 0x01, b'a']).is_ok());
        // nested A.N: count 2 -> 4, indexes 0,0
        assert!(s.validate(&[4, 0, 0, 0x0a, 0x01, b'a']).is_ok());
        // index out of range
        assert!(s.validate(&[2, 8, 0x08, 0x05]).is_err());
        // truncated length-delimited field
        assert!(s.validate(&[2, 2, 0x0a, 0x05, b'a']).is_err());
    }

    #[test]
    fn references_by_import_path() {
        let dep = "syntax = \"proto3\"; package c; message Addr { string city = 1; }";
        let s = parse(
            "syntax = \"proto3\"; import \"addr.proto\"; import \"google/protobuf/timestamp.proto\"; message P { c.Addr a = 1; google.protobuf.Timestamp t = 2; }",
            &[("addr.proto", dep)],
        )
        .unwrap();
        assert_eq!(s.record_name.as_deref(), Some("P"));
        assert!(parse(
            "syntax = \"proto3\"; import \"missing.proto\"; message P {}",
            &[]
        )
        .is_err());
    }
}
