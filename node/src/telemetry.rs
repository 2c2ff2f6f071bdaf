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

pub use edgecart_proto::telemetry::{
    LogFormat, Telemetry, continue_from, exporting, record_trace_id,
};

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
    if !exporting() {
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

pub fn init(format: LogFormat) -> Telemetry {
    edgecart_proto::telemetry::init(format, "edgecart-node", "info,tower_http=info")
}
