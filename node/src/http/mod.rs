//! Router assembly: the contexts' routers, health, metrics, the OpenAPI document, and the
//! layers every request passes through (request id, tracing, metrics, body limit, timeout,
//! panic catching, and problem JSON for every error response).

pub mod extract;
pub mod health;
pub mod kiosk;
pub mod money;
pub mod openapi;
pub mod page;
pub mod status;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
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
    servers((url = "/", description = "this store node (the API is served by every node)")),
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
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(status::router())
        .merge(crate::users::routes::router())
        .merge(crate::catalog::routes::router())
        .merge(crate::orders::routes::router())
        .merge(crate::payments::routes::router())
        .merge(crate::notifications::routes::router())
        .merge(crate::sync::routes::router())
        .split_for_parts();
    self::openapi::complete(&mut openapi);
    let openapi_json = openapi.to_json().unwrap_or_else(|_| "{}".to_string());
    api.route(
        "/openapi.json",
        axum::routing::get(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], openapi_json.clone())
        }),
    )
    .merge(kiosk::router())
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
        let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, trace_id = tracing::field::Empty);
        // A client's W3C `traceparent` (a storefront that traces itself) makes the request part
        // of the client's trace: a whole checkout is then one trace, through to the hub.
        crate::telemetry::continue_trace(&span, req.headers());
        crate::telemetry::record_trace_id(&span);
        span
    }))
    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
    .layer(SetRequestIdLayer::new(REQUEST_ID, CountingRequestId))
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

/// Request ids: a random per-process prefix and a counter, 32 hex digits.
///
/// Why not `MakeRequestUuid`: a v4 UUID per request draws 16 bytes from the OS RNG every time.
/// Unique ids need no randomness per request: 64 random bits drawn once per process (from a v7
/// UUID's random part) tell processes apart, the counter tells requests apart.
#[derive(Clone, Copy)]
struct CountingRequestId;

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::now_v7().as_u64_pair().1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (u128::from(prefix) << 64) | u128::from(n);
        let mut hex = [0u8; 32];
        for (i, digit) in hex.iter_mut().enumerate() {
            *digit = b"0123456789abcdef"[((id >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&hex).ok().map(RequestId::new)
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    // `MatchedPath` is an `Arc<str>`: cloning it allocates nothing.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    with_http_metrics(route, &method, response.status(), |requests, duration| {
        requests.increment(1);
        duration.record(start.elapsed().as_secs_f64());
    });
    response
}

/// The request counter and duration histogram for one label set, registered once per thread.
///
/// Why a cache: `counter!(name, &labels)` builds a key from freshly allocated label `String`s and
/// looks it up in the recorder's registry on every call; a cached handle is a pointer to the
/// metric's atomics. Thread-local, so lookups take no lock; the handles of two threads point to the
/// same metric. The label sets are bounded by routes × methods × statuses, as in the registry.
fn with_http_metrics(
    route: &str,
    method: &Method,
    status: StatusCode,
    f: impl FnOnce(&Counter, &Histogram),
) {
    type Handles = Vec<(Method, StatusCode, Counter, Histogram)>;
    thread_local! {
        static CACHE: RefCell<HashMap<Box<str>, Handles>> = RefCell::new(HashMap::new());
    }
    CACHE.with_borrow_mut(|cache| {
        if !cache.contains_key(route) {
            cache.insert(route.into(), Vec::new());
        }
        let handles = cache.get_mut(route).expect("inserted above");
        let found = handles
            .iter()
            .position(|(m, s, _, _)| m == method && *s == status);
        let i = found.unwrap_or_else(|| {
            let labels = [
                ("method", method.to_string()),
                ("route", route.to_string()),
                ("status", status.as_u16().to_string()),
            ];
            handles.push((
                method.clone(),
                status,
                metrics::counter!("edgecart_http_requests_total", &labels),
                metrics::histogram!("edgecart_http_request_duration_seconds", &labels),
            ));
            handles.len() - 1
        });
        let (_, _, requests, duration) = &handles[i];
        f(requests, duration);
    });
}
