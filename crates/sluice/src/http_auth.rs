//! Authentication and authorization of the HTTP side (admin API, schema
//! registry, DLQ replay, metrics): the SASL users log in with HTTP Basic
//! authentication (what Confluent's schema-registry clients send with
//! `basic.auth.user.info`), and each request is checked against the same
//! ACLs as the Kafka listeners.
//!
//! - No or wrong credentials: 401 with a JSON body and a `WWW-Authenticate`
//!   challenge; a user without the right: 403 with a JSON body.
//! - `/healthz` is always open; `/metrics` too with `--http-metrics-open`.
//! - Admin API: topics and groups need what Kafka's admin APIs need
//!   (Describe to see, Delete to delete, Read on the group to reset its
//!   offsets); browsing a topic's records (`/v1/topics/{t}/messages`)
//!   needs Read on it, the console's overview (`/v1/overview`) Describe on
//!   the cluster; the console's pages (`/`, `/ui/...`) any logged-in user;
//!   a DLQ's records need Read on the dead-letter topic, a replay
//!   also Write on its target (`to` or `original_topic`), or Alter on the
//!   cluster when it replays into whatever topics the records name; a
//!   window replay (`/v1/replays`) Read on its topic and Write on its
//!   target; the
//!   cluster view, `/metrics` and the fault switch need the cluster, as
//!   do the users (`/v1/users`: Describe to list, Alter to change); REST
//!   produce (`/v3/.../records`, `/topics/{t}`) needs Write on the topic.
//! - Schema registry, as Confluent's topic-ACL mode: a subject `T-key` or
//!   `T-value` (TopicNameStrategy) is governed by the ACLs of topic `T`:
//!   Describe to read it, Write to register, change or delete; any other
//!   subject by the cluster (Describe / Alter). Schemas by id, the schema
//!   types and the global config and mode are readable by any user
//!   (deserializers look schemas up by id).
//! - Lists (`/v1/topics`, `/v1/groups`, `/subjects`, `/schemas` and the
//!   subjects and versions of a schema id) show only what the user may
//!   describe; a group's detail leaves out topics the user may not
//!   describe, and resetting its offsets needs Read on each topic.
//!
//! A password check costs a PBKDF2 run, so a successful login is
//! remembered for [`REMEMBER`] by a digest of its header: a deleted user or
//! a changed password takes effect within that time.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};
use sluice_broker::security::acl::{Operation, ResourceType};
use sluice_broker::security::authz::{Authorizer, Caller};
use sluice_broker::security::sasl::Users;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a successful login is remembered.
pub const REMEMBER: Duration = Duration::from_secs(30);
/// Most remembered logins (the oldest are forgotten first).
const REMEMBERED_MAX: usize = 4096;

