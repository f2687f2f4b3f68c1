//! The HTTP side (axum): health now; metrics, the admin API and the schema
//! registry join it later.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}
