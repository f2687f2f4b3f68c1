//! JSON Schema: parsing and validation with the `jsonschema` crate (no
//! network resolution; references are served from the registry), and a
//! hand-written compatibility checker, since no Rust library implements
//! schema-to-schema compatibility. The checker follows the rules Confluent
//! documents for JSON Schema: the reader must accept every document the
//! writer accepts, with "content models" for objects (open: extra
//! properties allowed; closed: `additionalProperties: false`; partially
//! open: `additionalProperties` is a schema), widening of types
//! (`integer` -> `number`, more types in a list) and of constraints being
//! compatible, narrowing being incompatible, required properties added
//! without a default being incompatible, and combined schemas
//! (`anyOf`/`oneOf` may grow, `allOf` may shrink).

use std::collections::{BTreeSet, HashSet};

use jsonschema::{Draft, Retrieve, Uri};
use serde_json::{Map, Value};

use crate::error::RegistryError;

/// A parsed JSON Schema.
pub struct JsonSchema {
    pub value: Value,
    /// Compact JSON text of the schema.
    pub canonical: String,
    /// `title`, used as the record name by RecordNameStrategy.
    pub title: Option<String>,
    validator: jsonschema::Validator,
    /// Referenced schemas by reference name, for `$ref` resolution in
    /// compatibility checks.
    deps: Vec<(String, Value)>,
}

struct DepRetriever {
    deps: Vec<(String, Value)>,
}

fn ref_matches(uri: &str, name: &str) -> bool {
    let name = name.trim_start_matches("./");
    let uri = uri.split('#').next().unwrap_or(uri);
    uri == name
        || uri.ends_with(&format!("/{name}"))
        || name
            .split('#')
            .next()
            .is_some_and(|n| !n.is_empty() && uri.ends_with(n))
}

impl Retrieve for DepRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let u = uri.as_str();
        for (name, v) in &self.deps {
            if ref_matches(u, name) {
                return Ok(v.clone());
            }
        }
        Err(format!("reference {u} is not among the schema's references").into())
    }
}

/// Parses `text` with its (flattened) references `(name, text)`.
pub fn parse(text: &str, deps: &[(&str, &str)]) -> Result<JsonSchema, RegistryError> {
    let invalid = |m: String| RegistryError::InvalidSchema(format!("Invalid JSON schema: {m}"));
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() && !value.is_boolean() {
        return Err(invalid("a schema must be an object or a boolean".into()));
    }
    let mut dep_values = Vec::with_capacity(deps.len());
    for (name, t) in deps {
        let v: Value =
            serde_json::from_str(t).map_err(|e| invalid(format!("reference '{name}': {e}")))?;
        dep_values.push((name.to_string(), v));
    }
    let mut opts = jsonschema::options().with_retriever(DepRetriever {
        deps: dep_values.clone(),
    });
    if value.get("$schema").is_none() {
        // Confluent's default draft when the schema does not name one.
        opts = opts.with_draft(Draft::Draft7);
    }
    let validator = opts.build(&value).map_err(|e| invalid(e.to_string()))?;
    let canonical = serde_json::to_string(&value).map_err(|e| invalid(e.to_string()))?;
    let title = value
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(JsonSchema {
        value,
        canonical,
        title,
        validator,
        deps: dep_values,
    })
}

impl JsonSchema {
    /// Checks one JSON document (the payload after the wire-format header).
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let doc: Value =
            serde_json::from_slice(payload).map_err(|e| format!("not valid JSON: {e}"))?;
        self.validator
            .validate(&doc)
            .map_err(|e| format!("{e} at '{}'", e.instance_path()))
    }
}

/// Can `reader` read everything `writer` accepts? Returns the incompatible
/// differences (empty = compatible).
pub fn can_read(reader: &JsonSchema, writer: &JsonSchema) -> Vec<String> {
    let mut c = Checker {
        w_deps: &writer.deps,
        r_deps: &reader.deps,
        errs: Vec::new(),
        stack: HashSet::new(),
        budget: 200_000,
    };
    c.cmp(
        Side {
            node: &writer.value,
            root: &writer.value,
        },
        Side {
            node: &reader.value,
            root: &reader.value,
        },
        "#",
    );
    c.errs
}

#[derive(Clone, Copy)]
struct Side<'a> {
    node: &'a Value,
    root: &'a Value,
}