pub struct HttpAuth {
    users: Arc<Users>,
    authorizer: Arc<Authorizer>,
    metrics_open: bool,
    /// Digest of an Authorization header -> (user, when checked).
    logins: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

/// What a request needs.
enum Need {
    /// Nothing: open to anyone.
    Open,
    /// A logged-in user, and each of these permissions.
    All(Vec<(Operation, ResourceType, String)>),
}

/// Which list in a response to trim to what the user may describe.
enum ListOf {
    Topics,
    Groups,
    Subjects,
}

fn cluster(op: Operation) -> (Operation, ResourceType, String) {
    (op, ResourceType::Cluster, "kafka-cluster".into())
}

fn topic(op: Operation, name: &str) -> (Operation, ResourceType, String) {
    (op, ResourceType::Topic, name.to_string())
}

fn group(op: Operation, name: &str) -> (Operation, ResourceType, String) {
    (op, ResourceType::Group, name.to_string())
}

/// The resource a registry subject is governed by.
fn subject(op: Operation, subject: &str) -> (Operation, ResourceType, String) {
    match subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
    {
        Some(t) if !t.is_empty() => topic(op, t),
        _ => cluster(if op == Operation::Describe {
            Operation::Describe
        } else {
            Operation::Alter
        }),
    }
}

/// A path segment without its percent-encoding (subjects may hold any
/// character).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// What `method path` needs (replays name their topics in their body,
/// passed as `body`).
fn need(method: &Method, path: &str, body: Option<&Value>) -> Need {
    use Operation::*;
    let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = method == Method::GET || method == Method::HEAD;
    let write = if get { Describe } else { Write };
    let all = Need::All;
    match s.as_slice() {
        ["healthz"] => Need::Open,
        ["metrics"] => all(vec![cluster(Describe)]),
        ["v1", "cluster"] => all(vec![cluster(Describe)]),
        ["v1", "debug", ..] => all(vec![cluster(Alter)]),
        ["v1", "topics"] => all(vec![]),
        ["v1", "topics", t] => all(vec![topic(Describe, t)]),
        // The console's message browser reads records.
        ["v1", "topics", t, "messages"] => all(vec![topic(Read, t)]),
        ["v1", "overview"] => all(vec![cluster(Describe)]),
        ["v1", "dlq", t, "records"] => all(vec![topic(Read, t)]),
        ["v1", "dlq", t, "replay"] => {
            let field = |k: &str| body.and_then(|b| b.get(k)).and_then(Value::as_str);
            let mut v = vec![topic(Read, t)];
            match field("to").or_else(|| field("original_topic")) {
                Some(target) => v.push(topic(Write, target)),
                None => v.push(cluster(Alter)),
            }
            all(v)
        }
        ["v1", "replays"] if method == Method::POST => {
            let field = |k: &str| body.and_then(|b| b.get(k)).and_then(Value::as_str);
            match (field("topic"), field("into")) {
                (Some(from), Some(into)) => all(vec![topic(Read, from), topic(Write, into)]),
                // Malformed: the handler answers 400 (the user must still
                // be someone).
                _ => all(vec![]),
            }
        }
        ["v1", "replays", ..] => all(vec![]),
        ["v1", "schemas", ..] => all(vec![cluster(Alter)]),
        ["v3", "clusters", _, "topics", t, "records"] => all(vec![topic(Write, t)]),
        ["topics", t] => all(vec![topic(Write, t)]),
        ["v1", "users"] => all(vec![cluster(Describe)]),
        ["v1", "users", ..] => all(vec![cluster(Alter)]),
        ["v1", "groups"] => all(vec![]),
        ["v1", "groups", g] if method == Method::DELETE => all(vec![group(Delete, g)]),
        ["v1", "groups", g] => all(vec![group(Describe, g)]),
        ["v1", "groups", g, "reset-offsets"] => all(vec![group(Read, g)]),
        ["subjects"] => all(vec![]),
        ["subjects", subj, ..] => {
            let op = if method == Method::POST && s.len() == 2 {
                // POST /subjects/{s} looks a schema up.
                Describe
            } else {
                write
            };
            all(vec![subject(op, subj)])
        }
        ["compatibility", "subjects", subj, ..] => all(vec![subject(Describe, subj)]),
        ["config", subj] | ["mode", subj] => all(vec![subject(write, subj)]),
        ["config"] | ["mode"] if !get => all(vec![cluster(Alter)]),
        // Schemas by id and the global settings: any user (lists of
        // subjects in the answers are trimmed).
        ["config"] | ["mode"] | ["schemas", ..] => all(vec![]),
        // Unknown paths: any user gets the 404.
        _ => all(vec![]),
    }
}

fn list_of(method: &Method, path: &str) -> Option<ListOf> {
    if method != Method::GET {
        return None;
    }
    let p = path.trim_end_matches('/');
    match p {
        "/v1/topics" => Some(ListOf::Topics),
        "/v1/groups" => Some(ListOf::Groups),
        "/subjects" | "/schemas" => Some(ListOf::Subjects),
        _ if p.starts_with("/schemas/ids/")
            && (p.ends_with("/subjects") || p.ends_with("/versions")) =>
        {
            Some(ListOf::Subjects)
        }
        _ => None,
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error_code": status.as_u16(), "message": message})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"sluice\""),
        );
    }
    r
}

impl HttpAuth {
    pub fn new(users: Arc<Users>, authorizer: Arc<Authorizer>, metrics_open: bool) -> Arc<Self> {
        Arc::new(Self {
            users,
            authorizer,
            metrics_open,
            logins: Mutex::new(HashMap::new()),
        })
    }

    /// The user a request's Basic credentials name, if they are right.
    async fn authenticate(&self, headers: &header::HeaderMap) -> Option<String> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        self.user_of(value).await
    }

    /// The caller an `Authorization: Basic ...` value names, if its
    /// credentials are right (for listeners outside this router: OTLP).
    pub async fn caller_of(&self, authorization: &str, host: String) -> Option<Caller> {
        let user = self.user_of(authorization).await?;
        Some(Caller {
            principal: format!("User:{user}"),
            host,
            tenant: None,
        })
    }

    async fn user_of(&self, value: &str) -> Option<String> {
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes())
            .as_ref()
            .try_into()
            .ok()?;
        if let Ok(logins) = self.logins.lock() {
            if let Some((user, at)) = logins.get(&digest) {
                if at.elapsed() < REMEMBER {
                    return Some(user.clone());
                }
            }
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        if user.is_empty() || !self.users.check_password(user, password).await {
            sluice_observe::metrics().sasl_failures.inc();
            tracing::info!(user, "HTTP Basic authentication failed");
            return None;
        }
        if let Ok(mut logins) = self.logins.lock() {
            if logins.len() >= REMEMBERED_MAX {
                logins.retain(|_, (_, at)| at.elapsed() < REMEMBER);
                if logins.len() >= REMEMBERED_MAX {
                    logins.clear();
                }
            }
            logins.insert(digest, (user.to_string(), Instant::now()));
        }
        Some(user.to_string())
    }

    fn may(&self, caller: &Caller, (op, rt, name): &(Operation, ResourceType, String)) -> bool {
        self.authorizer.allows(caller, *op, *rt, name)
    }

    /// Keeps the entries of a JSON list the caller may describe.
    fn trim_list(&self, caller: &Caller, list: &ListOf, body: &[u8]) -> Option<Vec<u8>> {
        let Value::Array(items) = serde_json::from_slice::<Value>(body).ok()? else {
            return None;
        };
        let kept: Vec<Value> = items
            .into_iter()
            .filter(|v| {
                let need = match list {
                    ListOf::Topics => v
                        .get("topic")
                        .and_then(Value::as_str)
                        .map(|t| topic(Operation::Describe, t)),
                    ListOf::Groups => v
                        .get("group")
                        .and_then(Value::as_str)
                        .map(|g| group(Operation::Describe, g)),
                    ListOf::Subjects => v
                        .as_str()
                        .or_else(|| v.get("subject").and_then(Value::as_str))
                        .map(|s| subject(Operation::Describe, s)),
                };
                need.is_some_and(|n| self.may(caller, &n))
            })
            .collect();
        serde_json::to_vec(&kept).ok()
    }
}

