//! Renders a `FileDescriptorProto` back to `.proto` source, so schemas the
//! Python serializer registers as base64 descriptors are stored and served
//! as text like Confluent does. Covers proto2/proto3 messages, fields
//! (labels, maps, oneofs, proto3 `optional`, proto2 defaults), nested
//! types, enums, reserved ranges/names, services and the common file
//! options; anything else (extensions, groups, editions syntax) yields `None` and
//! the caller keeps the descriptor form. The caller checks that the text
//! compiles back to the same descriptor.

use std::fmt::Write;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    ServiceDescriptorProto,
};

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar(t: Type) -> Option<&'static str> {
    Some(match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

fn type_name(f: &FieldDescriptorProto) -> Option<String> {
    let t = f.r#type();
    match scalar(t) {
        Some(s) => Some(s.to_string()),
        None if t == Type::Group => None,
        None => f.type_name.clone(),
    }
}

fn ranges(rs: impl Iterator<Item = (i32, i32)>) -> String {
    rs.map(|(a, b)| {
        if a == b {
            a.to_string()
        } else if b >= 536_870_911 {
            format!("{a} to max")
        } else {
            format!("{a} to {b}")
        }
    })
    .collect::<Vec<_>>()
    .join(", ")
}

struct R {
    out: String,
    proto3: bool,
}

impl R {
    fn line(&mut self, depth: usize, s: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn field(
        &mut self,
        depth: usize,
        f: &FieldDescriptorProto,
        m: &DescriptorProto,
        in_oneof: bool,
    ) -> Option<()> {
        if f.extendee.is_some() {
            return None;
        }
        let name = f.name.as_deref()?;
        let number = f.number?;
        // map<K, V>: a repeated field of a nested map-entry message.
        if f.label() == Label::Repeated && f.r#type() == Type::Message {
            let entry_name = f.type_name.as_deref()?.rsplit('.').next()?;
            if let Some(entry) = m.nested_type.iter().find(|n| {
                n.name.as_deref() == Some(entry_name)
                    && n.options.as_ref().and_then(|o| o.map_entry) == Some(true)
            }) {
                let k = entry.field.iter().find(|x| x.number == Some(1))?;
                let v = entry.field.iter().find(|x| x.number == Some(2))?;
                self.line(
                    depth,
                    &format!(
                        "map<{}, {}> {name} = {number};",
                        type_name(k)?,
                        type_name(v)?
                    ),
                );
                return Some(());
            }
        }
        let label = match f.label() {
            Label::Repeated => "repeated ",
            Label::Required => "required ",
            Label::Optional if in_oneof => "",
            Label::Optional if self.proto3 => {
                if f.proto3_optional == Some(true) {
                    "optional "
                } else {
                    ""
                }
            }
            Label::Optional => "optional ",
        };
        let mut opts = Vec::new();
        if let Some(d) = &f.default_value {
            let v = match f.r#type() {
                Type::String | Type::Bytes => quote(d),
                _ => d.clone(),
            };
            opts.push(format!("default = {v}"));
        }
        if let Some(p) = f.options.as_ref().and_then(|o| o.packed) {
            opts.push(format!("packed = {p}"));
        }
        if f.options.as_ref().and_then(|o| o.deprecated) == Some(true) {
            opts.push("deprecated = true".into());
        }
        let opts = if opts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", opts.join(", "))
        };
        self.line(
            depth,
            &format!("{label}{} {name} = {number}{opts};", type_name(f)?),
        );
        Some(())
    }

    fn message(&mut self, depth: usize, m: &DescriptorProto) -> Option<()> {
        if !m.extension.is_empty() {
            return None;
        }
        self.line(depth, &format!("message {} {{", m.name.as_deref()?));
        let inner = depth + 1;
        if m.options.as_ref().and_then(|o| o.deprecated) == Some(true) {
            self.line(inner, "option deprecated = true;");
        }
        let real_oneof =
            |f: &FieldDescriptorProto| f.oneof_index.is_some() && f.proto3_optional != Some(true);
        let mut printed_oneofs = Vec::new();
        for f in &m.field {
            if real_oneof(f) {
                let idx = f.oneof_index? as usize;
                if printed_oneofs.contains(&idx) {
                    continue;
                }
                printed_oneofs.push(idx);
                let o = m.oneof_decl.get(idx)?;
                self.line(inner, &format!("oneof {} {{", o.name.as_deref()?));
                for g in m
                    .field
                    .iter()
                    .filter(|g| real_oneof(g) && g.oneof_index == Some(idx as i32))
                {
                    self.field(inner + 1, g, m, true)?;
                }
                self.line(inner, "}");
            } else {
                self.field(inner, f, m, false)?;
            }
        }
        for n in &m.nested_type {
            if n.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
                continue;
            }
            self.message(inner, n)?;
        }
        for e in &m.enum_type {
            self.enumeration(inner, e)?;
        }
        if !m.extension_range.is_empty() {
            let r = ranges(
                m.extension_range
                    .iter()
                    .map(|r| (r.start.unwrap_or(0), r.end.unwrap_or(0) - 1)),
            );
            self.line(inner, &format!("extensions {r};"));
        }
        if !m.reserved_range.is_empty() {
            let r = ranges(
                m.reserved_range
                    .iter()
                    .map(|r| (r.start.unwrap_or(0), r.end.unwrap_or(0) - 1)),
            );
            self.line(inner, &format!("reserved {r};"));
        }
        if !m.reserved_name.is_empty() {
            let names: Vec<String> = m.reserved_name.iter().map(|n| quote(n)).collect();
            self.line(inner, &format!("reserved {};", names.join(", ")));
        }
        self.line(depth, "}");
        Some(())
    }

    fn enumeration(&mut self, depth: usize, e: &EnumDescriptorProto) -> Option<()> {
        self.line(depth, &format!("enum {} {{", e.name.as_deref()?));
        if e.options.as_ref().and_then(|o| o.allow_alias) == Some(true) {
            self.line(depth + 1, "option allow_alias = true;");
        }
        for v in &e.value {
            self.line(
                depth + 1,
                &format!("{} = {};", v.name.as_deref()?, v.number?),
            );
        }
        if !e.reserved_range.is_empty() {
            let r = ranges(
                e.reserved_range
                    .iter()
                    .map(|r| (r.start.unwrap_or(0), r.end.unwrap_or(0))),
            );
            self.line(depth + 1, &format!("reserved {r};"));
        }
        if !e.reserved_name.is_empty() {
            let names: Vec<String> = e.reserved_name.iter().map(|n| quote(n)).collect();
            self.line(depth + 1, &format!("reserved {};", names.join(", ")));
        }
        self.line(depth, "}");
        Some(())
    }

    fn service(&mut self, s: &ServiceDescriptorProto) -> Option<()> {
        self.line(0, &format!("service {} {{", s.name.as_deref()?));
        for m in &s.method {
            let cs = if m.client_streaming == Some(true) {
                "stream "
            } else {
                ""
            };
            let ss = if m.server_streaming == Some(true) {
                "stream "
            } else {
                ""
            };
            self.line(
                1,
                &format!(
                    "rpc {} ({cs}{}) returns ({ss}{});",
                    m.name.as_deref()?,
                    m.input_type.as_deref()?,
                    m.output_type.as_deref()?
                ),
            );
        }
        self.line(0, "}");
        Some(())
    }
}

