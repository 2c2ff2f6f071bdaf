//! Logging set-up: `RUST_LOG`-style filtering, human-readable or JSON lines, on stderr.
//!
//! Request ids: every HTTP request runs inside an `http` span carrying `request_id` (see
//! `http::router`), and both formats print the spans of a line, so every line a request logs
//! names it. Secrets never reach a log line: the configuration's `Debug` redacts them and the
//! `Authorization` header is marked sensitive.

use tracing_subscriber::EnvFilter;

/// `--log-format` / `EDGECART_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`request_id`) and the span list.
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second initialisation (tests) is harmless.
    match format {
        LogFormat::Json => {
            let _ = builder.json().flatten_event(true).try_init();
        }
        LogFormat::Text => {
            let _ = builder.try_init();
        }
    }
}
