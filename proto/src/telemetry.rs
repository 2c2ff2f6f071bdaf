//! Logs and traces, the same for the node and the hub (feature `telemetry`): human-readable or
//! JSON lines on stderr, and spans exported over OTLP when the standard OpenTelemetry
//! environment asks for it (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` =
//! `http/protobuf`, `OTEL_SERVICE_NAME`, the SDK's `OTEL_TRACES_SAMPLER`). Off without an
//! endpoint: then no OpenTelemetry layer exists and the hot path pays one atomic load at most.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
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

/// Makes `span` (not entered yet) a child of a W3C trace context (`traceparent`, `tracestate`
/// values, e.g. of a change-log entry), so the receiver's work joins the writer's trace.
/// Nothing when spans are not exported or the context is empty or malformed: the span then
/// stays where it was.
pub fn continue_from(span: &tracing::Span, traceparent: &str, tracestate: &str) {
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

/// Logs to stderr in `format`, filtered by `RUST_LOG` (else `default_filter`), and exports
/// spans over OTLP as `service` (the default `OTEL_SERVICE_NAME`) when the OpenTelemetry
/// environment asks for it. Keep the answer until shutdown: dropping it flushes the spans.
pub fn init(format: LogFormat, service: &'static str, default_filter: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (provider, note) = provider(service);
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The tracer provider the OTEL_* environment asks for, or `None` (tracing off), and a
/// note to log once logging is up.
fn provider(default_service: &str) -> (Option<SdkTracerProvider>, Option<String>) {
    if env("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .is_none()
    {
        return (None, None);
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol != "http/protobuf" {
        return (
            None,
            Some(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported (only http/protobuf): \
                 traces are off"
            )),
        );
    }
    let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string());
    // The blocking HTTP client starts a runtime of its own: build it off this (async) thread.
    let built = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name(service).build())
                    .build()
            })
    })
    .join();
    match built {
        Ok(Ok(provider)) => (Some(provider), None),
        Ok(Err(e)) => (
            None,
            Some(format!("the OTLP exporter: {e}; traces are off")),
        ),
        Err(_) => (
            None,
            Some("the OTLP exporter panicked; traces are off".into()),
        ),
    }
}
