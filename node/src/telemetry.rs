//! Logging and tracing set-up: `RUST_LOG`-style filtering, human-readable or JSON lines on
//! stderr, and spans exported over OTLP when the standard OpenTelemetry variables ask for it.
//!
//! Request ids: every HTTP request runs inside an `http` span carrying `request_id` (see
//! `http::router`), and both formats print the spans of a line, so every line a request logs
//! names it. Secrets never reach a log line: the configuration's `Debug` redacts them and the
//! `Authorization` header is marked sensitive.
//!
//! Traces: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; then no
//! OpenTelemetry layer exists at all, so the hot path pays nothing. The protocol is
//! `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`, the only one built in); `OTEL_SERVICE_NAME`
//! defaults to `edgecart-node`; `OTEL_TRACES_SAMPLER`/`_ARG` and `OTEL_BSP_*` are read by the
//! SDK. Spans are batched on the SDK's own thread and flushed when [`Telemetry`] is dropped at
//! the end of a graceful shutdown.
//!
//! One trace across the store and the hub: each change-log entry carries the W3C trace context
//! of the request that wrote it ([`current_context`], captured when the write is queued and
//! handed to the writer thread by [`with_job_context`]), and the hub continues that trace.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `--log-format` / `EDGECART_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`request_id`) and the span list.
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

/// The W3C trace context (`traceparent`, `tracestate`) a change-log entry carries, so the hub's
/// work on it joins the trace of the request that wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

/// The current span's trace context, or `None` when spans are not exported (one atomic load:
/// the write path pays nothing more when traces are off) or the span is not sampled.
pub fn current_context() -> Option<TraceContext> {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !EXPORTING.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .inject_context(&tracing::Span::current().context(), &mut carrier);
    let traceparent = carrier.remove("traceparent")?;
    Some(TraceContext {
        traceparent,
        tracestate: carrier.remove("tracestate").unwrap_or_default(),
    })
}

/// Makes `span` (not entered yet) a child of the W3C trace context in `headers`, if spans are
/// exported and the headers carry a valid one; otherwise the span starts its own trace.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(traceparent) = header("traceparent") {
        continue_from(span, traceparent, header("tracestate").unwrap_or_default());
    }
}

/// Makes `span` (not entered yet) a child of a W3C trace context (`traceparent`, `tracestate`
/// values, e.g. of a hub change-log entry). Nothing when spans are not exported or the context
/// is empty or malformed.
pub fn continue_from(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if traceparent.is_empty() || !exporting() {
        return;
    }
    let mut carrier = std::collections::HashMap::with_capacity(2);
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_string(), tracestate.to_string());
    }
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Only fails for a span already started or filtered out: it then keeps its own trace.
        let _ = span.set_parent(cx);
    }
}

/// Whether spans are exported at all (callers skip building spans nobody receives).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    /// The trace context of the write job running on this (the writer's) thread.
    static JOB_CONTEXT: std::cell::RefCell<Option<TraceContext>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a write job, on the writer thread) with `cx` as the context its change-log entries
/// record: the job runs on another thread than the request that queued it, so the request's
/// span is not current there; its context travels with the job instead.
pub fn with_job_context<R>(cx: Option<TraceContext>, f: impl FnOnce() -> R) -> R {
    if cx.is_none() {
        return f();
    }
    let previous = JOB_CONTEXT.with(|c| c.replace(cx));
    struct Restore(Option<TraceContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            JOB_CONTEXT.with(|c| *c.borrow_mut() = previous);
        }
    }
    // Restored even if the job panics (the writer catches the panic and carries on).
    let _restore = Restore(previous);
    f()
}

/// The trace context of the write job running on this thread, if it has one.
pub fn job_context() -> Option<TraceContext> {
    JOB_CONTEXT.with(|c| c.borrow().clone())
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
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (provider, note) = edgecart_proto::otlp::provider("edgecart-node");
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("edgecart-node")));
    // `try_init`: a second initialisation (tests) is harmless.
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
