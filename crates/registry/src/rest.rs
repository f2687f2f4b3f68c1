//! The Confluent Schema Registry REST API over axum. Paths, JSON shapes,
//! status codes and `{"error_code", "message"}` bodies follow Confluent's
//! so that its clients and serializers work unchanged. The router has no
//! fallback, so the broker can `.merge()` it next to `/healthz`,
//! `/metrics` and `/v1/...`. Registry calls (SQLite writes with fsync) run
//! on the blocking pool.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::error::RegistryError;
use crate::model::{CompatibilityLevel, Mode, SchemaReference, SchemaType, VersionSel};
use crate::registry::{Registry, SchemaRequest, SubjectVersion};

/// The content type of every response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A JSON response with Confluent's content type.
struct Sr(StatusCode, String);

impl IntoResponse for Sr {
    fn into_response(self) -> Response {
        let mut r = (self.0, self.1).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        r
    }
}

fn ok(v: Value) -> Sr {
    Sr(StatusCode::OK, v.to_string())
}

/// A registry error as Confluent renders it.
pub struct ApiError(pub RegistryError);

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "schema registry request failed");
        }
        Sr(
            status,
            json!({"error_code": self.0.error_code(), "message": self.0.to_string()}).to_string(),
        )
        .into_response()
    }
}

type Res = Result<Sr, ApiError>;
type Reg = State<Arc<Registry>>;

async fn blocking<T, F>(reg: &Arc<Registry>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    let reg = reg.clone();
    match tokio::task::spawn_blocking(move || f(&reg)).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(RegistryError::Store(format!(
            "registry task failed: {e}"
        )))),
    }
}

// -- query strings and bodies ------------------------------------------------

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Query {
        let mut v = Vec::new();
        if let Some(raw) = raw {
            for part in raw.split('&').filter(|p| !p.is_empty()) {
                let (k, val) = part.split_once('=').unwrap_or((part, ""));
                v.push((percent_decode(k), percent_decode(val)));
            }
        }
        Query(v)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(RegistryError::BadRequest(format!("Invalid JSON body: {e}"))))
}

fn schema_request(reg: &Registry, body: &Value) -> Result<SchemaRequest, RegistryError> {
    let schema = match body.get("schema") {
        Some(Value::String(s)) => s.clone(),
        // Some tools send the Avro/JSON schema as an object.
        Some(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
        _ => return Err(RegistryError::InvalidSchema("Empty schema".into())),
    };
    let schema_type = SchemaType::parse(body.get("schemaType").and_then(Value::as_str))?;
    let mut references = Vec::new();
    if let Some(Value::Array(refs)) = body.get("references") {
        for r in refs {
            let name = r.get("name").and_then(Value::as_str);
            let subject = r.get("subject").and_then(Value::as_str);
            let version = r.get("version").and_then(Value::as_i64);
            let (Some(name), Some(subject), Some(version)) = (name, subject, version) else {
                return Err(RegistryError::InvalidSchema(format!(
                    "Invalid schema reference {r}"
                )));
            };
            let version = if version <= 0 {
                reg.version(subject, VersionSel::Latest, false)
                    .map_err(|_| {
                        RegistryError::InvalidSchema(format!(
                            "Invalid schema reference {r}: subject not found"
                        ))
                    })?
                    .version
            } else {
                u32::try_from(version).map_err(|_| {
                    RegistryError::InvalidSchema(format!("Invalid schema reference {r}"))
                })?
            };
            references.push(SchemaReference {
                name: name.to_string(),
                subject: subject.to_string(),
                version,
            });
        }
    }
    let num = |k: &str| {
        body.get(k)
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
            .and_then(|n| u32::try_from(n).ok())
    };
    Ok(SchemaRequest {
        schema,
        schema_type,
        references,
        id: num("id"),
        version: num("version"),
    })
}

fn schema_fields(
    out: &mut serde_json::Map<String, Value>,
    schema_type: SchemaType,
    text: String,
    refs: &[SchemaReference],
) {
    if schema_type != SchemaType::Avro {
        out.insert("schemaType".into(), json!(schema_type.as_str()));
    }
    if !refs.is_empty() {
        out.insert("references".into(), json!(refs));
    }
    out.insert("schema".into(), json!(text));
}

fn schema_text(reg: &Registry, id: u32, schema_type: SchemaType, text: &str, q: &Query) -> String {
    if schema_type == SchemaType::Protobuf && q.get("format") == Some("serialized") {
        if let Ok(p) = reg.parsed(id) {
            if let Some(s) = p.serialized() {
                return s.to_string();
            }
        }
    }
    text.to_string()
}

fn version_json(reg: &Registry, v: &SubjectVersion, q: &Query) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(v.subject));
    m.insert("version".into(), json!(v.version));
    m.insert("id".into(), json!(v.id));
    let text = schema_text(reg, v.id, v.schema.schema_type, &v.schema.schema, q);
    schema_fields(&mut m, v.schema.schema_type, text, &v.schema.references);
    if v.deleted {
        m.insert("deleted".into(), json!(true));
    }
    Value::Object(m)
}

