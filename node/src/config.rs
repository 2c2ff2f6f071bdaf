//! Command-line and environment configuration: every flag is also `EDGECART_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::db::Durability;

#[derive(Parser, Clone)]
#[command(
    name = "edgecart-node",
    version,
    about = "edgecart edge node: a whole shop on one SQLite file"
)]
pub struct Config {
    /// This node's replica id (1-64 chars of A-Z a-z 0-9 . _ -).
    #[arg(long, env = "EDGECART_NODE_ID", default_value = "node-1")]
    pub node_id: String,

    /// Directory holding the SQLite file (`edgecart-node.db`).
    #[arg(long, env = "EDGECART_DATA_DIR", default_value = "edgecart-data")]
    pub data_dir: PathBuf,

    /// Address of the REST API; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "EDGECART_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// The hub's gRPC URL. Without it the node runs standalone (offline).
    #[arg(long, env = "EDGECART_HUB_URL")]
    pub hub_url: Option<String>,

    /// CA certificate(s) (PEM) to trust for an `https://` hub URL, e.g. a private CA; without
    /// it the system roots are trusted.
    #[arg(long, env = "EDGECART_HUB_CA")]
    pub hub_ca: Option<PathBuf>,

    /// This store's credential, issued by the hub (`edgecart-admin nodes enroll ID`).
    #[arg(long, env = "EDGECART_HUB_TOKEN", hide_env_values = true)]
    pub hub_token: Option<String>,

    /// Without --hub-token: a bootstrap token the hub accepts for enrolling new stores only;
    /// the store enrolls itself once and keeps its credential in its data dir.
    #[arg(long, env = "EDGECART_HUB_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub hub_bootstrap_token: Option<String>,

    /// Secret for signing customer JWTs (HS256), at least 32 bytes. Without it the store makes
    /// a key of its own on first start (`DATA_DIR/jwt.key`), so tokens are valid at this store only.
    #[arg(long, env = "EDGECART_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// How long an issued token is valid, in seconds.
    #[arg(long, env = "EDGECART_JWT_TTL_SECS", default_value_t = 3600)]
    pub jwt_ttl_secs: u64,

    /// Creates this admin account on first start if it does not exist.
    #[arg(long, env = "EDGECART_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of the bootstrap admin.
    #[arg(long, env = "EDGECART_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// A `LowStock` event fires when units sellable here fall below this.
    #[arg(long, env = "EDGECART_LOW_STOCK_THRESHOLD", default_value_t = 5)]
    pub low_stock_threshold: u64,

    /// While the hub is unreachable, card payments up to this amount (minor units) are accepted
    /// as `authorized_offline` and charged when the link is back.
    #[arg(long, env = "EDGECART_OFFLINE_CARD_LIMIT", default_value_t = 10_000)]
    pub offline_card_limit: i64,

    /// Most card money (minor units) this node holds accepted offline and not yet charged.
    #[arg(long, env = "EDGECART_OFFLINE_CARD_TOTAL", default_value_t = 50_000)]
    pub offline_card_total: i64,

    /// How long a response stored for an `Idempotency-Key` is replayed, in seconds. A retry
    /// after that is a new request; expired keys are pruned as new ones are written.
    #[arg(long, env = "EDGECART_IDEMPOTENCY_RETENTION_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub idempotency_retention_secs: u64,

    /// Without `--hub-url`: how often the change log is compacted to the newest entry per
    /// record (what a hub connected later needs), in seconds.
    #[arg(long, env = "EDGECART_CHANGELOG_COMPACT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub changelog_compact_secs: u64,

    /// The kiosk app at `/` signs its shopper out, clears the cart and returns to the start
    /// screen after this many seconds without a touch (a shared screen forgets its shopper).
    #[arg(long, env = "EDGECART_KIOSK_IDLE_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub kiosk_idle_secs: u64,

    /// The store's currency (ISO 4217); every price and order is in it.
    #[arg(long, env = "EDGECART_CURRENCY", default_value = "USD")]
    pub currency: String,

    /// Demo mode: seed a small catalog once, and fill in a development JWT secret and an admin
    /// account if none are given. Not for production.
    #[arg(long, env = "EDGECART_DEMO")]
    pub demo: bool,

    /// Commit durability: `full` fsyncs every commit before answering (default).
    #[arg(
        long,
        env = "EDGECART_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: Durability,

    /// Most writes folded into one transaction (group commit); 1 commits each write alone.
    #[arg(long, env = "EDGECART_GROUP_COMMIT_MAX", default_value_t = 256)]
    pub group_commit_max: usize,

    /// Read-only SQLite connections serving queries.
    #[arg(long, env = "EDGECART_READERS", default_value_t = 4)]
    pub readers: usize,

    /// Testing only: shift this node's wall clock by this many milliseconds (negative = behind),
    /// to rehearse a store whose clock is off. Hidden from `--help`.
    #[arg(
        long,
        env = "EDGECART_CLOCK_OFFSET_MS",
        default_value_t = 0,
        allow_negative_numbers = true,
        hide = true
    )]
    pub clock_offset_ms: i64,

    /// Log format: `text` (human-readable, the default) or `json` (one object per line).
    #[arg(long, env = "EDGECART_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,

    /// Deprecated spelling of `--log-format json` (kept for existing deployments).
    #[arg(long, env = "EDGECART_LOG_JSON", hide = true)]
    pub log_json: bool,

    /// Deliver `email` notifications by POSTing them to this http:// URL. Without it no email
    /// notifications are queued.
    #[arg(long, env = "EDGECART_EMAIL_WEBHOOK", value_name = "URL")]
    pub email_webhook: Option<String>,

    /// Deliver `push` notifications by POSTing them to this http:// URL. Without it no push
    /// notifications are queued.
    #[arg(long, env = "EDGECART_PUSH_WEBHOOK", value_name = "URL")]
    pub push_webhook: Option<String>,

    /// Webhook attempts per notification before it is dead-lettered.
    #[arg(long, env = "EDGECART_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,

    /// Back-off before the first webhook retry, in ms; it doubles on each failure (with jitter).
    #[arg(long, env = "EDGECART_WEBHOOK_BACKOFF_MS", default_value_t = 500)]
    pub webhook_backoff_ms: u64,

    /// Longest back-off between webhook retries, in ms.
    #[arg(
        long,
        env = "EDGECART_WEBHOOK_BACKOFF_MAX_MS",
        default_value_t = 300_000
    )]
    pub webhook_backoff_max_ms: u64,

    /// Timeout of one webhook request (connect + response), in ms.
    #[arg(long, env = "EDGECART_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,
}

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("edgecart-node.db")
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
    // Hand-written so that secrets can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("http_addr", &self.http_addr)
            .field("hub_url", &self.hub_url)
            .field("hub_token", &self.hub_token.as_ref().map(|_| "<redacted>"))
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_email", &self.admin_email)
            .field("demo", &self.demo)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("group_commit_max", &self.group_commit_max)
            .finish_non_exhaustive()
    }
}
