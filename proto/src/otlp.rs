//! The OTLP trace exporter both services build from the standard OpenTelemetry environment
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf`,
//! `OTEL_SERVICE_NAME`, the SDK's `OTEL_TRACES_SAMPLER`): off without an endpoint.

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The tracer provider the OTEL_* environment asks for, or `None` (tracing off), and a
/// note to log once logging is up.
pub fn provider(default_service: &str) -> (Option<SdkTracerProvider>, Option<String>) {
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
