//! The HTTP side (axum): health, and the admin API over consumer groups
//! (`/v1/groups...`) that `sluice groups` and dashboards use. Errors are JSON
//! `{"error_code": <http status>, "message": "..."}`. The web console
//! (`/`, `/ui/...`, see `console/`) is merged in here.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sluice_broker::security::acl::{Operation, ResourceType};
use sluice_broker::security::authz::Caller;
use sluice_broker::Broker;
use sluice_ops::admin::{self, AdminError, ResetRequest};
use sluice_ops::dlq;
use std::sync::Arc;

struct ApiError(AdminError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::NotCoordinator(_) => StatusCode::MISDIRECTED_REQUEST,
        };
        (
            status,
            Json(json!({"error_code": status.as_u16(), "message": self.0.to_string()})),
        )
            .into_response()
    }
}

type Shared = State<Arc<Broker>>;

async fn list_groups(State(b): Shared, who: Who) -> Json<Vec<admin::GroupSummary>> {
    let groups = match &who {
        Some(axum::Extension(caller)) => {
            admin::list_groups_with_lag(&b, |topic| {
                b.authorizer
                    .allows(caller, Operation::Describe, ResourceType::Topic, topic)
            })
            .await
        }
        None => admin::list_groups_with_lag(&b, |_| true).await,
    };
    Json(groups)
}

/// The logged-in caller, when the HTTP side checks credentials.
type Who = Option<axum::Extension<Caller>>;

async fn describe_group(
    State(b): Shared,
    who: Who,
    Path(group): Path<String>,
) -> Result<Json<admin::GroupDetail>, ApiError> {
    let mut detail = admin::describe_group(&b, &group).await.map_err(ApiError)?;
    if let Some(axum::Extension(caller)) = who {
        // Offsets of topics the caller may not describe are left out, as
        // Kafka's OffsetFetch leaves them out.
        detail.partitions.retain(|p| {
            b.authorizer
                .allows(&caller, Operation::Describe, ResourceType::Topic, &p.topic)
        });
        detail.total_lag = detail.partitions.iter().filter_map(|p| p.lag).sum();
    }
    Ok(Json(detail))
}

async fn list_topics(State(b): Shared) -> Json<Vec<admin::TopicSummary>> {
    Json(admin::list_topics(&b))
}

async fn describe_topic(
    State(b): Shared,
    Path(topic): Path<String>,
) -> Result<Json<admin::TopicDetail>, ApiError> {
    admin::describe_topic(&b, &topic)
        .map(Json)
        .map_err(ApiError)
}

/// `GET /v1/topics/{topic}/messages?partition=P&offset=O|timestamp=MS&limit=N`.
/// Numbers are taken as text so that a malformed one is a 400 in the API's
/// error shape.
#[derive(serde::Deserialize)]
struct MessagesQuery {
    partition: Option<String>,
    offset: Option<String>,
    timestamp: Option<String>,
    limit: Option<String>,
}

fn number<T: std::str::FromStr>(name: &str, v: Option<&str>) -> Result<Option<T>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError(AdminError::BadRequest(format!(
                "{name} must be a whole number, not {v:?}"
            )))
        }),
    }
}

