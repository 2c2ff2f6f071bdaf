use clap::Parser;
use edgecart_hub::{Config, init_telemetry, run, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = init_telemetry(config.log_format());
    tracing::debug!(?config, "configuration");
    let listener = tokio::net::TcpListener::bind(config.grpc_addr).await?;
    run(config, listener, shutdown_signal()).await
}
