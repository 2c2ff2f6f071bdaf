//! The hub's metrics contract (docs/metrics.md), served on `--metrics-addr` (`/metrics` and
//! `/healthz`), and the instruments that feed it: a tower layer timing every gRPC call, a
//! wrapper timing the payment provider, and scrape-time gauges read from the database.
//!
//! Labels are of bounded cardinality: a per-store `node` label (one series per store of the
//! fleet), gRPC methods of the services this hub serves (an unknown method is `unknown`),
//! status codes, outcomes, reasons. Never a user, order or payment id.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::header;
use axum::response::IntoResponse;
use edgecart_proto::LedgerStatus;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tonic::codegen::http;
use tracing::Instrument;

use crate::error::HubError;
use crate::payments::provider::{ChargeOutcome, ChargeRequest, Provider, RefundOutcome};
use crate::state::Hub;

/// The ledger states a payment is in while the provider may still have to be asked.
const IN_FLIGHT: [LedgerStatus; 3] = [
    LedgerStatus::Pending,
    LedgerStatus::Charging,
    LedgerStatus::Voiding,
];

/// The gRPC services this hub serves; any other path is labelled `unknown`.
const SERVICES: [&str; 8] = [
    "edgecart.v1.Sync",
    "edgecart.v1.CatalogAdmin",
    "edgecart.v1.InventoryAdmin",
    "edgecart.v1.NodeAdmin",
    "edgecart.v1.OrderAdmin",
    "edgecart.v1.PaymentAdmin",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
];

/// The process-wide recorder, installed once (with every family described and registered).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("edgecart_hub_sqlite_write_jobs".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    register();
                    handle
                }
                // Another recorder is installed (the hub embedded with nodes in one process, as
                // `edgecart-local` does): that one collects everything; this one answers empty.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

