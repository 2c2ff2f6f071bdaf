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

    /// Token this node presents to the hub.
    #[arg(long, env = "EDGECART_HUB_TOKEN", hide_env_values = true)]
    pub hub_token: Option<String>,

    /// Secret for signing customer JWTs (HS256). At least 32 bytes. Required unless --demo.
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

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "EDGECART_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("edgecart-node.db")
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
