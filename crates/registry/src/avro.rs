//! Avro: parsing and canonical form with `apache-avro`, compatibility with
//! its `SchemaCompatibility` checker (schema resolution rules of the Avro
//! spec), and a produce-path validator that walks Avro binary against a
//! compiled plan of the schema without building values (no allocation on
//! the happy path).

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use crate::error::RegistryError;

/// A parsed Avro schema with what the registry needs from it.
pub struct AvroSchema {
    /// The schema as parsed (references stay `Ref`s to the dependencies).
    pub schema: Schema,
    /// The schema with its references inlined, for compatibility checks.
    pub full: Schema,
    /// Canonical form: compact JSON of the parsed schema (keeps `default`,
    /// `doc`, `aliases`, so it is not the fingerprint-only Parsing
    /// Canonical Form, which would merge schemas whose defaults differ).
    pub canonical: String,
    /// Full name of the root named type (RecordNameStrategy).
    pub record_name: Option<String>,
    pub plan: Plan,
}

/// Parses `text` with the already-flattened dependency texts (dependencies
/// before dependents).
pub fn parse(text: &str, deps: &[&str]) -> Result<AvroSchema, RegistryError> {
    let invalid =
        |e: apache_avro::Error| RegistryError::InvalidSchema(format!("Invalid Avro schema: {e}"));
    let (schema, schemata) = if deps.is_empty() {
        (Schema::parse_str(text).map_err(invalid)?, Vec::new())
    } else {
        Schema::parse_str_with_list(text, deps.iter().copied()).map_err(invalid)?
    };
    let canonical = serde_json::to_string(&schema)
        .map_err(|e| RegistryError::InvalidSchema(format!("Invalid Avro schema: {e}")))?;
    let mut full = schema.clone();
    if !schemata.is_empty() {
        full.denormalize(&schemata).map_err(invalid)?;
    }
    let record_name = schema.name().map(|n| n.fullname(None));
    let plan = Plan::build(&schema, &schemata)?;
    Ok(AvroSchema {
        schema,
        full,
        canonical,
        record_name,
        plan,
    })
}

/// Can `reader` read everything written with `writer`? Returns the reasons
/// it cannot (empty = compatible). Partial compatibility (a writer enum
/// symbol or union branch the reader lacks) counts as incompatible, as in
/// Confluent's checker.
pub fn can_read(reader: &AvroSchema, writer: &AvroSchema) -> Vec<String> {
    match SchemaCompatibility::can_read(&writer.full, &reader.full) {
        Ok(Compatibility::Full) => Vec::new(),
        Ok(Compatibility::Partial) => vec![
            "{errorType:'PARTIAL_COMPATIBILITY', description:'The reader schema lacks an enum symbol or a union branch the writer schema can produce'}"
                .to_string(),
        ],
        Err(e) => {
            // Some errors print whole schemas; keep the message readable.
            let mut d = e.to_string();
            if d.len() > 600 {
                let cut = (0..=600).rev().find(|i| d.is_char_boundary(*i)).unwrap_or(0);
                d.truncate(cut);
                d.push_str("...");
            }
            vec![format!("{{errorType:'READER_CANNOT_READ_WRITER', description:'{d}'}}")]
        }
    }
}

// ---------------------------------------------------------------------------
// Binary validation plan
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Fixed(usize),
    Enum(usize),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<usize>),
    /// Placeholder while a named type is being built.
    Pending,
}

/// A flat, index-linked copy of a schema for fast binary validation.
#[derive(Debug, Clone)]
pub struct Plan {
    nodes: Vec<Node>,
    /// Nodes that consume no bytes (null, fixed(0), records of such).
    zero_width: Vec<bool>,
    root: usize,
}

/// Deepest nesting a payload may reach (recursive schemas).
const MAX_DEPTH: u32 = 256;

struct Builder {
    nodes: Vec<Node>,
    names: HashMap<Name, usize>,
}

impl Builder {
    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn named(&mut self, name: &Name) -> Option<usize> {
        self.names.get(name).copied()
    }