fn register() {
    describe_gauge!(
        "edgecart_hub_nodes_connected",
        "Store nodes with an open sync stream."
    );
    describe_gauge!(
        "edgecart_hub_node_connected",
        "1 while this store node has an open sync stream, else 0 (every node ever seen)."
    );
    describe_gauge!(
        "edgecart_hub_node_lag_seconds",
        "Seconds since the hub last heard from this node (a batch, an ack or a heartbeat)."
    );
    describe_gauge!(
        "edgecart_hub_node_pending_changes",
        "Changes not yet through, per node: from_node = the node's newest reported change \
         minus what the hub applied; to_node = hub changes the node has not acknowledged."
    );
    describe_counter!(
        "edgecart_hub_changes_merged_total",
        "Node changes (deltas and records) received in committed batches, per node."
    );
    describe_counter!(
        "edgecart_hub_stream_errors_total",
        "Sync streams that ended with an error, by gRPC status code."
    );
    describe_counter!(
        "edgecart_hub_refused_changes_total",
        "Node changes refused (skipped and acknowledged, not retried), by reason; forbidden: the store may not write it."
    );
    describe_counter!(
        "edgecart_hub_refused_connections_total",
        "Sync connections refused, by reason (e.g. a revoked or unknown credential)."
    );
    describe_counter!(
        "edgecart_hub_sign_in_verifications_total",
        "Sign-ins a store asked the hub to verify (an email it does not hold), by outcome: \
         verified, denied, throttled (the store asked too often)."
    );
    describe_gauge!(
        "edgecart_hub_payments",
        "Payments in the ledger that still need the provider, by state \
         (settled ones: see edgecart_hub_provider_requests_total)."
    );
    describe_gauge!(
        "edgecart_hub_oldest_pending_charge_age_seconds",
        "Age of the oldest payment still pending, charging or voiding (0 when none)."
    );
    describe_counter!(
        "edgecart_hub_provider_requests_total",
        "Payment provider calls by operation (charge, refund) and outcome \
         (succeeded, declined, failed, error = no answer: retried later)."
    );
    describe_histogram!(
        "edgecart_hub_provider_request_duration_seconds",
        "Payment provider call latency by operation."
    );
    describe_counter!(
        "edgecart_hub_grpc_requests_total",
        "gRPC calls by method and status code (for a stream: the code it opened with)."
    );
    describe_histogram!(
        "edgecart_hub_grpc_request_duration_seconds",
        "gRPC call latency to the response headers, by method (a stream: time to open)."
    );
    describe_histogram!(
        "edgecart_hub_sqlite_write_duration_seconds",
        "Time of one SQLite write transaction at the hub, commit (fsync) included."
    );
    describe_histogram!(
        "edgecart_hub_sqlite_write_jobs",
        "Writes (a store's batch, a Hello, a cursor, an admin call) committed together in one \
         SQLite transaction by the group commit."
    );
    describe_gauge!(
        "edgecart_hub_hellos_in_flight",
        "Sync Hellos being handled now (at most --hello-concurrency; beyond it stores are \
         refused with a retry hint, counted as edgecart_hub_refused_connections_total{reason=\"busy\"})."
    );
    describe_counter!(
        "edgecart_hub_digest_entries_total",
        "stock_others entries sent to stores in digests of global stock figures (one per \
         changed product per store per digest period)."
    );
    describe_gauge!(
        "edgecart_hub_digest_period_seconds",
        "How often each store gets a digest of global stock figures now (grows with the number \
         of connected stores, 0.1 s to 1 s)."
    );

    gauge!("edgecart_hub_nodes_connected").set(0.0);
    gauge!("edgecart_hub_oldest_pending_charge_age_seconds").set(0.0);
    for s in IN_FLIGHT {
        gauge!("edgecart_hub_payments", "state" => s.as_str()).set(0.0);
    }
    for (op, outcomes) in [
        ("charge", &["succeeded", "declined", "error"][..]),
        ("refund", &["succeeded", "failed", "error"][..]),
    ] {
        for o in outcomes {
            counter!("edgecart_hub_provider_requests_total", "operation" => op, "outcome" => *o)
                .absolute(0);
        }
        let _ = histogram!("edgecart_hub_provider_request_duration_seconds", "operation" => op);
    }
    counter!("edgecart_hub_stream_errors_total", "code" => "Unavailable").absolute(0);
    for r in [
        "forbidden",
        "invalid",
        "not_found",
        "precondition",
        "internal",
    ] {
        counter!("edgecart_hub_refused_changes_total", "reason" => r).absolute(0);
    }
    for o in SIGN_IN_OUTCOMES {
        counter!("edgecart_hub_sign_in_verifications_total", "outcome" => *o).absolute(0);
    }
    let _ = histogram!("edgecart_hub_sqlite_write_duration_seconds");
    let _ = histogram!("edgecart_hub_sqlite_write_jobs");
    gauge!("edgecart_hub_hellos_in_flight").set(0.0);
    counter!("edgecart_hub_digest_entries_total").absolute(0);
    gauge!("edgecart_hub_digest_period_seconds").set(crate::figures::MIN_PERIOD.as_secs_f64());
    counter!("edgecart_hub_refused_connections_total", "reason" => "busy").absolute(0);
}

const SIGN_IN_OUTCOMES: &[&str] = &["verified", "denied", "throttled"];

/// A store's sign-in verification ended with `outcome` (one of [`SIGN_IN_OUTCOMES`]).
pub fn sign_in_verification(outcome: &'static str) {
    debug_assert!(SIGN_IN_OUTCOMES.contains(&outcome));
    counter!("edgecart_hub_sign_in_verifications_total", "outcome" => outcome).increment(1);
}

/// One SQLite write transaction of `jobs` group-committed writes took `elapsed`.
pub fn sqlite_write(elapsed: std::time::Duration, jobs: usize) {
    histogram!("edgecart_hub_sqlite_write_duration_seconds").record(elapsed.as_secs_f64());
    histogram!("edgecart_hub_sqlite_write_jobs").record(jobs as f64);
}

/// A store's digest of `entries` global stock figures went out; digests come every `period`.
pub fn digest(entries: usize, period: std::time::Duration) {
    if entries > 0 {
        counter!("edgecart_hub_digest_entries_total").increment(entries as u64);
    }
    gauge!("edgecart_hub_digest_period_seconds").set(period.as_secs_f64());
}

/// Sync Hellos being handled now.
pub fn hellos_in_flight(n: usize) {
    gauge!("edgecart_hub_hellos_in_flight").set(n as f64);
}

