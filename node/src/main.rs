use clap::Parser;
use edgecart_node::{Config, run, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init(config.log_format());
    tracing::debug!(?config, "configuration");
    let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
    run(config, listener, shutdown_signal()).await
}
