//! Logging and tracing set-up: `RUST_LOG`-style filtering, human-readable or JSON lines on
//! stderr, and spans exported over OTLP when the standard OpenTelemetry variables ask for it
//! (the same rules as the node's: see `edgecart_node::telemetry`; `OTEL_SERVICE_NAME` defaults
//! to `edgecart-hub`).
//!
//! Request ids: every gRPC call runs inside a `grpc` span carrying its method and `request_id`
//! (see `observability::GrpcLayer`), and both formats print the spans of a line. The tokens
//! never reach a log line: the configuration's `Debug` leaves them out.
//!
//! One trace across store and hub: a store's change-log entry carries the W3C trace context of
//! the request that wrote it; applying it runs in an `apply_change` span continuing that trace
//! ([`continue_trace`]), and a card payment's context is kept on its ledger entry so the
//! worker's `provider.charge` span, much later, joins the same trace.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `--log-format` / `EDGECART_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields and the span list.
    Json,
}

/// Whether spans are exported (an OTLP endpoint is configured): only then do request spans get a
/// `trace_id` field, so logs and traces can be joined.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the OpenTelemetry trace id on `span` (declared with `trace_id = Empty`) when spans
/// are exported; nothing otherwise.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if EXPORTING.load(std::sync::atomic::Ordering::Relaxed) {
        let id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Whether spans are exported at all (callers skip building spans nobody receives).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes `span` (not entered yet) a child of the W3C trace context a store's change-log entry
/// carried, so the hub's work joins the store's trace. Nothing when spans are not exported or
/// the entry carried no (or a malformed) context: the span then stays where it was.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if traceparent.is_empty() || !EXPORTING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut carrier = std::collections::HashMap::with_capacity(2);
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_string(), tracestate.to_string());
    }
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Only fails for a span already started or filtered out: it then keeps its own parent.
        let _ = span.set_parent(cx);
    }
}

/// Keeps the trace exporter alive; dropping it flushes and stops it.
#[must_use = "dropping it stops the trace exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

pub fn init(format: LogFormat) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (provider, note) = edgecart_proto::otlp::provider("edgecart-hub");
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("edgecart-hub")));
    // `try_init`: a second initialisation (tests, several services in one process) is harmless.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    EXPORTING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    Telemetry { provider }
}