/// `n` changes of `node` arrived in a committed batch.
pub fn merged(node: &str, n: usize) {
    counter!("edgecart_hub_changes_merged_total", "node" => node.to_string()).increment(n as u64);
}

pub fn stream_error(code: tonic::Code) {
    counter!("edgecart_hub_stream_errors_total", "code" => format!("{code:?}")).increment(1);
}

/// A node change was refused (skipped) because of `e`.
pub fn refused(e: &HubError) {
    let reason = match e {
        HubError::Invalid { .. } => "invalid",
        HubError::NotFound(_) => "not_found",
        HubError::Precondition(_) | HubError::Exists(_) => "precondition",
        // The store restriction: an entry the sending store may not write.
        HubError::Forbidden(_) => "forbidden",
        HubError::Storage(_) | HubError::Internal(_) => "internal",
    };
    counter!("edgecart_hub_refused_changes_total", "reason" => reason).increment(1);
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let metrics = handle();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let (hub, metrics) = (hub.clone(), metrics.clone());
                async move {
                    refresh(&hub).await;
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Binds the metrics listener and logs its address like the other listeners.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(listener)
}

struct NodeFigures {
    node: String,
    lag_seconds: f64,
    from_node: i64,
    to_node: i64,
}

struct Snapshot {
    nodes: Vec<NodeFigures>,
    in_flight: Vec<(LedgerStatus, i64)>,
    oldest_in_flight_at: Option<i64>,
}

fn snapshot(hub: &Hub, c: &rusqlite::Connection) -> crate::error::Result<Snapshot> {
    let now = crate::store::now_ms();
    let mut nodes = Vec::new();
    // The outbox is compacted as nodes acknowledge it: both counts are index ranges
    // (`changes_by_audience`) over what some node still has to read.
    let mut to_node = c.prepare_cached(
        "SELECT (SELECT count(*) FROM changes WHERE audience IS NULL AND seq > ?1)
              + (SELECT count(*) FROM changes WHERE audience = ?2 AND seq > ?1)",
    )?;
    for n in crate::store::nodes::list(c)? {
        let cursor = hub
            .live_ack(&n.node_id)
            .map_or(n.hub_cursor, |a| a.max(n.hub_cursor));
        let pending: i64 = to_node.query_row(rusqlite::params![cursor, n.node_id], |r| r.get(0))?;
        nodes.push(NodeFigures {
            lag_seconds: (now - n.last_seen).max(0) as f64 / 1000.0,
            from_node: (n.node_last_seq - n.node_cursor).max(0),
            to_node: pending,
            node: n.node_id,
        });
    }
    // `ledger_due (status, next_attempt_at)`: index ranges over the unsettled entries only.
    let mut in_flight = Vec::new();
    let mut oldest: Option<i64> = None;
    let mut by_state =
        c.prepare_cached("SELECT count(*), min(created_at) FROM ledger WHERE status = ?1")?;
    for s in IN_FLIGHT {
        let (count, at): (i64, Option<i64>) =
            by_state.query_row([s.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        in_flight.push((s, count));
        oldest = match (oldest, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(Snapshot {
        nodes,
        in_flight,
        oldest_in_flight_at: oldest,
    })
}

/// Sets the scrape-time gauges. A failed read keeps the last values (logged).
async fn refresh(hub: &Hub) {
    let h = hub.clone();
    match hub.db.read(move |c| snapshot(&h, c)).await {
        Ok(s) => {
            let mut connected = 0;
            for n in s.nodes {
                let live = hub.is_connected(&n.node);
                connected += usize::from(live);
                let node = n.node;
                gauge!("edgecart_hub_node_connected", "node" => node.clone()).set(if live {
                    1.0
                } else {
                    0.0
                });
                gauge!("edgecart_hub_node_lag_seconds", "node" => node.clone()).set(n.lag_seconds);
                gauge!("edgecart_hub_node_pending_changes", "node" => node.clone(), "direction" => "from_node")
                    .set(n.from_node as f64);
                gauge!("edgecart_hub_node_pending_changes", "node" => node, "direction" => "to_node")
                    .set(n.to_node as f64);
            }
            gauge!("edgecart_hub_nodes_connected").set(connected as f64);
            for (state, count) in s.in_flight {
                gauge!("edgecart_hub_payments", "state" => state.as_str()).set(count as f64);
            }
            let age = s.oldest_in_flight_at.map_or(0.0, |at| {
                (crate::store::now_ms() - at).max(0) as f64 / 1000.0
            });
            gauge!("edgecart_hub_oldest_pending_charge_age_seconds").set(age);
        }
        Err(e) => tracing::warn!(error = %e, "reading the gauges for /metrics"),
    }
}

/// The payment provider, timed and counted.
pub struct InstrumentedProvider(pub Arc<dyn Provider>);

#[tonic::async_trait]
impl Provider for InstrumentedProvider {
    async fn charge(&self, req: &ChargeRequest<'_>) -> ChargeOutcome {
        let start = Instant::now();
        let outcome = self.0.charge(req).await;
        let label = match &outcome {
            ChargeOutcome::Succeeded { .. } => "succeeded",
            ChargeOutcome::Declined { .. } => "declined",
            ChargeOutcome::Retry { .. } => "error",
        };
        provider_call("charge", label, start);
        outcome
    }

    async fn refund(&self, refund_id: &str, charge_id: &str, amount: i64) -> RefundOutcome {
        let start = Instant::now();
        let outcome = self.0.refund(refund_id, charge_id, amount).await;
        let label = match &outcome {
            RefundOutcome::Succeeded { .. } => "succeeded",
            RefundOutcome::Failed { .. } => "failed",
            RefundOutcome::Retry { .. } => "error",
        };
        provider_call("refund", label, start);
        outcome
    }
}

fn provider_call(operation: &'static str, outcome: &'static str, start: Instant) {
    counter!("edgecart_hub_provider_requests_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
    histogram!("edgecart_hub_provider_request_duration_seconds", "operation" => operation)
        .record(start.elapsed().as_secs_f64());
}

/// A tower layer for the gRPC server: counts and times every call by method and status code,
/// and runs it inside a `grpc` span carrying the method and a request id (the caller's
/// `x-request-id`, or a new one), so every line the call logs names it.
#[derive(Clone, Copy, Default)]
pub struct GrpcLayer;

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = known_method(req.uri().path()).map(str::to_string);
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
            .map_or_else(
                || edgecart_proto::ids::new_id().simple().to_string(),
                str::to_string,
            );
        let span = tracing::info_span!("grpc", method = %method.as_deref().unwrap_or("unknown"),
            request_id = %request_id, trace_id = tracing::field::Empty);
        crate::telemetry::record_trace_id(&span);
        // The clone that was polled ready serves this call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let start = Instant::now();
        Box::pin(
            async move {
                let result = inner.call(req).await;
                if let Ok(response) = &result {
                    // A handler's error is a trailers-only response: its code is in the headers.
                    // A call whose headers carry none opened fine (its trailers say how it ended).
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                    // Unimplemented: the path named no method of ours (do not label with it).
                    let method = match method {
                        Some(m) if code != tonic::Code::Unimplemented => m,
                        _ => "unknown".to_string(),
                    };
                    let code = format!("{code:?}");
                    counter!("edgecart_hub_grpc_requests_total", "method" => method.clone(), "code" => code)
                        .increment(1);
                    histogram!("edgecart_hub_grpc_request_duration_seconds", "method" => method)
                        .record(start.elapsed().as_secs_f64());
                }
                result
            }
            .instrument(span),
        )
    }
}

/// `/package.Service/Method` of one of our services, else `None`.
fn known_method(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (SERVICES.contains(&service)
        && !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_services_methods_become_labels() {
        assert_eq!(
            known_method("/edgecart.v1.Sync/Stream"),
            Some("edgecart.v1.Sync/Stream")
        );
        assert_eq!(known_method("/evil.Service/X"), None);
        assert_eq!(known_method("/edgecart.v1.Sync/"), None);
        assert_eq!(known_method("/edgecart.v1.Sync/a/b"), None);
        assert_eq!(known_method("/"), None);
    }
}
