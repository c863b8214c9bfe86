//! Health, readiness, Prometheus metrics and the API's own documentation.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::problem::{ApiError, ApiResult};
use steward_store::Timestamp;

/// The OpenAPI document, serialised once.
#[derive(Clone)]
pub(super) struct Document(pub(super) Arc<String>);

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Up", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The process can reach its store and write to it (a probe write, at
/// most one a second).
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Ready", body = String),
        (status = 503, description = "The store cannot be reached or cannot write", body = super::problem::Problem)))]
async fn readyz(State(state): State<ApiState>) -> ApiResult<&'static str> {
    match state.store().writable().await {
        Ok(()) => Ok("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store cannot write");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the store cannot be reached or cannot write",
            ))
        }
    }
}

/// Prometheus metrics: jobs by state, queue depth, run latency, plugin
/// traps.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", body = String)))]
async fn metrics(State(state): State<ApiState>) -> Response {
    let mut out = String::new();
    // The process's own figures answer even when the store cannot: an
    // operator watching a database outage still sees the server.
    match state.store().metrics(Timestamp::now()).await {
        Ok(m) => {
            out.push_str(STORE_UP_HELP);
            out.push_str("steward_store_up 1\n");
            store_metrics(&mut out, &m);
        }
        Err(e) => {
            tracing::warn!(error = %super::chain(&e), "metrics without the store's figures");
            out.push_str(STORE_UP_HELP);
            out.push_str("steward_store_up 0\n");
        }
    }
    process_metrics(&mut out, &state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

const STORE_UP_HELP: &str = "# HELP steward_store_up Whether the store answered for these metrics.\n\
     # TYPE steward_store_up gauge\n";

/// The figures read from the store: jobs by state, queue depth, run
/// latency, plugin traps.
fn store_metrics(out: &mut String, m: &steward_store::StoreMetrics) {
    out.push_str("# HELP steward_jobs Jobs in the store by state.\n# TYPE steward_jobs gauge\n");
    for status in steward_store::JobStatus::ALL {
        let n = m
            .jobs
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "steward_jobs{{state=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP steward_queue_depth Queued jobs that are due.\n# TYPE steward_queue_depth gauge\nsteward_queue_depth {}",
        m.due
    );
    let _ = writeln!(
        out,
        "# HELP steward_run_duration_seconds From a run's creation to its last job's end.\n\
         # TYPE steward_run_duration_seconds summary\n\
         steward_run_duration_seconds_sum {:.3}\nsteward_run_duration_seconds_count {}",
        m.run_millis as f64 / 1000.0,
        m.runs_finished
    );
    out.push_str(
        "# HELP steward_plugin_traps_total Jobs whose plugin trapped.\n# TYPE steward_plugin_traps_total counter\n",
    );
    for (plugin, n) in &m.traps {
        let plugin = plugin.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "steward_plugin_traps_total{{plugin=\"{plugin}\"}} {n}");
    }
}

/// This process's figures: its API connections and agents.
fn process_metrics(out: &mut String, state: &ApiState) {
    let connections = state.connections();
    let _ = writeln!(
        out,
        "# HELP steward_api_connections Open API connections.\n# TYPE steward_api_connections gauge\n\
         steward_api_connections {}\n\
         # HELP steward_api_connection_limit The cap on open API connections.\n# TYPE steward_api_connection_limit gauge\n\
         steward_api_connection_limit {}\n\
         # HELP steward_api_connections_refused_total Connections closed at once for a limit.\n# TYPE steward_api_connections_refused_total counter\n\
         steward_api_connections_refused_total {}\n\
         # HELP steward_agents_connected Agents connected to this process.\n# TYPE steward_agents_connected gauge\n\
         steward_agents_connected {}\n\
         # HELP steward_api_event_streams Run event streams being followed.\n# TYPE steward_api_event_streams gauge\n\
         steward_api_event_streams {}",
        connections.open.load(std::sync::atomic::Ordering::Relaxed),
        connections.limit.load(std::sync::atomic::Ordering::Relaxed),
        connections
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        state.agents().len(),
        connections
            .event_streams
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// Interactive documentation of this API (loads the document above).
#[utoipa::path(get, path = "/api/v1/docs", tag = "operations", security(()),
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String)))]
async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

/// Redoc renders the document; the page itself is served from here.
const DOCS_PAGE: &str = r#"<!doctype html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Steward API</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/api/v1/openapi.json"></redoc>
    <noscript>The document is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</noscript>
    <script src="https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js"></script>
  </body>
</html>
"#;
