//! Command line / environment of `edgecart-hub`: every flag is also `EDGECART_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Clone)]
#[command(
    name = "edgecart-hub",
    version,
    about = "edgecart hub: reconciles the store nodes"
)]
pub struct Config {
    /// Directory holding the SQLite file (`edgecart-hub.db`).
    #[arg(long, env = "EDGECART_DATA_DIR", default_value = "edgecart-hub-data")]
    pub data_dir: PathBuf,

    /// gRPC listen address; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "EDGECART_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// TLS certificate chain (PEM) of the gRPC port; with --tls-key.
    #[arg(long, env = "EDGECART_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the gRPC port; with --tls-cert.
    #[arg(long, env = "EDGECART_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve plaintext gRPC on a non-loopback address (behind a TLS-terminating proxy, or on a
    /// private network you trust). Without TLS and without this, only loopback is served.
    #[arg(long, env = "EDGECART_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,

    /// Token operators and tools present to the admin services.
    #[arg(long, env = "EDGECART_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Optional bootstrap token: it lets a store enroll itself (NodeAdmin/EnrollNode of an id
    /// not enrolled yet) and nothing else. Remove it once the fleet is enrolled.
    #[arg(long, env = "EDGECART_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Seed a demo catalog with stock at the hub once (into an empty catalog).
    #[arg(long, env = "EDGECART_DEMO")]
    pub demo: bool,

    /// Payment provider: `sim` (built-in, deterministic test tokens) or `http`.
    #[arg(
        long,
        env = "EDGECART_PAYMENT_PROVIDER",
        value_enum,
        default_value = "sim"
    )]
    pub payment_provider: ProviderKind,

    /// Base URL of the HTTP payment provider.
    #[arg(long, env = "EDGECART_PROVIDER_URL")]
    pub provider_url: Option<String>,

    /// API key for the HTTP payment provider.
    #[arg(long, env = "EDGECART_PROVIDER_KEY", hide_env_values = true)]
    pub provider_key: Option<String>,

    /// Log format: `text` (human-readable, the default) or `json` (one object per line).
    #[arg(long, env = "EDGECART_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,

    /// Deprecated spelling of `--log-format json` (kept for existing deployments).
    #[arg(long, env = "EDGECART_LOG_JSON", hide = true)]
    pub log_json: bool,

    /// Sync Hellos handled at once; up to four times as many more wait (at most a second) for a
    /// turn. Beyond that a connecting store is answered UNAVAILABLE at once, with a retry hint
    /// (`grpc-retry-pushback-ms`) it waits for before it tries again: a reconnecting fleet is
    /// let in at the pace the hub can take.
    #[arg(
        long,
        env = "EDGECART_HELLO_CONCURRENCY",
        default_value_t = crate::state::DEFAULT_HELLO_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub hello_concurrency: u16,

    /// Serve Prometheus metrics (`/metrics`) and `/healthz` over HTTP on this address; port 0
    /// picks a free port (the bound address is logged). Off when not set.
    #[arg(long, env = "EDGECART_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    Sim,
    Http,
}

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("edgecart-hub.db")
    }

    /// The log format, counting the deprecated `--log-json`.
    pub fn log_format(&self) -> crate::telemetry::LogFormat {
        if self.log_json {
            crate::telemetry::LogFormat::Json
        } else {
            self.log_format
        }
    }
}

impl std::fmt::Debug for Config {
    // Hand-written so the tokens never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("tls_cert", &self.tls_cert)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("demo", &self.demo)
            .field("hello_concurrency", &self.hello_concurrency)
            .field("payment_provider", &self.payment_provider)
            .field("provider_url", &self.provider_url)
            .finish_non_exhaustive()
    }
}