/// Largest DLQ replay request body read to find its target.
const REPLAY_BODY_MAX: usize = 1 << 20;

/// The axum middleware.
pub async fn check(State(auth): State<Arc<HttpAuth>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/healthz" || (path == "/metrics" && auth.metrics_open) {
        return next.run(req).await;
    }
    let Some(user) = auth.authenticate(req.headers()).await else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "authentication required: HTTP Basic credentials of a Sluice user",
        );
    };
    let host = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "*".into());
    let caller = Caller {
        principal: format!("User:{user}"),
        host,
        tenant: None,
    };
    // A replay names its topics in its body: read it (bounded) and put it
    // back.
    let replay = path.ends_with("/replay") || path.trim_end_matches('/') == "/v1/replays";
    let (req, body) = if method == Method::POST && replay {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, REPLAY_BODY_MAX).await else {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (Request::from_parts(parts, Body::from(bytes)), Some(v))
    } else {
        (req, None)
    };
    match need(&method, &path, body.as_ref()) {
        Need::Open => {}
        Need::All(perms) => {
            if let Some(missing) = perms.iter().find(|p| !auth.may(&caller, p)) {
                return json_error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{} may not {} {} {}",
                        caller.principal,
                        missing.0,
                        missing.1.name(),
                        missing.2
                    ),
                );
            }
        }
    }
    let list = list_of(&method, &path);
    let mut req = req;
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    let Some(list) = list.filter(|_| resp.status().is_success()) else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the response failed",
        );
    };
    let body = auth
        .trim_list(&caller, &list, &bytes)
        .unwrap_or_else(|| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(method: Method, path: &str) -> Vec<(Operation, ResourceType, String)> {
        match need(&method, path, None) {
            Need::Open => vec![],
            Need::All(p) => p,
        }
    }

    #[test]
    fn routes_map_to_kafka_permissions() {
        use Operation::*;
        assert!(matches!(need(&Method::GET, "/healthz", None), Need::Open));
        assert_eq!(
            perms(Method::GET, "/v1/topics/t1"),
            vec![topic(Describe, "t1")]
        );
        assert_eq!(
            perms(Method::GET, "/v1/topics/t1/messages"),
            vec![topic(Read, "t1")]
        );
        assert!(perms(Method::GET, "/ui/topics").is_empty());
        assert!(!matches!(need(&Method::GET, "/", None), Need::Open));
        assert_eq!(
            perms(Method::DELETE, "/v1/groups/g"),
            vec![group(Delete, "g")]
        );
        assert_eq!(
            perms(Method::POST, "/v1/groups/g/reset-offsets"),
            vec![group(Read, "g")]
        );
        assert_eq!(
            perms(Method::POST, "/subjects/orders-value/versions"),
            vec![topic(Write, "orders")]
        );
        assert_eq!(
            perms(Method::POST, "/subjects/orders-key"),
            vec![topic(Describe, "orders")]
        );
        assert_eq!(
            perms(Method::GET, "/subjects/odd%2Fname/versions"),
            vec![cluster(Describe)]
        );
        assert_eq!(perms(Method::PUT, "/config"), vec![cluster(Alter)]);
        assert!(perms(Method::GET, "/schemas/ids/3").is_empty());
        let to_t = serde_json::json!({"to": "t"});
        match need(&Method::POST, "/v1/dlq/dlq.t/replay", Some(&to_t)) {
            Need::All(p) => assert_eq!(p, vec![topic(Read, "dlq.t"), topic(Write, "t")]),
            Need::Open => panic!("open"),
        }
        match need(&Method::POST, "/v1/dlq/dlq.t/replay", Some(&Value::Null)) {
            Need::All(p) => assert_eq!(p, vec![topic(Read, "dlq.t"), cluster(Alter)]),
            Need::Open => panic!("open"),
        }
        let window = serde_json::json!({"topic": "a", "into": "b"});
        match need(&Method::POST, "/v1/replays", Some(&window)) {
            Need::All(p) => assert_eq!(p, vec![topic(Read, "a"), topic(Write, "b")]),
            Need::Open => panic!("open"),
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("bad%zz"), "bad%zz");
        assert_eq!(decode("end%2"), "end%2");
    }
}