/// `.proto` source for a file descriptor, or `None` when it uses something
/// this renderer does not cover.
pub fn render(fdp: &FileDescriptorProto) -> Option<String> {
    if !fdp.extension.is_empty() {
        return None;
    }
    let syntax = fdp.syntax.as_deref().unwrap_or("proto2");
    if syntax != "proto2" && syntax != "proto3" {
        return None;
    }
    let mut r = R {
        out: String::new(),
        proto3: syntax == "proto3",
    };
    r.line(0, &format!("syntax = {};", quote(syntax)));
    if let Some(p) = fdp.package.as_deref().filter(|p| !p.is_empty()) {
        r.line(0, &format!("package {p};"));
    }
    for (i, d) in fdp.dependency.iter().enumerate() {
        let public = if fdp.public_dependency.contains(&(i as i32)) {
            "public "
        } else {
            ""
        };
        r.line(0, &format!("import {public}{};", quote(d)));
    }
    if let Some(o) = &fdp.options {
        let strings = [
            ("java_package", &o.java_package),
            ("java_outer_classname", &o.java_outer_classname),
            ("go_package", &o.go_package),
            ("csharp_namespace", &o.csharp_namespace),
            ("objc_class_prefix", &o.objc_class_prefix),
            ("php_namespace", &o.php_namespace),
            ("ruby_package", &o.ruby_package),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                r.line(0, &format!("option {k} = {};", quote(v)));
            }
        }
        if let Some(b) = o.java_multiple_files {
            r.line(0, &format!("option java_multiple_files = {b};"));
        }
    }
    for m in &fdp.message_type {
        r.message(0, m)?;
    }
    for e in &fdp.enum_type {
        r.enumeration(0, e)?;
    }
    for s in &fdp.service {
        r.service(s)?;
    }
    Some(r.out)
}
