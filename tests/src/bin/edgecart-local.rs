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
        // Each store presents its own credential, issued by the hub (NodeAdmin/EnrollNode) on
        // the first run and kept in the store's data dir for the next ones.
        let credential = store_credential(&hub_url, &format!("store-{i}"), &dir).await?;
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
            &credential,
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

/// The credential of store `id`: the one kept in `dir`, or a new one from the hub (enrolled, or
/// rotated when the store was enrolled before and its file is gone).
async fn store_credential(
    hub_url: &str,
    id: &str,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    use edgecart_proto::pb;
    let file = dir.join("hub-credential");
    if let Ok(kept) = std::fs::read_to_string(&file) {
        return Ok(kept.trim().to_string());
    }
    let channel = connect(hub_url).await?;
    let mut admin = pb::node_admin_client::NodeAdminClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            let value = format!("Bearer {ADMIN_TOKEN}")
                .parse()
                .map_err(|_| tonic::Status::internal("token"))?;
            req.metadata_mut().insert("authorization", value);
            Ok(req)
        },
    );
    let credential = match admin
        .enroll_node(pb::EnrollNodeRequest {
            node_id: id.to_string(),
            catalog_edits: None,
        })
        .await
    {
        Ok(r) => r.into_inner().credential,
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            admin
                .rotate_node(pb::RotateNodeRequest {
                    node_id: id.to_string(),
                })
                .await?
                .into_inner()
                .credential
        }
        Err(s) => return Err(s.into()),
    };
    std::fs::create_dir_all(dir)?;
    write_secret(&file, &credential)?;
    Ok(credential)
}

/// Writes a secret readable by this user only.
fn write_secret(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(secret.as_bytes())
}

/// Connects to the hub started above (it is already listening: its socket is bound).
async fn connect(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP port of node `i` (from 1).
fn node_port(first: u16, i: u16) -> u16 {
    if first == 0 { 0 } else { first + i - 1 }
}
