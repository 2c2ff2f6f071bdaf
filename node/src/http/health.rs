//! Liveness, readiness and Prometheus metrics.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Problem, Result};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub schema_version: i64,
    pub node_id: String,
}

/// Liveness: the process is serving HTTP.
#[utoipa::path(get, path = "/healthz",
    description = "Answers 200 while the process serves HTTP; it does not look at the database (see \
        `/readyz`). For liveness probes.",
    tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers queries.
#[utoipa::path(get, path = "/readyz",
    description = "200 once the database answers queries and its schema is the one this release \
        expects; 503 otherwise. For readiness probes and load balancers.",
    tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = Problem)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>> {
    let schema_version = state.db.schema_version().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        Error::Unavailable
    })?;
    if schema_version != crate::db::latest_version() {
        tracing::warn!(
            schema_version,
            "database schema is not the one this release expects"
        );
        return Err(Error::Unavailable);
    }
    Ok(Json(Ready {
        status: "ready",
        schema_version,
        node_id: state.node_id.to_string(),
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics",
    description = "Request counts and latencies per route and database, order and sync figures in the \
        Prometheus text format. Unauthenticated: expose it to the monitoring network only.",
    tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    crate::observability::refresh(&state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The process-wide metrics recorder. Installed once: several nodes started in one test
/// process share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("edgecart_db_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    crate::observability::register();
                    handle
                }
                // Another recorder is already installed (embedding in a bigger program): keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}
