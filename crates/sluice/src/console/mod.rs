//! The web console: a small single-page app (plain HTML, CSS and JavaScript
//! in `assets/`, embedded in the binary at build time, no build step, no
//! external resources) served on the HTTP listener next to the admin API it
//! reads. `/` redirects to `/ui/`; every `/ui/...` path answers the app
//! shell, which routes on the client; `/ui/assets/{file}` serves the
//! assets. The pages fetch the JSON API (`/v1/...`, the registry paths) on
//! the same origin, so with `--http-auth` the browser's Basic credentials
//! (asked for by the 401's `WWW-Authenticate` challenge) cover both.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

/// `(file name, contents)` of each asset.
const ASSETS: &[(&str, &str)] = &[
    ("app.css", include_str!("assets/app.css")),
    ("favicon.svg", include_str!("assets/favicon.svg")),
    ("core.js", include_str!("assets/core.js")),
    ("chart.js", include_str!("assets/chart.js")),
    ("overview.js", include_str!("assets/overview.js")),
    ("topics.js", include_str!("assets/topics.js")),
    ("groups.js", include_str!("assets/groups.js")),
    ("dlq.js", include_str!("assets/dlq.js")),
    ("schemas.js", include_str!("assets/schemas.js")),
    ("app.js", include_str!("assets/app.js")),
];

/// The content type of an asset, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const SHELL: &str = include_str!("assets/index.html");

/// Assets may be cached briefly (they change only with the binary); the
/// shell is revalidated each time.
const ASSET_CACHE: &str = "public, max-age=300";

fn with_headers(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
        ),
    );
    r
}

async fn shell() -> Response {
    with_headers(SHELL, "text/html; charset=utf-8", "no-cache")
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => with_headers(body, content_type(n), ASSET_CACHE),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error_code": 404, "message": "no such asset"})),
        )
            .into_response(),
    }
}

/// The console's routes (no fallback: merged into the API router).
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/{*path}", get(shell))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_shell_loads_is_served() {
        for (name, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is empty");
            assert!(
                SHELL.contains(&format!("/ui/assets/{name}")),
                "the shell does not load {name}"
            );
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
        }
    }
}
