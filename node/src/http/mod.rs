//! Router assembly: the contexts' routers, health, metrics, the OpenAPI document, and the
//! layers every request passes through (request id, tracing, metrics, body limit, timeout,
//! panic catching, and problem JSON for every error response).

pub mod extract;
pub mod health;
pub mod money;
pub mod page;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{PROBLEM_JSON, Problem};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "edgecart node storefront API", description = "The REST API of one edgecart store. Errors are RFC 9457 problem documents; money is integer minor units; lists are cursor-paginated."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its OpenAPI document (also served at `/openapi.json`).
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(crate::users::routes::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::orders::routes::router())
        .merge(crate::payments::routes::router())
        .merge(crate::notifications::routes::router())
        .merge(crate::sync::routes::router())
        .split_for_parts();
    let openapi_json = openapi.to_json().unwrap_or_else(|_| "{}".to_string());
    api.route(
        "/openapi.json",
        axum::routing::get(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], openapi_json.clone())
        }),
    )
    .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route").into_response() })
    .layer(middleware::map_response(problem_for_plain_errors))
    .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
    .layer(CatchPanicLayer::custom(|_| {
        tracing::error!("a request handler panicked");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
    }))
    .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
    .layer(middleware::from_fn(record_metrics))
    .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
    }))
    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
    .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
    .with_state(state)
}

/// Error responses produced outside our handlers (unknown method, timeouts, ...) become problem
/// JSON too, so clients can rely on one error format.
async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let kind = status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
            .replace(' ', "-");
        let detail = status.canonical_reason().unwrap_or("error").to_string();
        let mut problem = Problem::new(status, &kind, detail).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            problem.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return problem;
    }
    response
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("edgecart_http_requests_total", &labels).increment(1);
    metrics::histogram!("edgecart_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}