fn parse_id(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .map_err(|_| ApiError(RegistryError::SchemaNotFound(s.to_string())))
}

// -- handlers ------------------------------------------------------------------

async fn list_subjects(State(reg): Reg, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let subs = reg.subjects(
        q.flag("deleted"),
        q.flag("deleted_only"),
        q.get("subjectPrefix")
            .filter(|p| !p.is_empty() && *p != ":*:"),
    );
    Ok(ok(json!(subs)))
}

async fn lookup(
    State(reg): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Res {
    let q = Query::parse(q);
    let body = parse_body(&body)?;
    let deleted = q.flag("deleted");
    let (v, q) = blocking(&reg, move |r| {
        let req = schema_request(r, &body)?;
        Ok((r.lookup(&subject, &req, deleted)?, q))
    })
    .await?;
    Ok(ok(version_json(&reg, &v, &q)))
}

async fn delete_subject(
    State(reg): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let permanent = Query::parse(q).flag("permanent");
    let versions = blocking(&reg, move |r| r.delete_subject(&subject, permanent)).await?;
    Ok(ok(json!(versions)))
}

async fn list_versions(State(reg): Reg, Path(subject): Path<String>, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let v = reg.versions(&subject, q.flag("deleted"), q.flag("deleted_only"))?;
    Ok(ok(json!(v)))
}

async fn register(
    State(reg): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Res {
    let q = Query::parse(q);
    let body = parse_body(&body)?;
    let normalize = q.flag("normalize");
    let registered = blocking(&reg, move |r| {
        let req = schema_request(r, &body)?;
        r.register(&subject, &req, normalize)
    })
    .await?;
    Ok(ok(json!({"id": registered.id})))
}

async fn get_version(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Res {
    let q = Query::parse(q);
    let sel = VersionSel::parse(&version)?;
    let v = reg.version(&subject, sel, q.flag("deleted"))?;
    Ok(ok(version_json(&reg, &v, &q)))
}

async fn get_version_schema(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Res {
    let q = Query::parse(q);
    let sel = VersionSel::parse(&version)?;
    let v = reg.version(&subject, sel, q.flag("deleted"))?;
    Ok(Sr(
        StatusCode::OK,
        schema_text(&reg, v.id, v.schema.schema_type, &v.schema.schema, &q),
    ))
}

async fn delete_version(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Res {
    let permanent = Query::parse(q).flag("permanent");
    let sel = VersionSel::parse(&version)?;
    let v = blocking(&reg, move |r| r.delete_version(&subject, sel, permanent)).await?;
    Ok(ok(json!(v)))
}

async fn referenced_by(State(reg): Reg, Path((subject, version)): Path<(String, String)>) -> Res {
    let sel = VersionSel::parse(&version)?;
    Ok(ok(json!(reg.referenced_by(&subject, sel)?)))
}

async fn list_schemas(State(reg): Reg) -> Res {
    let mut out = Vec::new();
    for s in reg.schemas() {
        for (subject, version) in reg.versions_for_id(s.id, false).unwrap_or_default() {
            let mut m = serde_json::Map::new();
            m.insert("subject".into(), json!(subject));
            m.insert("version".into(), json!(version));
            m.insert("id".into(), json!(s.id));
            schema_fields(&mut m, s.schema_type, s.schema.clone(), &s.references);
            out.push(Value::Object(m));
        }
    }
    Ok(ok(Value::Array(out)))
}

async fn schema_types() -> Res {
    Ok(ok(json!(["JSON", "PROTOBUF", "AVRO"])))
}

async fn schema_by_id(State(reg): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let id = parse_id(&id)?;
    let s = reg.schema_by_id(id)?;
    let mut m = serde_json::Map::new();
    let text = schema_text(&reg, id, s.schema_type, &s.schema, &q);
    schema_fields(&mut m, s.schema_type, text, &s.references);
    Ok(ok(Value::Object(m)))
}

async fn schema_by_id_raw(State(reg): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let id = parse_id(&id)?;
    let s = reg.schema_by_id(id)?;
    Ok(Sr(
        StatusCode::OK,
        schema_text(&reg, id, s.schema_type, &s.schema, &q),
    ))
}

async fn id_subjects(State(reg): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let id = parse_id(&id)?;
    let mut subs = reg.subjects_for_id(id, q.flag("deleted"))?;
    if let Some(s) = q.get("subject") {
        subs.retain(|x| x == s);
    }
    Ok(ok(json!(subs)))
}

async fn id_versions(State(reg): Reg, Path(id): Path<String>, RawQuery(q): RawQuery) -> Res {
    let q = Query::parse(q);
    let id = parse_id(&id)?;
    let mut v = reg.versions_for_id(id, q.flag("deleted"))?;
    if let Some(s) = q.get("subject") {
        v.retain(|(x, _)| x == s);
    }
    let out: Vec<Value> = v
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(Value::Array(out)))
}

async fn compat(
    reg: Arc<Registry>,
    subject: String,
    version: Option<String>,
    q: Option<String>,
    body: Bytes,
) -> Res {
    let q = Query::parse(q);
    let verbose = q.flag("verbose");
    let body = parse_body(&body)?;
    let sel = version.as_deref().map(VersionSel::parse).transpose()?;
    let errs = blocking(&reg, move |r| {
        let req = schema_request(r, &body)?;
        r.check_compatibility(&subject, sel, &req)
    })
    .await?;
    let mut out = json!({"is_compatible": errs.is_empty()});
    if verbose {
        out["messages"] = json!(errs);
    }
    Ok(ok(out))
}

async fn compat_all(
    State(reg): Reg,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Res {
    compat(reg, subject, None, q, body).await
}

async fn compat_one(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Res {
    compat(reg, subject, Some(version), q, body).await
}

fn level_from_body(body: &Value) -> Result<CompatibilityLevel, RegistryError> {
    let v = body
        .get("compatibility")
        .or_else(|| body.get("compatibilityLevel"))
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::InvalidCompatibilityLevel(String::new()))?;
    v.parse()
}

async fn get_config(reg: Arc<Registry>, subject: Option<String>, q: Option<String>) -> Res {
    let q = Query::parse(q);
    let l = reg.config(subject.as_deref(), q.flag("defaultToGlobal"))?;
    Ok(ok(json!({"compatibilityLevel": l.as_str()})))
}

async fn put_config(reg: Arc<Registry>, subject: Option<String>, body: Bytes) -> Res {
    let body = parse_body(&body)?;
    let level = level_from_body(&body)?;
    blocking(&reg, move |r| r.set_config(subject.as_deref(), level)).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn delete_config(reg: Arc<Registry>, subject: Option<String>) -> Res {
    let prev = blocking(&reg, move |r| r.delete_config(subject.as_deref())).await?;
    Ok(ok(json!({"compatibilityLevel": prev.as_str()})))
}

fn mode_from_body(body: &Value) -> Result<Mode, RegistryError> {
    body.get("mode")
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::InvalidMode(String::new()))?
        .parse()
}

async fn get_mode(reg: Arc<Registry>, subject: Option<String>, q: Option<String>) -> Res {
    let q = Query::parse(q);
    let m = reg.mode(subject.as_deref(), q.flag("defaultToGlobal"))?;
    Ok(ok(json!({"mode": m.as_str()})))
}

async fn put_mode(
    reg: Arc<Registry>,
    subject: Option<String>,
    q: Option<String>,
    body: Bytes,
) -> Res {
    let force = Query::parse(q).flag("force");
    let body = parse_body(&body)?;
    let mode = mode_from_body(&body)?;
    blocking(&reg, move |r| r.set_mode(subject.as_deref(), mode, force)).await?;
    Ok(ok(json!({"mode": mode.as_str()})))
}

async fn delete_mode(reg: Arc<Registry>, subject: Option<String>) -> Res {
    let prev = blocking(&reg, move |r| r.delete_mode(subject.as_deref())).await?;
    Ok(ok(json!({"mode": prev.as_str()})))
}

/// The Confluent-compatible routes, ready to `.merge()` into the broker's
/// HTTP router (no fallback, no clash with `/healthz`, `/metrics`, `/v1`).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(list_schemas))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_by_id_raw))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_one),
        )
        .route(
            "/config",
            get(|State(r): Reg, RawQuery(q): RawQuery| get_config(r, None, q))
                .put(|State(r): Reg, body: Bytes| put_config(r, None, body))
                .delete(|State(r): Reg| delete_config(r, None)),
        )
        .route(
            "/config/{subject}",
            get(
                |State(r): Reg, Path(s): Path<String>, RawQuery(q): RawQuery| {
                    get_config(r, Some(s), q)
                },
            )
            .put(|State(r): Reg, Path(s): Path<String>, body: Bytes| put_config(r, Some(s), body))
            .delete(|State(r): Reg, Path(s): Path<String>| delete_config(r, Some(s))),
        )
        .route(
            "/mode",
            get(|State(r): Reg, RawQuery(q): RawQuery| get_mode(r, None, q))
                .put(|State(r): Reg, RawQuery(q): RawQuery, body: Bytes| put_mode(r, None, q, body))
                .delete(|State(r): Reg| delete_mode(r, None)),
        )
        .route(
            "/mode/{subject}",
            get(
                |State(r): Reg, Path(s): Path<String>, RawQuery(q): RawQuery| {
                    get_mode(r, Some(s), q)
                },
            )
            .put(
                |State(r): Reg, Path(s): Path<String>, RawQuery(q): RawQuery, body: Bytes| {
                    put_mode(r, Some(s), q, body)
                },
            )
            .delete(|State(r): Reg, Path(s): Path<String>| delete_mode(r, Some(s))),
        )
        .with_state(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let mut b = Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header("content-type", CONTENT_TYPE);
        }
        let req = b
            .body(
                body.map(|v| Body::from(v.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v, ct)
    }

    const A1: &str = r#"{"type":"record","name":"U","fields":[{"name":"a","type":"int"}]}"#;
    const A2: &str = r#"{"type":"record","name":"U","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}]}"#;
    const BAD: &str = r#"{"type":"record","name":"U","fields":[{"name":"a","type":"string"}]}"#;

    fn app() -> Router {
        // Merged the way the broker will: next to a router with a fallback.
        let other = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "no such endpoint") });
        other.merge(router(Arc::new(Registry::in_memory().unwrap())))
    }

    #[tokio::test]
    async fn register_get_and_errors() {
        let app = app();
        let (s, v, ct) = call(
            &app,
            "POST",
            "/subjects/t-value/versions",
            Some(json!({"schema": A1})),
        )
        .await;
        assert_eq!((s, &v), (200, &json!({"id": 1})));
        assert_eq!(ct, CONTENT_TYPE);
        let (s, v, _) = call(
            &app,
            "POST",
            "/subjects/t-value/versions?normalize=False",
            Some(json!({"schema": A2, "schemaType": "AVRO", "references": []})),
        )
        .await;
        assert_eq!((s, &v), (200, &json!({"id": 2})));
        let (s, v, _) = call(
            &app,
            "POST",
            "/subjects/t-value/versions",
            Some(json!({"schema": BAD})),
        )
        .await;
        assert_eq!(s, 409);
        assert_eq!(v["error_code"], 409);
        let (s, v, _) = call(&app, "GET", "/subjects/t-value/versions/latest", None).await;
        assert_eq!(s, 200);
        assert_eq!(v["version"], 2);
        assert_eq!(v["id"], 2);
        assert_eq!(v["subject"], "t-value");
        assert!(v.get("schemaType").is_none(), "AVRO omits schemaType");
        let (_, v, _) = call(&app, "GET", "/subjects/t-value/versions/1/schema", None).await;
        assert_eq!(v["name"], "U");
        let (_, v, _) = call(&app, "GET", "/schemas/ids/2", None).await;
        assert!(v["schema"].as_str().unwrap().contains("\"b\""));
        let (_, v, _) = call(&app, "GET", "/schemas/ids/1/versions", None).await;
        assert_eq!(v, json!([{"subject": "t-value", "version": 1}]));
        let (_, v, _) = call(&app, "GET", "/schemas/types", None).await;
        assert_eq!(v, json!(["JSON", "PROTOBUF", "AVRO"]));
        for (uri, code) in [
            ("/subjects/nope/versions", 40401),
            ("/subjects/t-value/versions/9", 40402),
            ("/schemas/ids/99", 40403),
            ("/subjects/t-value/versions/zero", 42202),
            ("/config/t-value", 40408),
            ("/mode/t-value", 40409),
        ] {
            let (s, v, ct) = call(&app, "GET", uri, None).await;
            assert_eq!(v["error_code"], code, "{uri}");
            assert_eq!(s as u64, code / 100, "{uri}");
            assert!(v["message"].is_string());
            assert_eq!(ct, CONTENT_TYPE);
        }
        let (s, v, _) = call(
            &app,
            "POST",
            "/subjects/x/versions",
            Some(json!({"schema": "{not json"})),
        )
        .await;
        assert_eq!((s, v["error_code"].clone()), (422, json!(42201)));
        let (s, _, _) = call(
            &app,
            "POST",
            "/subjects/x/versions",
            Some(json!({"schema": A1, "schemaType": "XML"})),
        )
        .await;
        assert_eq!(s, 422);
        // The other router's routes and fallback still work.
        let (s, _, _) = call(&app, "GET", "/healthz", None).await;
        assert_eq!(s, 200);
        let (s, _, _) = call(&app, "GET", "/v1/nothing", None).await;
        assert_eq!(s, 404);
    }

    #[tokio::test]
    async fn lookup_compat_config_mode_delete() {
        let app = app();
        call(
            &app,
            "POST",
            "/subjects/a%2Fb-value/versions",
            Some(json!({"schema": A1})),
        )
        .await;
        let (_, v, _) = call(&app, "GET", "/subjects", None).await;
        assert_eq!(v, json!(["a/b-value"]));
        let (s, v, _) = call(
            &app,
            "POST",
            "/subjects/a%2Fb-value?normalize=False&deleted=False",
            Some(json!({"schema": A1})),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            (v["id"].clone(), v["version"].clone()),
            (json!(1), json!(1))
        );
        let (s, v, _) = call(
            &app,
            "POST",
            "/compatibility/subjects/a%2Fb-value/versions/latest?verbose=true",
            Some(json!({"schema": BAD})),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["is_compatible"], false);
        assert!(!v["messages"].as_array().unwrap().is_empty());
        let (_, v, _) = call(
            &app,
            "POST",
            "/compatibility/subjects/a%2Fb-value/versions",
            Some(json!({"schema": A2})),
        )
        .await;
        assert_eq!(v, json!({"is_compatible": true}));
        let (_, v, _) = call(
            &app,
            "POST",
            "/compatibility/subjects/new/versions",
            Some(json!({"schema": BAD})),
        )
        .await;
        assert_eq!(v, json!({"is_compatible": true}));
        let (_, v, _) = call(
            &app,
            "PUT",
            "/config",
            Some(json!({"compatibility": "FULL"})),
        )
        .await;
        assert_eq!(v, json!({"compatibility": "FULL"}));
        let (_, v, _) = call(&app, "GET", "/config", None).await;
        assert_eq!(v, json!({"compatibilityLevel": "FULL"}));
        let (_, v, _) = call(&app, "GET", "/config/zz?defaultToGlobal=true", None).await;
        assert_eq!(v, json!({"compatibilityLevel": "FULL"}));
        let (s, v, _) = call(
            &app,
            "PUT",
            "/config/zz",
            Some(json!({"compatibility": "SIDEWAYS"})),
        )
        .await;
        assert_eq!((s, v["error_code"].clone()), (422, json!(42203)));
        let (_, v, _) = call(&app, "PUT", "/mode/zz", Some(json!({"mode": "READONLY"}))).await;
        assert_eq!(v, json!({"mode": "READONLY"}));
        let (s, v, _) = call(
            &app,
            "POST",
            "/subjects/zz/versions",
            Some(json!({"schema": A1})),
        )
        .await;
        assert_eq!((s, v["error_code"].clone()), (422, json!(42205)));
        let (s, v, _) = call(&app, "PUT", "/mode", Some(json!({"mode": "WRONG"}))).await;
        assert_eq!((s, v["error_code"].clone()), (422, json!(42204)));
        let (_, v, _) = call(&app, "GET", "/mode", None).await;
        assert_eq!(v, json!({"mode": "READWRITE"}));
        let (_, v, _) = call(&app, "DELETE", "/subjects/a%2Fb-value", None).await;
        assert_eq!(v, json!([1]));
        let (s, v, _) = call(&app, "DELETE", "/subjects/a%2Fb-value", None).await;
        assert_eq!((s, v["error_code"].clone()), (404, json!(40404)));
        let (_, v, _) = call(&app, "GET", "/subjects?deleted=true", None).await;
        assert_eq!(v, json!(["a/b-value"]));
        let (_, v, _) = call(&app, "DELETE", "/subjects/a%2Fb-value?permanent=true", None).await;
        assert_eq!(v, json!([1]));
        let (s, _, _) = call(&app, "GET", "/schemas/ids/1", None).await;
        assert_eq!(s, 404);
    }

    #[tokio::test]
    async fn protobuf_serialized_format() {
        let app = app();
        let proto = "syntax = \"proto3\"; package p; message M { int32 a = 1; }";
        let (_, v, _) = call(
            &app,
            "POST",
            "/subjects/p-value/versions",
            Some(json!({"schema": proto, "schemaType": "PROTOBUF"})),
        )
        .await;
        let id = v["id"].as_u64().unwrap();
        let (_, v, _) = call(&app, "GET", &format!("/schemas/ids/{id}"), None).await;
        assert_eq!(v["schemaType"], "PROTOBUF");
        assert_eq!(v["schema"], proto);
        let (_, v, _) = call(
            &app,
            "GET",
            &format!("/schemas/ids/{id}?format=serialized"),
            None,
        )
        .await;
        let b64 = v["schema"].as_str().unwrap().to_string();
        // Registering the descriptor form finds the same schema.
        let (_, v, _) = call(
            &app,
            "POST",
            "/subjects/p-value/versions",
            Some(json!({"schema": b64, "schemaType": "PROTOBUF"})),
        )
        .await;
        assert_eq!(v["id"].as_u64().unwrap(), id);
    }
}
