//! `edgecart-local`: a whole shop on one machine, in one terminal — a hub with the demo catalog
//! and two store nodes syncing with it over real gRPC on loopback. Ctrl-C (or SIGTERM) stops
//! everything within a few seconds and exits 0.
//! Data lives under `./edgecart-local/` (delete it to start afresh).

use std::path::PathBuf;

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Run a local hub and store nodes with demo data")]
struct Args {
    /// Where the hub's and the nodes' SQLite files go.
    #[arg(long, default_value = "edgecart-local")]
    data_dir: PathBuf,
    /// How many store nodes to start.
    #[arg(long, default_value_t = 2)]
    nodes: u16,
    /// HTTP port of the first node; the others follow (0: any free port for each).
    #[arg(long, default_value_t = 8081)]
    first_port: u16,
    /// gRPC port of the hub.
    #[arg(long, default_value_t = 50051)]
    hub_port: u16,
}

const NODE_TOKEN: &str = "local-node-token-not-secret";
const ADMIN_TOKEN: &str = "local-admin-token-not-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = edgecart_node::telemetry::init(edgecart_node::telemetry::LogFormat::Text);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let hub_dir = args.data_dir.join("hub");
    let hub_config = edgecart_hub::Config::parse_from([
        "edgecart-hub",
        "--data-dir",
        &hub_dir.to_string_lossy(),
        "--grpc-addr",
        &format!("127.0.0.1:{}", args.hub_port),
        "--node-token",
        NODE_TOKEN,
        "--admin-token",
        ADMIN_TOKEN,
        "--demo",
    ]);
    let hub_listener = TcpListener::bind(hub_config.grpc_addr).await?;
    let hub_url = format!("http://{}", hub_listener.local_addr()?);
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        edgecart_hub::run(hub_config, hub_listener, async move { s.cancelled().await }).await
    }));

    let mut urls = Vec::new();
    for i in 1..=args.nodes {
        let dir = args.data_dir.join(format!("store-{i}"));
        let config = edgecart_node::Config::parse_from([
            "edgecart-node",
            "--node-id",
            &format!("store-{i}"),
            "--data-dir",
            &dir.to_string_lossy(),
            "--http-addr",
            &format!("127.0.0.1:{}", node_port(args.first_port, i)),
            "--hub-url",
            &hub_url,
            "--hub-token",
            NODE_TOKEN,
            "--demo",
        ]);
        let listener = TcpListener::bind(config.http_addr).await?;
        urls.push(format!("http://{}", listener.local_addr()?));
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            edgecart_node::run(config, listener, async move { s.cancelled().await }).await
        }));
    }

    println!(
        "\n  edgecart local shop: a hub and {} store nodes\n",
        args.nodes
    );
    println!("  hub (gRPC)        {hub_url}   admin token: {ADMIN_TOKEN}");
    for (i, url) in urls.iter().enumerate() {
        println!("  store-{} kiosk     {url}/   <- open in a browser", i + 1);
        println!("  store-{} (REST)    {url}/v1/products", i + 1);
    }
    println!(
        "  admin login       {} / {}",
        edgecart_node::demo::DEMO_ADMIN_EMAIL,
        edgecart_node::demo::DEMO_ADMIN_PASSWORD
    );
    println!("\n  see sync at work:");
    println!("    curl -s {}/v1/products | head -c 400", urls[0]);
    println!(
        "    cargo run -p edgecart-hub --bin edgecart-admin -- --hub {hub_url} --token {ADMIN_TOKEN} nodes"
    );
    println!("  stop: Ctrl-C\n");

    edgecart_node::shutdown_signal().await;
    stop.cancel();
    // Each part bounds its own stop; this bound is the last word, so the launcher never hangs.
    let all = async {
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                eprintln!("error: {e:#}");
            }
        }
    };
    if tokio::time::timeout(STOP_WITHIN, all).await.is_err() {
        eprintln!("error: not stopped after {STOP_WITHIN:?}; exiting anyway");
        std::process::exit(1);
    }
    Ok(())
}

const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP port of node `i` (from 1).
fn node_port(first: u16, i: u16) -> u16 {
    if first == 0 { 0 } else { first + i - 1 }
}
