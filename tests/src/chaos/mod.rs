//! The reliability harness: a hub and N nodes as real processes, a [`FaultProxy`] on every
//! node's link, a payment provider and an email relay on loopback, a seeded [`workload`] of
//! shoppers and staff, and the [`check`]s that must hold once faults stop and the system has
//! converged. `tests/tests/reliability.rs` runs the scenarios; `src/bin/edgecart-soak.rs` runs
//! the same workload for a chosen time.
//!
//! Reproducibility: one seed (`CHAOS_SEED`, or drawn at random and printed) drives every random
//! choice the harness makes — fault schedules, which shopper buys what, how each payment is
//! made, which connection loses its acknowledgement. The operating system's scheduling is not
//! under its control, so a rerun with the same seed makes the same choices, not necessarily
//! in the same interleaving.

pub mod check;
pub mod proxy;
pub mod sink;
pub mod workload;

use std::time::Duration;

use edgecart_proto::pb;
use reqwest::Client;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::provider::Provider;
use crate::{ADMIN_TOKEN, AdminToken, TestHub, TestNode, admin_login, register};
use proxy::FaultProxy;
use sink::Sink;

/// The run's seed: `CHAOS_SEED` if set, else drawn at random. Printed so a failure can be rerun.
pub fn seed() -> u64 {
    let seed = match std::env::var("CHAOS_SEED") {
        Ok(s) => s.parse().expect("CHAOS_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("chaos seed: {seed} (rerun with CHAOS_SEED={seed})");
    seed
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub products: usize,
    /// Units received at the hub per product before the workload starts.
    pub initial_stock: i64,
    pub shoppers_per_node: usize,
    /// Wall-clock offset of each node in milliseconds (missing entries: 0).
    pub clock_offsets_ms: Vec<i64>,
    /// Put the hub's data dir on a tmpfs of this many bytes (for disk-full faults).
    pub hub_tmpfs: Option<u64>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 2,
            products: 3,
            initial_stock: 40,
            shoppers_per_node: 3,
            clock_offsets_ms: Vec::new(),
            hub_tmpfs: None,
        }
    }
}

/// A store, its link, and the accounts the workload uses there.
pub struct Store {
    pub node: TestNode,
    pub proxy: FaultProxy,
    pub admin_token: String,
    /// (email, token) of each shopper registered here.
    pub shoppers: Vec<(String, String)>,
}

pub type Inventory =
    pb::inventory_admin_client::InventoryAdminClient<InterceptedService<Channel, AdminToken>>;

/// A running system under test.
pub struct Cluster {
    pub seed: u64,
    pub config: ClusterConfig,
    pub dir: tempfile::TempDir,
    pub hub: TestHub,
    pub stores: Vec<Store>,
    pub provider: Provider,
    pub sink: Sink,
    pub products: Vec<String>,
    pub client: Client,
}

impl Cluster {
    pub async fn start(seed: u64, config: ClusterConfig) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let (provider_url, provider) = Provider::start(0).await;
        let (sink_url, sink) = Sink::start().await;
        let hub_args = Provider::hub_args(&provider_url);
        let hub_args: Vec<&str> = hub_args.iter().map(String::as_str).collect();
        let hub_dir = dir.path().join("hub");
        let hub = match config.hub_tmpfs {
            Some(bytes) => TestHub::start_on_tmpfs(&hub_dir, bytes, &hub_args),
            None => TestHub::start_with(&hub_dir, 0, &hub_args),
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("http client");
        let mut products = Vec::new();
        for i in 0..config.products {
            let name = format!("Chaos item {i}");
            products.push(
                hub.stocked_product(&name, 500 + 100 * i as i64, config.initial_stock)
                    .await,
            );
        }
        let mut stores = Vec::new();
        for i in 0..config.nodes {
            let id = format!("store-{i}");
            let proxy = FaultProxy::start(hub.proc.addr, seed.wrapping_add(i as u64)).await;
            let offset = config
                .clock_offsets_ms
                .get(i)
                .copied()
                .unwrap_or(0)
                .to_string();
            let node = TestNode::start_with(
                &id,
                &dir.path().join(&id),
                Some(&proxy.url()),
                &hub.enroll(&id),
                &[
                    "--email-webhook",
                    &sink_url,
                    "--webhook-backoff-ms",
                    "100",
                    "--webhook-backoff-max-ms",
                    "1000",
                    "--webhook-max-attempts",
                    "100",
                    "--clock-offset-ms",
                    &offset,
                ],
            );
            let admin_token = admin_login(&client, &node).await;
            let mut shoppers = Vec::new();
            for k in 0..config.shoppers_per_node {
                let email = format!("shopper-{k}@{id}.test");
                let token = register(&client, &node, &email).await;
                shoppers.push((email, token));
            }
            stores.push(Store {
                node,
                proxy,
                admin_token,
                shoppers,
            });
        }
        let cluster = Cluster {
            seed,
            config,
            dir,
            hub,
            stores,
            provider,
            sink,
            products,
            client,
        };
        // Every store knows the whole catalog before shoppers arrive.
        let products = cluster.products.clone();
        for store in &cluster.stores {
            for p in &products {
                crate::wait_until(
                    Duration::from_secs(30),
                    "the catalog at every store",
                    || async { crate::stock_at(&cluster.client, &store.node, p).await },
                    || async { store.node.proc.log() },
                )
                .await;
            }
        }
        cluster
    }

    /// Stops every fault on every link.
    pub fn heal(&self) {
        for s in &self.stores {
            s.proxy.set(proxy::Fault::None);
        }
    }
}

/// A channel to the hub (direct, not through any proxy) that connects on first use and
/// reconnects by itself after the hub restarts; every call times out after `timeout`.
pub fn hub_channel(url: &str, timeout: Duration) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("hub url")
        .timeout(timeout)
        .connect_lazy()
}

/// An inventory admin client on the hub (direct, not through any proxy).
pub async fn inventory_client(hub: &TestHub) -> Inventory {
    pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    )
}

/// A consistent copy of a live SQLite database (`VACUUM INTO`), as a backup tool would take.
pub fn backup(db: &std::path::Path, to: &std::path::Path) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open for backup");
    c.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    c.execute("VACUUM INTO ?1", [to.to_str().expect("utf-8 path")])
        .expect("VACUUM INTO");
}

/// Where a node database's change log ends (its last sequence number ever issued).
pub fn log_end(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database")
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)",
            [],
            |r| r.get(0),
        )
        .expect("the change log's end")
}

/// Fills the file system holding `dir` with a ballast file until a write fails (the disk is
/// full); returns the ballast's path and its size.
pub fn fill_disk(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("create ballast");
    let chunk = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => size += n as u64,
        }
    }
    let _ = f.sync_all();
    (path, size)
}