    fn build(&mut self, s: &Schema) -> Result<usize, RegistryError> {
        let idx = match s {
            Schema::Null => self.push(Node::Null),
            Schema::Boolean => self.push(Node::Boolean),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.push(Node::Int),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.push(Node::Long),
            Schema::Float => self.push(Node::Float),
            Schema::Double => self.push(Node::Double),
            Schema::Bytes | Schema::BigDecimal => self.push(Node::Bytes),
            Schema::String => self.push(Node::Str),
            Schema::Uuid(UuidSchema::String) => self.push(Node::Str),
            Schema::Uuid(UuidSchema::Bytes) => self.push(Node::Bytes),
            Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Fixed(f) | Schema::Duration(f) => {
                if let Some(i) = self.named(&f.name) {
                    return Ok(i);
                }
                let i = self.push(Node::Fixed(f.size));
                self.names.insert(f.name.clone(), i);
                i
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.push(Node::Bytes),
                InnerDecimalSchema::Fixed(f) => {
                    if let Some(i) = self.named(&f.name) {
                        return Ok(i);
                    }
                    let i = self.push(Node::Fixed(f.size));
                    self.names.insert(f.name.clone(), i);
                    i
                }
            },
            Schema::Enum(e) => {
                if let Some(i) = self.named(&e.name) {
                    return Ok(i);
                }
                let i = self.push(Node::Enum(e.symbols.len()));
                self.names.insert(e.name.clone(), i);
                i
            }
            Schema::Array(a) => {
                let i = self.push(Node::Pending);
                let item = self.build(&a.items)?;
                self.nodes[i] = Node::Array(item);
                i
            }
            Schema::Map(m) => {
                let i = self.push(Node::Pending);
                let v = self.build(&m.types)?;
                self.nodes[i] = Node::Map(v);
                i
            }
            Schema::Union(u) => {
                let i = self.push(Node::Pending);
                let mut branches = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    branches.push(self.build(v)?);
                }
                self.nodes[i] = Node::Union(branches);
                i
            }
            Schema::Record(r) => {
                if let Some(i) = self.named(&r.name) {
                    return Ok(i);
                }
                let i = self.push(Node::Pending);
                self.names.insert(r.name.clone(), i);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    fields.push(self.build(&f.schema)?);
                }
                self.nodes[i] = Node::Record(fields);
                i
            }
            Schema::Ref { name } => self.named(name).ok_or_else(|| {
                RegistryError::InvalidSchema(format!(
                    "Invalid Avro schema: unresolved reference to '{}'",
                    name.fullname(None)
                ))
            })?,
        };
        Ok(idx)
    }
}

