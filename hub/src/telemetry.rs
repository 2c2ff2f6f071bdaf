//! Logging set-up: `RUST_LOG`-style filtering, human-readable or JSON lines, on stderr.
//!
//! Request ids: every gRPC call runs inside a `grpc` span carrying its method and `request_id`
//! (see `observability::GrpcLayer`), and both formats print the spans of a line. The tokens
//! never reach a log line: the configuration's `Debug` leaves them out.

/// `--log-format` / `EDGECART_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields and the span list.
    Json,
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second initialisation (tests, several services in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