struct Checker<'a> {
    w_deps: &'a [(String, Value)],
    r_deps: &'a [(String, Value)],
    errs: Vec<String>,
    /// (writer node, reader node) pairs being compared: a cycle through
    /// recursive `$ref`s is assumed compatible.
    stack: HashSet<(usize, usize)>,
    budget: u32,
}

fn resolve<'a>(mut s: Side<'a>, deps: &'a [(String, Value)]) -> Side<'a> {
    for _ in 0..32 {
        let Some(r) = s.node.get("$ref").and_then(Value::as_str) else {
            return s;
        };
        let (base, frag) = match r.split_once('#') {
            Some((b, f)) => (b, f),
            None => (r, ""),
        };
        let root = if base.is_empty() {
            s.root
        } else if let Some((_, v)) = deps
            .iter()
            .find(|(n, _)| ref_matches(base, n) || ref_matches(n, base))
        {
            v
        } else {
            return s;
        };
        let target = if frag.is_empty() {
            Some(root)
        } else {
            root.pointer(frag)
        };
        match target {
            Some(t) => {
                s = Side { node: t, root };
            }
            None => return s,
        }
    }
    s
}

fn types(v: &Value) -> Option<BTreeSet<&str>> {
    match v.get("type")? {
        Value::String(s) => Some([s.as_str()].into_iter().collect()),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn is_empty_schema(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Object(m) => m.keys().all(|k| {
            matches!(
                k.as_str(),
                "title" | "description" | "default" | "$comment" | "examples" | "$id" | "$schema"
            )
        }),
        _ => false,
    }
}

fn combined(v: &Value) -> Option<(&'static str, &Vec<Value>)> {
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = v.get(k) {
            return Some((k, a));
        }
    }
    None
}

enum ContentModel<'a> {
    Open,
    Closed,
    Partial(&'a Value),
}

fn content_model<'a>(v: &'a Value, key: &str) -> ContentModel<'a> {
    match v.get(key) {
        None | Some(Value::Bool(true)) => ContentModel::Open,
        Some(Value::Bool(false)) => ContentModel::Closed,
        Some(s) if is_empty_schema(s) => ContentModel::Open,
        Some(s) => ContentModel::Partial(s),
    }
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