async fn topic_messages(
    State(b): Shared,
    Path(topic): Path<String>,
    q: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<sluice_ops::browse::BrowsePage>, ApiError> {
    use sluice_ops::browse::{browse, BrowseError, BrowseQuery};
    let Query(q) = q.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    let query = BrowseQuery {
        partition: number("partition", q.partition.as_deref())?.unwrap_or(0),
        offset: number("offset", q.offset.as_deref())?,
        timestamp: number("timestamp", q.timestamp.as_deref())?,
        limit: number("limit", q.limit.as_deref())?.unwrap_or(0),
    };
    browse(&b, &topic, query)
        .await
        .map(Json)
        .map_err(|e| match e {
            BrowseError::NotFound(m) => ApiError(AdminError::NotFound(m)),
            BrowseError::BadRequest(m) => ApiError(AdminError::BadRequest(m)),
            BrowseError::Storage(m) => ApiError(AdminError::Internal(m)),
        })
}

/// `GET /v1/overview`: the console's overview.
async fn overview(State(b): Shared) -> Result<Json<sluice_ops::overview::Overview>, ApiError> {
    sluice_ops::overview::overview(&b)
        .await
        .map(Json)
        .map_err(ApiError)
}

/// `GET /metrics[?detail=partition|group]`.
#[derive(serde::Deserialize)]
struct MetricsQuery {
    detail: Option<String>,
}

async fn metrics(State(b): Shared, Query(q): Query<MetricsQuery>) -> Result<Response, ApiError> {
    use sluice_ops::metrics_page::{render_chunks, Detail};
    let detail = match q.detail.as_deref() {
        None if b.config.metrics_partition_detail => Detail::Partition,
        None | Some("group") => Detail::Group,
        Some("partition") => Detail::Partition,
        Some(other) => {
            return Err(ApiError(AdminError::BadRequest(format!(
                "detail must be \"group\" or \"partition\", not {other:?}"
            ))))
        }
    };
    let chunks = render_chunks(&b, detail).await;
    let stream = futures::stream::unfold(chunks, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let body = axum::body::Body::from_stream(stream);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn delete_group(State(b): Shared, Path(group): Path<String>) -> Result<StatusCode, ApiError> {
    admin::delete_group(&b, &group).await.map_err(ApiError)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_offsets(
    State(b): Shared,
    who: Who,
    Path(group): Path<String>,
    body: Result<Json<ResetRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<admin::ResetPlanRow>>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    if let Some(axum::Extension(caller)) = who {
        // Committing offsets needs Read on each topic (Kafka's OffsetCommit).
        let topics: Vec<String> = if req.topics.is_empty() {
            b.groups
                .committed(&group)
                .into_iter()
                .map(|o| o.topic)
                .collect()
        } else {
            req.topics.clone()
        };
        if let Some(t) = topics.iter().find(|t| {
            !b.authorizer
                .allows(&caller, Operation::Read, ResourceType::Topic, t)
        }) {
            return Err(ApiError(AdminError::Forbidden(format!(
                "{} may not Read Topic {t}",
                caller.principal
            ))));
        }
    }
    admin::reset_offsets(&b, &group, req)
        .await
        .map(Json)
        .map_err(ApiError)
}

#[derive(serde::Deserialize)]
struct DlqQuery {
    #[serde(default)]
    partition: i32,
    #[serde(default)]
    from: i64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

fn dlq_error(e: dlq::DlqError) -> ApiError {
    match e {
        dlq::DlqError::NoSuchTopic(_) | dlq::DlqError::NoSuchPartition(..) => {
            ApiError(AdminError::NotFound(e.to_string()))
        }
        dlq::DlqError::Busy(_) => ApiError(AdminError::Conflict(e.to_string())),
        dlq::DlqError::Storage(_) => ApiError(AdminError::Internal(e.to_string())),
    }
}

async fn dlq_records(
    State(b): Shared,
    Path(topic): Path<String>,
    q: Result<axum::extract::Query<DlqQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<dlq::DlqPage>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    dlq::inspect(&b, &topic, q.partition, q.from, q.limit)
        .await
        .map(Json)
        .map_err(dlq_error)
}

async fn dlq_replay(
    State(b): Shared,
    Path(topic): Path<String>,
    body: Result<Json<dlq::ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<dlq::ReplayResult>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    dlq::replay(&b, &topic, req)
        .await
        .map(Json)
        .map_err(dlq_error)
}

async fn install_contracts(State(b): Shared) -> Result<Json<Vec<(String, u32)>>, ApiError> {
    let registry = b.registry.clone();
    tokio::task::spawn_blocking(move || sluice_registry::install_ai_contracts(&registry))
        .await
        .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?
        .map(Json)
        .map_err(|e| ApiError(AdminError::Internal(e.to_string())))
}

#[derive(serde::Deserialize)]
struct TensorZeroQuery {
    #[serde(default = "default_tensorzero_prefix")]
    topic_prefix: String,
}

fn default_tensorzero_prefix() -> String {
    "tensorzero".into()
}

/// One TensorZero topic bound to its contract.
#[derive(serde::Serialize)]
struct BoundContract {
    topic: String,
    subject: String,
    id: u32,
    created: bool,
}

/// `POST /v1/schemas/tensorzero?topic_prefix=P`: registers the JSON Schema
/// contracts of TensorZero's three topics and binds each topic to its
/// subject (`sluice.value.format=json`, `sluice.value.schema.subject`),
/// creating the topic if it does not exist; other configs are kept.
async fn install_tensorzero(
    State(b): Shared,
    q: Result<Query<TensorZeroQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<BoundContract>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    let prefix = q.topic_prefix.trim().to_string();
    let probe = format!("{prefix}_model_inference");
    sluice_broker::handlers::validate_topic_name(&probe)
        .map_err(|e| ApiError(AdminError::BadRequest(format!("topic_prefix: {e}"))))?;
    let registry = b.registry.clone();
    let p = prefix.clone();
    let installed =
        tokio::task::spawn_blocking(move || sluice_registry::install_tensorzero(&registry, &p))
            .await
            .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?
            .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?;
    let mut out = Vec::new();
    for (topic, subject, id) in installed {
        let bind = |mut configs: std::collections::BTreeMap<String, String>| {
            configs.insert(sluice_registry::keys::VALUE_FORMAT.into(), "json".into());
            configs.insert(sluice_registry::keys::VALUE_SUBJECT.into(), subject.clone());
            configs
        };
        let created = match b.store.topic(&topic) {
            Some(t) => {
                let configs = bind(t.record.configs.clone());
                sluice_broker::topic_config::validate_all(&configs)
                    .map_err(|e| ApiError(AdminError::Conflict(format!("{topic}: {e}"))))?;
                b.store
                    .set_topic_configs(&topic, configs)
                    .await
                    .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?;
                false
            }
            None => {
                b.store
                    .create_topic(
                        &topic,
                        b.config.num_partitions.max(1),
                        bind(Default::default()),
                    )
                    .await
                    .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?;
                true
            }
        };
        out.push(BoundContract {
            topic,
            subject,
            id,
            created,
        });
    }
    Ok(Json(out))
}

fn replay_error(e: sluice_ops::replay::ReplayError) -> ApiError {
    match e {
        sluice_ops::replay::ReplayError::NotFound(m) => ApiError(AdminError::NotFound(m)),
        sluice_ops::replay::ReplayError::BadRequest(m) => ApiError(AdminError::BadRequest(m)),
    }
}

/// `POST /v1/replays`: starts a window replay; 202 with its status.
async fn start_replay(
    State(b): Shared,
    who: Who,
    body: Result<Json<sluice_ops::replay::ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<sluice_ops::replay::ReplayStatus>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    let caller = who
        .map(|axum::Extension(c)| c)
        .unwrap_or_else(|| Caller::anonymous("*".into()));
    sluice_ops::replay::start(b.clone(), caller, req)
        .await
        .map(|s| (StatusCode::ACCEPTED, Json(s)))
        .map_err(replay_error)
}

/// `GET /v1/replays/{id}`.
async fn get_replay(
    Path(id): Path<String>,
) -> Result<Json<sluice_ops::replay::ReplayStatus>, ApiError> {
    sluice_ops::replay::status(&id)
        .map(Json)
        .map_err(replay_error)
}

/// `DELETE /v1/replays/{id}`: stops a running replay after the chunk it
/// is writing (the window resumes from there when asked for again).
async fn stop_replay(
    Path(id): Path<String>,
) -> Result<Json<sluice_ops::replay::ReplayStatus>, ApiError> {
    sluice_ops::replay::stop(&id)
        .map(Json)
        .map_err(replay_error)
}

/// `GET /v1/cluster`: the live brokers this broker sees, with their
/// leases, groups and background jobs.
async fn cluster(State(b): Shared) -> Result<Json<sluice_ops::cluster::ClusterView>, ApiError> {
    sluice_ops::cluster::cluster_view(&b)
        .await
        .map(Json)
        .map_err(ApiError)
}

async fn not_found() -> ApiError {
    ApiError(AdminError::NotFound("no such endpoint".into()))
}

async fn set_fault(
    State(control): State<sluice_storage::faults::FaultControl>,
    body: Result<Json<sluice_storage::faults::Fault>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<sluice_storage::faults::Fault>, ApiError> {
    let Json(f) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    control.set(f);
    Ok(Json(control.get()))
}

/// Runs a blocking catalog call off the async workers.
async fn catalog_call<T: Send + 'static>(
    b: &Broker,
    f: impl FnOnce(&sluice_catalog::Catalog) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let catalog = b.catalog.clone();
    tokio::task::spawn_blocking(move || f(&catalog))
        .await
        .map_err(|e| ApiError(AdminError::Internal(e.to_string())))?
        .map_err(|e| ApiError(AdminError::Internal(e.to_string())))
}

/// `GET /v1/users`: every SASL user and its mechanisms.
async fn list_users(
    State(b): Shared,
) -> Result<Json<std::collections::BTreeMap<String, Vec<String>>>, ApiError> {
    catalog_call(&b, crate::users_cli::list_users)
        .await
        .map(Json)
}

#[derive(serde::Deserialize)]
struct UserRequest {
    password: String,
    mechanism: Option<String>,
    #[serde(default = "default_iterations")]
    iterations: u32,
    tenant: Option<String>,
}

#[derive(serde::Deserialize)]
struct TenantRequest {
    tenant: Option<String>,
}

/// `PUT /v1/users/{name}/tenant` `{"tenant": "acme"}` (null clears it).
async fn put_tenant(
    State(b): Shared,
    Path(name): Path<String>,
    body: Result<Json<TenantRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    if let Some(t) = &req.tenant {
        crate::users_cli::check_tenant(t)
            .map_err(|e| ApiError(AdminError::BadRequest(e.to_string())))?;
    }
    let (who, tenant) = (name.clone(), req.tenant.clone());
    let known = catalog_call(&b, move |c| {
        use sluice_catalog::CredentialStore;
        if c.credentials(&who)?.is_empty() {
            return Ok(false);
        }
        c.set_user_attribute(&who, "tenant", tenant.as_deref())?;
        Ok(true)
    })
    .await?;
    if !known {
        return Err(ApiError(AdminError::NotFound(format!(
            "no such user '{name}'"
        ))));
    }
    Ok(Json(json!({"user": name, "tenant": req.tenant})))
}

fn default_iterations() -> u32 {
    sluice_broker::security::scram::DEFAULT_ITERATIONS
}

/// `PUT /v1/users/{name}`: creates a user or changes its password; answers
/// the mechanisms stored.
async fn put_user(
    State(b): Shared,
    Path(name): Path<String>,
    body: Result<Json<UserRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<String>>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(AdminError::BadRequest(e.body_text())))?;
    let records = crate::users_cli::new_credentials(
        &name,
        &req.password,
        req.mechanism.as_deref(),
        req.iterations,
    )
    .map_err(|e| ApiError(AdminError::BadRequest(e.to_string())))?;
    if let Some(t) = &req.tenant {
        crate::users_cli::check_tenant(t)
            .map_err(|e| ApiError(AdminError::BadRequest(e.to_string())))?;
    }
    let tenant = req.tenant.clone();
    catalog_call(&b, move |c| {
        use sluice_catalog::CredentialStore;
        let mut stored = Vec::new();
        for r in &records {
            c.put_credential(r)?;
            stored.push(r.mechanism.clone());
        }
        if let Some(t) = &tenant {
            c.set_user_attribute(&name, "tenant", Some(t))?;
        }
        Ok(stored)
    })
    .await
    .map(Json)
}

#[derive(serde::Deserialize)]
struct DeleteUserQuery {
    mechanism: Option<String>,
}

/// `DELETE /v1/users/{name}[?mechanism=M]`: answers how many credentials went.
async fn delete_user(
    State(b): Shared,
    Path(name): Path<String>,
    Query(q): Query<DeleteUserQuery>,
) -> Result<Json<usize>, ApiError> {
    let m = crate::users_cli::mechanism_name(q.mechanism.as_deref())
        .map_err(|e| ApiError(AdminError::BadRequest(e.to_string())))?;
    let who = name.clone();
    let n = catalog_call(&b, move |c| {
        use sluice_catalog::CredentialStore;
        let n = c.delete_credentials(&who, m)?;
        if m.is_none() {
            c.set_user_attribute(&who, "tenant", None)?;
        }
        Ok(n)
    })
    .await?;
    if n == 0 {
        return Err(ApiError(AdminError::NotFound(format!(
            "no such user '{name}'"
        ))));
    }
    Ok(Json(n))
}

/// The HTTP routes; `faults` adds `POST /v1/debug/faults` (tests only).
pub fn router(broker: Arc<Broker>, faults: Option<sluice_storage::faults::FaultControl>) -> Router {
    let debug = match faults {
        Some(control) => Router::new()
            .route("/v1/debug/faults", post(set_fault))
            .with_state(control),
        None => Router::new(),
    };
    Router::new()
        .merge(debug)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster))
        .route("/v1/topics", get(list_topics))
        .route("/v1/topics/{topic}", get(describe_topic))
        .route("/v1/topics/{topic}/messages", get(topic_messages))
        .route("/v1/overview", get(overview))
        .route("/v1/dlq/{topic}/records", get(dlq_records))
        .route("/v1/dlq/{topic}/replay", post(dlq_replay))
        .route("/v1/schemas/ai-contracts", post(install_contracts))
        .route("/v1/schemas/tensorzero", post(install_tensorzero))
        .route(
            "/v3/clusters/{cluster_id}/topics/{topic}/records",
            post(crate::rest_produce::produce_v3).layer(axum::extract::DefaultBodyLimit::max(
                crate::rest_produce::MAX_BODY,
            )),
        )
        .route(
            "/topics/{topic}",
            post(crate::rest_produce::produce_v2).layer(axum::extract::DefaultBodyLimit::max(
                crate::rest_produce::MAX_BODY,
            )),
        )
        .route("/v1/replays", post(start_replay))
        .route("/v1/replays/{id}", get(get_replay).delete(stop_replay))
        .route("/v1/users", get(list_users))
        .route(
            "/v1/users/{name}",
            axum::routing::put(put_user).delete(delete_user),
        )
        .route("/v1/users/{name}/tenant", axum::routing::put(put_tenant))
        .route("/v1/groups", get(list_groups))
        .route(
            "/v1/groups/{group}",
            get(describe_group).delete(delete_group),
        )
        .route("/v1/groups/{group}/reset-offsets", post(reset_offsets))
        .fallback(not_found)
        .with_state(broker)
        .merge(crate::console::router())
}