impl Plan {
    fn build(root: &Schema, deps: &[Schema]) -> Result<Plan, RegistryError> {
        let mut b = Builder {
            nodes: Vec::new(),
            names: HashMap::new(),
        };
        for d in deps {
            b.build(d)?;
        }
        let root = b.build(root)?;
        let nodes = b.nodes;
        // Fixpoint: a node is zero-width when it reads no bytes at all.
        let mut zero = vec![false; nodes.len()];
        loop {
            let mut changed = false;
            for (i, n) in nodes.iter().enumerate() {
                if zero[i] {
                    continue;
                }
                let z = match n {
                    Node::Null => true,
                    Node::Fixed(0) => true,
                    Node::Record(fs) => fs.iter().all(|f| zero[*f]),
                    _ => false,
                };
                if z {
                    zero[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(Plan {
            nodes,
            zero_width: zero,
            root,
        })
    }

    /// Checks that `data` is exactly one Avro binary datum of this schema.
    pub fn validate(&self, data: &[u8]) -> Result<(), String> {
        let mut buf = data;
        let r = self.skip(self.root, &mut buf, 0);
        let at = data.len() - buf.len();
        match r {
            Err(msg) => Err(format!("{msg} (at byte {at} of {})", data.len())),
            Ok(()) if !buf.is_empty() => Err(format!(
                "{} trailing bytes after the Avro datum (at byte {at})",
                buf.len()
            )),
            Ok(()) => Ok(()),
        }
    }

    // The walk reports static reasons (cheap to return on the hot path);
    // `validate` adds the position.
    fn skip(&self, idx: usize, buf: &mut &[u8], depth: u32) -> Result<(), &'static str> {
        if depth > MAX_DEPTH {
            return Err("datum nested too deeply");
        }
        match &self.nodes[idx] {
            Node::Null => Ok(()),
            Node::Boolean => match take(buf, 1)? {
                [0] | [1] => Ok(()),
                _ => Err("invalid boolean byte"),
            },
            Node::Int => {
                let v = read_long(buf)?;
                if i32::try_from(v).is_err() {
                    return Err("int out of range");
                }
                Ok(())
            }
            Node::Long => read_long(buf).map(|_| ()),
            Node::Float => take(buf, 4).map(|_| ()),
            Node::Double => take(buf, 8).map(|_| ()),
            Node::Bytes => {
                let n = read_len(buf)?;
                take(buf, n).map(|_| ())
            }
            Node::Str => {
                let n = read_len(buf)?;
                let s = take(buf, n)?;
                std::str::from_utf8(s)
                    .map(|_| ())
                    .map_err(|_| "string is not valid UTF-8")
            }
            Node::Fixed(n) => take(buf, *n).map(|_| ()),
            Node::Enum(n) => {
                let v = read_long(buf)?;
                if v < 0 || v as u64 >= *n as u64 {
                    return Err("enum index out of range");
                }
                Ok(())
            }
            Node::Union(branches) => {
                let v = read_long(buf)?;
                if v < 0 || v as u64 >= branches.len() as u64 {
                    return Err("union branch index out of range");
                }
                self.skip(branches[v as usize], buf, depth + 1)
            }
            Node::Record(fields) => {
                for f in fields {
                    self.skip(*f, buf, depth + 1)?;
                }
                Ok(())
            }
            Node::Array(item) => self.skip_blocks(*item, false, buf, depth),
            Node::Map(value) => self.skip_blocks(*value, true, buf, depth),
            Node::Pending => Err("internal: unresolved schema node"),
        }
    }

    fn skip_blocks(
        &self,
        item: usize,
        map: bool,
        buf: &mut &[u8],
        depth: u32,
    ) -> Result<(), &'static str> {
        loop {
            let mut count = read_long(buf)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or("invalid block count")?;
                let size = read_len(buf)?;
                if size > buf.len() {
                    return Err("block size beyond the end of the datum");
                }
            }
            // An item that reads no bytes cannot fail; a map entry always
            // reads at least its key length.
            if !map && self.zero_width[item] {
                continue;
            }
            // Each item consumes at least one byte, so the count is bounded
            // by what is left.
            if count as u64 > buf.len() as u64 {
                return Err("block has more items than bytes left");
            }
            for _ in 0..count {
                if map {
                    let n = read_len(buf)?;
                    let k = take(buf, n)?;
                    if std::str::from_utf8(k).is_err() {
                        return Err("map key is not valid UTF-8");
                    }
                }
                self.skip(item, buf, depth + 1)?;
            }
        }
    }
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if buf.len() < n {
        return Err("unexpected end of datum");
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

/// Zigzag varint (Avro int/long).
#[inline]
fn read_long(buf: &mut &[u8]) -> Result<i64, &'static str> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some((&b, rest)) = buf.split_first() else {
            return Err("unexpected end of datum in a varint");
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("varint longer than 10 bytes");
        }
    }
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

#[inline]
fn read_len(buf: &mut &[u8]) -> Result<usize, &'static str> {
    let n = read_long(buf)?;
    if n < 0 {
        return Err("negative length");
    }
    usize::try_from(n).map_err(|_| "length too large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    const USER: &str = r#"{"type":"record","name":"User","namespace":"ex","fields":[
        {"name":"id","type":"long"},
        {"name":"name","type":"string"},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"int"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
        {"name":"score","type":["null","double"],"default":null},
        {"name":"hash","type":{"type":"fixed","name":"H","size":4}},
        {"name":"ok","type":"boolean"},
        {"name":"f","type":"float"},
        {"name":"b","type":"bytes"}
    ]}"#;

    fn user_value() -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(-42)),
            ("name".into(), Value::String("ann".into())),
            (
                "tags".into(),
                Value::Array(vec![Value::String("x".into()), Value::String("y".into())]),
            ),
            (
                "attrs".into(),
                Value::Map([("k".to_string(), Value::Int(7))].into_iter().collect()),
            ),
            ("kind".into(), Value::Enum(1, "B".into())),
            (
                "score".into(),
                Value::Union(1, Box::new(Value::Double(0.5))),
            ),
            ("hash".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
            ("ok".into(), Value::Boolean(true)),
            ("f".into(), Value::Float(1.5)),
            ("b".into(), Value::Bytes(vec![9, 9])),
        ])
    }

    #[test]
    fn plan_accepts_library_encoded_datum_and_rejects_damage() {
        let s = parse(USER, &[]).unwrap();
        assert_eq!(s.record_name.as_deref(), Some("ex.User"));
        #[allow(deprecated)]
        let bytes = apache_avro::to_avro_datum(&s.schema, user_value()).unwrap();
        s.plan.validate(&bytes).unwrap();
        // Every strict prefix is truncated.
        for n in 0..bytes.len() {
            assert!(s.plan.validate(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(s.plan.validate(&extra).is_err());
    }

    #[test]
    fn bad_enum_and_union_indexes_are_refused() {
        let s = parse(r#"["null","string"]"#, &[]).unwrap();
        assert!(s.plan.validate(&[0]).is_ok());
        assert!(s.plan.validate(&[4]).is_err()); // branch 2
        let e = parse(r#"{"type":"enum","name":"E","symbols":["A"]}"#, &[]).unwrap();
        assert!(e.plan.validate(&[0]).is_ok());
        assert!(e.plan.validate(&[2]).is_err());
    }

    #[test]
    fn huge_block_counts_do_not_hang() {
        let s = parse(r#"{"type":"array","items":"null"}"#, &[]).unwrap();
        // count = i64::MAX/2-ish of nulls then end: valid and instant.
        let mut data = vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        data.push(0);
        s.plan.validate(&data).unwrap();
        let l = parse(r#"{"type":"array","items":"long"}"#, &[]).unwrap();
        assert!(l.plan.validate(&data).is_err());
    }

    #[test]
    fn recursive_schema_depth_is_bounded() {
        let s = parse(
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
            &[],
        )
        .unwrap();
        assert!(s.plan.validate(&[2, 2, 0]).is_ok());
        let deep = vec![2u8; 10_000];
        assert!(s.plan.validate(&deep).is_err());
    }

    #[test]
    fn references_resolve() {
        let dep = r#"{"type":"record","name":"Addr","namespace":"ex","fields":[{"name":"city","type":"string"}]}"#;
        let s = parse(
            r#"{"type":"record","name":"P","namespace":"ex","fields":[{"name":"a","type":"ex.Addr"}]}"#,
            &[dep],
        )
        .unwrap();
        assert!(s.plan.validate(&[2, b'x']).is_ok());
        assert!(s.canonical.contains("ex.Addr"));
    }
}