static NO_PROPS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Checker<'a> {
    fn err(&mut self, kind: &str, path: &str, what: &str) {
        self.errs.push(format!(
            "{{errorType:'{kind}', description:'{what} at path '{path}''}}"
        ));
    }

    /// Runs a comparison and reports whether it found nothing, without
    /// keeping its errors.
    fn trial(&mut self, w: Side<'a>, r: Side<'a>, path: &str) -> bool {
        let mark = self.errs.len();
        self.cmp(w, r, path);
        let ok = self.errs.len() == mark;
        self.errs.truncate(mark);
        ok
    }

    fn cmp(&mut self, w: Side<'a>, r: Side<'a>, path: &str) {
        if self.budget == 0 {
            self.err(
                "SCHEMA_TOO_COMPLEX",
                path,
                "The schemas are too large to compare",
            );
            return;
        }
        self.budget -= 1;
        let w = resolve(w, self.w_deps);
        let r = resolve(r, self.r_deps);
        let key = (
            w.node as *const Value as usize,
            r.node as *const Value as usize,
        );
        if !self.stack.insert(key) {
            return;
        }
        self.cmp_inner(w, r, path);
        self.stack.remove(&key);
    }

    fn cmp_inner(&mut self, w: Side<'a>, r: Side<'a>, path: &str) {
        // Boolean and empty schemas.
        if is_empty_schema(r.node) || matches!(w.node, Value::Bool(false)) {
            return;
        }
        if matches!(r.node, Value::Bool(false)) {
            self.err("TYPE_NARROWED", path, "The new schema accepts no value");
            return;
        }
        let w = if matches!(w.node, Value::Bool(true)) {
            Side {
                node: &EMPTY_OBJ,
                root: w.root,
            }
        } else {
            w
        };

        // Combined schemas.
        match (combined(w.node), combined(r.node)) {
            (None, Some((rk, rs))) => {
                if rs.len() == 1 {
                    return self.cmp(
                        w,
                        Side {
                            node: &rs[0],
                            root: r.root,
                        },
                        path,
                    );
                }
                if rk == "allOf" {
                    for (i, s) in rs.iter().enumerate() {
                        self.cmp(
                            w,
                            Side {
                                node: s,
                                root: r.root,
                            },
                            &format!("{path}/allOf/{i}"),
                        );
                    }
                    return;
                }
                let ok = rs.iter().any(|s| {
                    self.trial(
                        w,
                        Side {
                            node: s,
                            root: r.root,
                        },
                        path,
                    )
                });
                if !ok {
                    self.err(
                        "COMBINED_TYPE_CHANGED",
                        path,
                        "No branch of the new combined schema accepts the old schema",
                    );
                }
                return;
            }
            (Some((wk, ws)), None) => {
                if ws.len() == 1 {
                    return self.cmp(
                        Side {
                            node: &ws[0],
                            root: w.root,
                        },
                        r,
                        path,
                    );
                }
                if wk == "allOf" {
                    let ok = ws.iter().any(|s| {
                        self.trial(
                            Side {
                                node: s,
                                root: w.root,
                            },
                            r,
                            path,
                        )
                    });
                    if !ok {
                        self.err(
                            "COMBINED_TYPE_CHANGED",
                            path,
                            "The new schema does not accept the old combined schema",
                        );
                    }
                    return;
                }
                for (i, s) in ws.iter().enumerate() {
                    self.cmp(
                        Side {
                            node: s,
                            root: w.root,
                        },
                        r,
                        &format!("{path}/{wk}/{i}"),
                    );
                }
                return;
            }
            (Some((wk, ws)), Some((rk, rs))) => {
                let sum = |k: &str| k == "anyOf" || k == "oneOf";
                if wk != rk && !(wk == "oneOf" && rk == "anyOf") {
                    self.err(
                        "COMBINED_TYPE_CHANGED",
                        path,
                        "The kind of combined schema changed",
                    );
                    return;
                }
                if sum(wk) {
                    for (i, s) in ws.iter().enumerate() {
                        let ok = rs.iter().any(|t| {
                            self.trial(
                                Side {
                                    node: s,
                                    root: w.root,
                                },
                                Side {
                                    node: t,
                                    root: r.root,
                                },
                                path,
                            )
                        });
                        if !ok {
                            self.err(
                                "SUM_TYPE_NARROWED",
                                &format!("{path}/{wk}/{i}"),
                                "A branch of the old schema is not accepted by the new schema",
                            );
                        }
                    }
                } else {
                    for (j, t) in rs.iter().enumerate() {
                        let ok = ws.iter().any(|s| {
                            self.trial(
                                Side {
                                    node: s,
                                    root: w.root,
                                },
                                Side {
                                    node: t,
                                    root: r.root,
                                },
                                path,
                            )
                        });
                        if !ok {
                            self.err(
                                "PRODUCT_TYPE_EXTENDED",
                                &format!("{path}/allOf/{j}"),
                                "The new schema adds a constraint to allOf",
                            );
                        }
                    }
                }
                return;
            }
            (None, None) => {}
        }

        // Types.
        match (types(w.node), types(r.node)) {
            (_, None) => {}
            (None, Some(_)) => {
                if !w
                    .node
                    .as_object()
                    .is_some_and(|m| m.contains_key("enum") || m.contains_key("const"))
                {
                    self.err(
                        "TYPE_NARROWED",
                        path,
                        "The new schema restricts the type of a value the old schema left open",
                    );
                    return;
                }
            }
            (Some(wt), Some(rt)) => {
                let covered = |t: &str| rt.contains(t) || (t == "integer" && rt.contains("number"));
                if !wt.iter().all(|t| covered(t)) {
                    let kind = if wt.iter().any(|t| covered(t)) {
                        "TYPE_NARROWED"
                    } else {
                        "TYPE_CHANGED"
                    };
                    self.err(
                        kind,
                        path,
                        "The type in the new schema does not accept the type in the old schema",
                    );
                    return;
                }
            }
        }

        // Enumerations and constants.
        let values = |v: &'a Value| -> Option<Vec<&'a Value>> {
            if let Some(Value::Array(a)) = v.get("enum") {
                Some(a.iter().collect())
            } else {
                v.get("const").map(|c| vec![c])
            }
        };
        if let Some(rv) = values(r.node) {
            match values(w.node) {
                Some(wv) => {
                    if !wv.iter().all(|x| rv.contains(x)) {
                        self.err(
                            "ENUM_ARRAY_NARROWED",
                            path,
                            "The new schema's enum does not contain every old value",
                        );
                    }
                }
                None => self.err("ENUM_ARRAY_CHANGED", path, "The new schema adds an enum"),
            }
        }

        self.cmp_bounds(w.node, r.node, path);
        self.cmp_object(w, r, path);
        self.cmp_array(w, r, path);

        // `not`: what the new schema rejects must already be rejected.
        if let Some(rn) = r.node.get("not") {
            match w.node.get("not") {
                Some(wn) => {
                    if !self.trial(
                        Side {
                            node: rn,
                            root: r.root,
                        },
                        Side {
                            node: wn,
                            root: w.root,
                        },
                        path,
                    ) {
                        self.err(
                            "NOT_TYPE_EXTENDED",
                            &format!("{path}/not"),
                            "The new schema's 'not' rejects more values",
                        );
                    }
                }
                None => self.err(
                    "NOT_TYPE_EXTENDED",
                    &format!("{path}/not"),
                    "The new schema adds 'not'",
                ),
            }
        }
    }

    /// Numeric and length constraints: the new bound must be at least as
    /// loose as the old one.
    fn cmp_bounds(&mut self, w: &Value, r: &Value, path: &str) {
        // (keyword, new value must be >= old value, error type)
        const UPPER: [(&str, &str); 5] = [
            ("maxLength", "MAX_LENGTH_DECREASED"),
            ("maximum", "MAXIMUM_DECREASED"),
            ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM_DECREASED"),
            ("maxProperties", "MAX_PROPERTIES_DECREASED"),
            ("maxItems", "MAX_ITEMS_DECREASED"),
        ];
        const LOWER: [(&str, &str); 5] = [
            ("minLength", "MIN_LENGTH_INCREASED"),
            ("minimum", "MINIMUM_INCREASED"),
            ("exclusiveMinimum", "EXCLUSIVE_MINIMUM_INCREASED"),
            ("minProperties", "MIN_PROPERTIES_INCREASED"),
            ("minItems", "MIN_ITEMS_INCREASED"),
        ];
        for (k, kind) in UPPER {
            if let Some(rv) = num(r, k) {
                match num(w, k) {
                    Some(wv) if wv <= rv => {}
                    Some(_) => self.err(kind, path, &format!("'{k}' was lowered")),
                    None => self.err(
                        &kind.replace("DECREASED", "ADDED"),
                        path,
                        &format!("'{k}' was added"),
                    ),
                }
            }
        }
        for (k, kind) in LOWER {
            if let Some(rv) = num(r, k) {
                match num(w, k) {
                    Some(wv) if wv >= rv => {}
                    Some(_) => self.err(kind, path, &format!("'{k}' was raised")),
                    None => self.err(
                        &kind.replace("INCREASED", "ADDED"),
                        path,
                        &format!("'{k}' was added"),
                    ),
                }
            }
        }
        if let Some(rm) = num(r, "multipleOf") {
            match num(w, "multipleOf") {
                Some(wm) if rm != 0.0 && (wm / rm).fract() == 0.0 => {}
                Some(_) => self.err(
                    "MULTIPLE_OF_CHANGED",
                    path,
                    "'multipleOf' changed to a value that is not a divisor",
                ),
                None => self.err("MULTIPLE_OF_ADDED", path, "'multipleOf' was added"),
            }
        }
        if let Some(rp) = r.get("pattern") {
            if w.get("pattern") != Some(rp) {
                let kind = if w.get("pattern").is_some() {
                    "PATTERN_CHANGED"
                } else {
                    "PATTERN_ADDED"
                };
                self.err(kind, path, "'pattern' was added or changed");
            }
        }
        if r.get("uniqueItems") == Some(&Value::Bool(true))
            && w.get("uniqueItems") != Some(&Value::Bool(true))
        {
            self.err("UNIQUE_ITEMS_ADDED", path, "'uniqueItems' was added");
        }
    }

    fn cmp_object(&mut self, w: Side<'a>, r: Side<'a>, path: &str) {
        let wp = w.node.get("properties").and_then(Value::as_object);
        let rp = r.node.get("properties").and_then(Value::as_object);
        let wm = content_model(w.node, "additionalProperties");
        let rm = content_model(r.node, "additionalProperties");
        let has_object_keywords = wp.is_some()
            || rp.is_some()
            || r.node.get("additionalProperties").is_some()
            || r.node.get("required").is_some();
        if !has_object_keywords {
            return;
        }
        match (&wm, &rm) {
            (ContentModel::Open, ContentModel::Closed) => self.err(
                "ADDITIONAL_PROPERTIES_REMOVED",
                path,
                "The new schema closes the content model",
            ),
            (ContentModel::Open, ContentModel::Partial(_)) => self.err(
                "ADDITIONAL_PROPERTIES_NARROWED",
                path,
                "The new schema restricts additional properties",
            ),
            (ContentModel::Partial(a), ContentModel::Partial(b)) => self.cmp(
                Side {
                    node: a,
                    root: w.root,
                },
                Side {
                    node: b,
                    root: r.root,
                },
                &format!("{path}/additionalProperties"),
            ),
            (ContentModel::Partial(_), ContentModel::Closed) => self.err(
                "ADDITIONAL_PROPERTIES_REMOVED",
                path,
                "The new schema closes the content model",
            ),
            _ => {}
        }
        let wp = wp.unwrap_or(&NO_PROPS);
        let rp = rp.unwrap_or(&NO_PROPS);
        let names: BTreeSet<&String> = wp.keys().chain(rp.keys()).collect();
        for name in names {
            let p = format!("{path}/properties/{name}");
            match (wp.get(name), rp.get(name)) {
                (Some(ws), Some(rs)) => self.cmp(
                    Side {
                        node: ws,
                        root: w.root,
                    },
                    Side {
                        node: rs,
                        root: r.root,
                    },
                    &p,
                ),
                (None, Some(rs)) => match wm {
                    ContentModel::Closed => {}
                    ContentModel::Open => {
                        if !is_empty_schema(
                            resolve(
                                Side {
                                    node: rs,
                                    root: r.root,
                                },
                                self.r_deps,
                            )
                            .node,
                        ) {
                            self.err(
                                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                                &p,
                                "A property was added to an open content model",
                            );
                        }
                    }
                    ContentModel::Partial(a) => {
                        if !self.trial(
                            Side {
                                node: a,
                                root: w.root,
                            },
                            Side {
                                node: rs,
                                root: r.root,
                            },
                            &p,
                        ) {
                            self.err("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", &p, "A property was added that the old additionalProperties schema does not cover");
                        }
                    }
                },
                (Some(ws), None) => match rm {
                    ContentModel::Open => {}
                    ContentModel::Closed => {
                        if ws != &Value::Bool(false) {
                            self.err(
                                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                                &p,
                                "A property was removed from a closed content model",
                            );
                        }
                    }
                    ContentModel::Partial(b) => {
                        if !self.trial(
                            Side {
                                node: ws,
                                root: w.root,
                            },
                            Side {
                                node: b,
                                root: r.root,
                            },
                            &p,
                        ) {
                            self.err("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", &p, "A property was removed that the new additionalProperties schema does not cover");
                        }
                    }
                },
                (None, None) => {}
            }
        }
        let req = |v: &'a Value| -> BTreeSet<&'a str> {
            v.get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let wr = req(w.node);
        for name in req(r.node) {
            if wr.contains(name) {
                continue;
            }
            let has_default = rp.get(name).is_some_and(|s| s.get("default").is_some());
            if !has_default {
                self.err(
                    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                    &format!("{path}/properties/{name}"),
                    "A required property without a default was added",
                );
            }
        }
    }

    fn cmp_array(&mut self, w: Side<'a>, r: Side<'a>, path: &str) {
        let (wi, ri) = (w.node.get("items"), r.node.get("items"));
        let (wt, rt) = (w.node.get("prefixItems"), r.node.get("prefixItems"));
        let tuple =
            |items: Option<&'a Value>, prefix: Option<&'a Value>| -> Option<&'a Vec<Value>> {
                prefix
                    .and_then(Value::as_array)
                    .or_else(|| items.and_then(Value::as_array))
            };
        let (wtu, rtu) = (tuple(wi, wt), tuple(ri, rt));
        if wtu.is_none() && rtu.is_none() {
            match (wi, ri) {
                (_, None) => {}
                (Some(a), Some(b)) => self.cmp(
                    Side {
                        node: a,
                        root: w.root,
                    },
                    Side {
                        node: b,
                        root: r.root,
                    },
                    &format!("{path}/items"),
                ),
                (None, Some(b)) => {
                    if !is_empty_schema(b) && types(w.node).is_some_and(|t| t.contains("array")) {
                        self.err(
                            "ITEMS_ADDED",
                            &format!("{path}/items"),
                            "An items schema was added",
                        );
                    }
                }
            }
            return;
        }
        let wtu: &[Value] = wtu.map(Vec::as_slice).unwrap_or(&[]);
        let rtu: &[Value] = rtu.map(Vec::as_slice).unwrap_or(&[]);
        let extra_key = |prefix: Option<&Value>| {
            if prefix.is_some() {
                "items"
            } else {
                "additionalItems"
            }
        };
        let wm = content_model(w.node, extra_key(wt));
        let rm = content_model(r.node, extra_key(rt));
        for i in 0..wtu.len().max(rtu.len()) {
            let p = format!("{path}/items/{i}");
            match (wtu.get(i), rtu.get(i)) {
                (Some(a), Some(b)) => self.cmp(
                    Side {
                        node: a,
                        root: w.root,
                    },
                    Side {
                        node: b,
                        root: r.root,
                    },
                    &p,
                ),
                (None, Some(b)) => {
                    if matches!(wm, ContentModel::Open) && !is_empty_schema(b) {
                        self.err(
                            "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                            &p,
                            "A tuple item was added to an open content model",
                        );
                    }
                }
                (Some(_), None) => {
                    if matches!(rm, ContentModel::Closed) {
                        self.err(
                            "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                            &p,
                            "A tuple item was removed from a closed content model",
                        );
                    }
                }
                (None, None) => {}
            }
        }
        if matches!((&wm, &rm), (ContentModel::Open, ContentModel::Closed)) {
            self.err(
                "ADDITIONAL_ITEMS_REMOVED",
                path,
                "The new schema closes the tuple",
            );
        }
    }
}

static EMPTY_OBJ: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::Object(Map::new()));

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> JsonSchema {
        parse(t, &[]).unwrap()
    }

    fn compatible(reader: &str, writer: &str) -> bool {
        can_read(&s(reader), &s(writer)).is_empty()
    }

    #[test]
    fn validates_documents() {
        let j = s(r#"{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}"#);
        assert!(j.validate(br#"{"a":1}"#).is_ok());
        assert!(j.validate(br#"{"a":"x"}"#).is_err());
        assert!(j.validate(br#"{}"#).is_err());
        assert!(j.validate(b"not json").is_err());
    }

    #[test]
    fn remote_refs_are_not_fetched() {
        assert!(parse(r#"{"$ref":"http://127.0.0.1:1/x.json"}"#, &[]).is_err());
    }

    #[test]
    fn references_resolve_from_registry() {
        let dep =
            r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;
        let j = parse(
            r#"{"type":"object","properties":{"addr":{"$ref":"address.json"}}}"#,
            &[("address.json", dep)],
        )
        .unwrap();
        assert!(j.validate(br#"{"addr":{"city":"x"}}"#).is_ok());
        assert!(j.validate(br#"{"addr":{}}"#).is_err());
    }

    #[test]
    fn content_model_rules() {
        let open = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
        let open_b =
            r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}"#;
        let closed = r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#;
        let closed_b = r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}"#;
        // Adding a typed property to an open model: the old writer may have
        // written anything under that name.
        assert!(!compatible(open_b, open));
        // Removing a property from an open model is fine.
        assert!(compatible(open, open_b));
        // Closed model: adding an optional property is fine, removing is not.
        assert!(compatible(closed_b, closed));
        assert!(!compatible(closed, closed_b));
        // Closing an open model is not.
        assert!(!compatible(closed, open));
        assert!(compatible(open, closed));
    }

    #[test]
    fn type_and_required_rules() {
        let int = r#"{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false}"#;
        let number = r#"{"type":"object","properties":{"n":{"type":"number"}},"additionalProperties":false}"#;
        let string = r#"{"type":"object","properties":{"n":{"type":"string"}},"additionalProperties":false}"#;
        assert!(compatible(number, int));
        assert!(!compatible(int, number));
        assert!(!compatible(string, int));
        let req = r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}"#;
        let req_default = r#"{"type":"object","properties":{"n":{"type":"integer","default":0}},"required":["n"],"additionalProperties":false}"#;
        assert!(!compatible(req, int));
        assert!(compatible(req_default, int));
        assert!(compatible(int, req));
    }

    #[test]
    fn bounds_enums_and_sums() {
        assert!(compatible(
            r#"{"type":"string","maxLength":10}"#,
            r#"{"type":"string","maxLength":5}"#
        ));
        assert!(!compatible(
            r#"{"type":"string","maxLength":5}"#,
            r#"{"type":"string","maxLength":10}"#
        ));
        assert!(compatible(r#"{"enum":["a","b"]}"#, r#"{"enum":["a"]}"#));
        assert!(!compatible(r#"{"enum":["a"]}"#, r#"{"enum":["a","b"]}"#));
        assert!(compatible(
            r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
            r#"{"type":"string"}"#
        ));
        assert!(!compatible(
            r#"{"type":"string"}"#,
            r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#
        ));
    }
}
