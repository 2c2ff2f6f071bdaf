//! One run at one fleet size: set up (hub and nodes when local, products and stock, shoppers'
//! readiness), enrol and connect the simulated stores, measure for the duration (with a hub
//! kill half-way when asked), then stop, clean up and build the [`RunReport`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{ErrorCounts, LoadError};
use crate::hub::{Admin, HubTarget, Secret};
use crate::local::LocalCluster;
use crate::monitor::{HubPid, Monitor, Watched};
use crate::probe::{ProbeNode, Probes};
use crate::progress::Ui;
use crate::report::{Event, HubKill, RunReport};
use crate::shopper::{NodeClient, ShopStats};
use crate::sim::{Fleet, FleetSnapshot, GlobalWatch, SimConfig};

/// How long stores may take to come back after a hub restart before the run gives up on them.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the real nodes may take to receive the run's products from the hub.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(60);

/// What the tool runs against.
#[derive(Clone, Debug)]
pub enum Target {
    /// A deployment's hub (e.g. a chain's staging), with real nodes already syncing with it.
    Remote {
        hub: HubTarget,
        admin_token: Secret,
        nodes: Vec<String>,
    },
    /// A hub and `nodes` real nodes this tool starts from binaries (a fresh set per run).
    Local {
        hub_bin: PathBuf,
        node_bin: PathBuf,
        nodes: usize,
    },
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub stores: usize,
    /// One sale per simulated store this often (`None`: no sales).
    pub sale_every: Option<Duration>,
    /// The measured phase, after all stores connected (or the connect timeout passed).
    pub duration: Duration,
    /// Products the run creates (plus one probe product).
    pub products: usize,
    /// Orders per second over all shoppers at all real nodes (0: no shoppers).
    pub orders_per_sec: f64,
    pub shoppers_per_node: usize,
    pub stores_per_connection: usize,
    /// Local only: SIGKILL the hub half-way and restart it on the same data and address.
    pub kill_hub: bool,
    pub connect_timeout: Duration,
    /// Remote only: decommission the simulated stores and archive the products at the end.
    pub cleanup: bool,
    pub enroll_concurrency: usize,
}

impl RunSettings {
    pub fn validate(&self, target: &Target) -> Result<(), LoadError> {
        if self.stores == 0 {
            return Err(LoadError::Settings("--stores must be at least 1".into()));
        }
        if self.products == 0 {
            return Err(LoadError::Settings("--products must be at least 1".into()));
        }
        if self.duration.is_zero() {
            return Err(LoadError::Settings(
                "--duration must be at least 1 s".into(),
            ));
        }
        if !self.orders_per_sec.is_finite() || self.orders_per_sec < 0.0 {
            return Err(LoadError::Settings("--orders-per-sec must be ≥ 0".into()));
        }
        if self.kill_hub && matches!(target, Target::Remote { .. }) {
            return Err(LoadError::Settings(
                "--kill-hub needs --local (the tool kills only a hub it started)".into(),
            ));
        }
        Ok(())
    }
}

/// Raw results, turned into a [`RunReport`] by `crate::summary`.
pub(crate) struct Outcome {
    pub stores: usize,
    pub local: bool,
    pub enroll_secs: f64,
    pub connect_all_secs: Option<f64>,
    pub connected_stores: usize,
    pub kill: Option<HubKill>,
    pub measured_secs: f64,
    pub start: FleetSnapshot,
    pub end: FleetSnapshot,
    pub samples: Vec<crate::probe::Sample>,
    pub shop: Arc<ShopStats>,
    pub paid_at_start: u64,
    pub sampled: crate::monitor::Sampled,
    pub events: Vec<Event>,
    pub errors: ErrorCounts,
    pub epoch: Instant,
}

/// Runs one fleet size against `target`.
pub async fn run_once(target: &Target, s: &RunSettings, ui: &Ui) -> Result<RunReport, LoadError> {
    s.validate(target)?;
    let prefix = format!("[{} stores]", s.stores);
    let (mut cluster, hub, token, node_urls) = match target {
        Target::Local {
            hub_bin,
            node_bin,
            nodes,
        } => {
            ui.note(&format!(
                "{prefix} starting a local hub and {nodes} node(s)"
            ));
            ui.step(&prefix, "starting the hub and nodes");
            let c = LocalCluster::start(hub_bin, node_bin, *nodes).await?;
            let (hub, token, urls) = (c.hub_target(), c.admin_token().clone(), c.node_urls());
            (Some(c), hub, token, urls)
        }
        Target::Remote {
            hub,
            admin_token,
            nodes,
        } => (None, hub.clone(), admin_token.clone(), nodes.clone()),
    };
    let result = measure(&mut cluster, &hub, &token, &node_urls, s, ui, &prefix).await;
    if let Some(c) = cluster {
        c.stop().await;
    }
    result.map(crate::summary::report)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    cluster: &mut Option<LocalCluster>,
    hub: &HubTarget,
    token: &Secret,
    node_urls: &[String],
    s: &RunSettings,
    ui: &Ui,
    prefix: &str,
) -> Result<Outcome, LoadError> {
    let errors = ErrorCounts::default();
    let admin = Admin::connect(hub, token).await?;
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);

    // Products, with stock at the hub for every store's floor and a share for the nodes.
    ui.note(&format!(
        "{prefix} creating {} products (+1 probe)",
        s.products
    ));
    ui.step(prefix, "creating products");
    // 100 per store: the hub's reserve (10 %) then covers every joining store's floor (5).
    let units = (s.stores as i64 * 100).max(10_000);
    let mut products = Vec::with_capacity(s.products);
    for i in 1..=s.products {
        let id = admin
            .create_product(&format!("Load {tag} #{i}"), 100 + i as i64)
            .await?;
        admin.receive_stock(&id, units).await?;
        products.push(id);
    }
    let probe = admin
        .create_product(&format!("Load {tag} probe"), 99)
        .await?;
    admin.receive_stock(&probe, units).await?;

    // Real nodes: they must know the products before shoppers and probes use them.
    let nodes: Vec<NodeClient> = node_urls
        .iter()
        .map(|u| NodeClient::new(u))
        .collect::<Result<_, _>>()?;
    let mut all_products = products.clone();
    all_products.push(probe.clone());
    let mut probe_nodes = Vec::new();
    if !nodes.is_empty() {
        ui.step(prefix, "waiting for the real nodes to get the products");
    }
    for (i, node) in nodes.iter().enumerate() {
        node.wait_products(&all_products, CATALOG_TIMEOUT).await?;
        let email = format!("probe-{tag}-{i}@load.example");
        let token = node.register(&email).await.map_err(|e| LoadError::Node {
            url: node.url().to_string(),
            why: e.to_string(),
        })?;
        probe_nodes.push(ProbeNode {
            client: node.clone(),
            email,
            token,
        });
    }

    // One socket per connection here, and as many at a local hub (which inherits the limit).
    let sockets = s.stores.div_ceil(s.stores_per_connection.max(1)) as u64 + 64;
    if let Some(limit) = crate::procfs::open_files_limit()
        && limit < sockets
    {
        ui.note(&format!(
            "{prefix} warning: the open-files limit is {limit}, {sockets} are needed: raise it \
             (ulimit -n {sockets}) or use --stores-per-connection"
        ));
    }

    // Enrol the simulated stores.
    ui.phase(prefix, "enrolling", s.stores as u64);
    let ids: Vec<String> = (1..=s.stores)
        .map(|i| format!("load-{tag}-{i:05}"))
        .collect();
    let t = Instant::now();
    let enrolled = admin
        .enroll_all(&ids, s.enroll_concurrency, |n| ui.set(n as u64))
        .await?;
    let enroll_secs = t.elapsed().as_secs_f64();

    // Connect them.
    let watch = Arc::new(GlobalWatch::new(probe.clone()));
    let mut config = SimConfig::new(hub.clone());
    config.sale_every = s.sale_every;
    config.exclude_from_sales = vec![probe.clone()];
    config.stores_per_connection = s.stores_per_connection;
    config.watch = Some(watch.clone());
    ui.phase(prefix, "connecting", s.stores as u64);
    let fleet = Arc::new(Fleet::start_counting(config, enrolled, errors.clone())?);
    let epoch = Instant::now();
    let hub_pid: HubPid = Arc::new(Mutex::new(cluster.as_ref().and_then(|c| c.hub_pid())));
    let shop = Arc::new(ShopStats::default());
    let monitor = Monitor::start(
        Watched {
            fleet: fleet.clone(),
            shop: shop.clone(),
            hub_pid: hub_pid.clone(),
            local_hub: cluster.is_some(),
            errors: errors.clone(),
            epoch,
        },
        ui.clone(),
    );
    let mut events = Vec::new();
    let connect_all_secs = match fleet
        .wait_connected(s.connect_timeout, |n| ui.set(n as u64))
        .await
    {
        Ok(d) => {
            events.push(Event {
                t: epoch.elapsed().as_secs_f64(),
                what: "all connected".into(),
            });
            Some(d.as_secs_f64())
        }
        Err(e) => {
            errors.add("connect_all_timeout");
            ui.note(&format!("{prefix} {e}"));
            None
        }
    };
    let connected_stores = fleet.connected();
    match connect_all_secs {
        Some(c) => ui.note(&format!(
            "{prefix} enrolled in {enroll_secs:.1} s, all connected in {c:.2} s"
        )),
        None => ui.note(&format!(
            "{prefix} {connected_stores} of {} connected",
            s.stores
        )),
    }

    // The measured phase: shoppers, probes, and the hub kill.
    ui.running(prefix, s.duration.as_secs());
    let stop = CancellationToken::new();
    // Shoppers and probes end with this function, also when it fails half-way.
    let _stop_on_exit = stop.clone().drop_guard();
    let paused = Arc::new(AtomicBool::new(false));
    let shoppers = nodes.len() * s.shoppers_per_node.max(1);
    let mut shop_tasks = Vec::new();
    if s.orders_per_sec > 0.0 && shoppers > 0 {
        let every = Duration::from_secs_f64(shoppers as f64 / s.orders_per_sec);
        let products = Arc::new(products.clone());
        for (i, node) in nodes.iter().enumerate() {
            for k in 0..s.shoppers_per_node.max(1) {
                shop_tasks.push(tokio::spawn(crate::shopper::shop(
                    node.clone(),
                    products.clone(),
                    every,
                    format!("{tag}-{i}-{k}"),
                    shop.clone(),
                    errors.clone(),
                    stop.clone(),
                )));
            }
        }
    }
    let probes = Probes {
        product: probe.clone(),
        fleet: fleet.clone(),
        watch,
        nodes: probe_nodes,
        admin: admin.clone(),
        errors: errors.clone(),
        paused: paused.clone(),
        epoch,
    };
    let probe_task = tokio::spawn(probes.run(stop.clone()));
    let start = fleet.snapshot();
    let paid_at_start = shop.paid.load(Ordering::Relaxed);
    let run_start = Instant::now();
    let end_at = run_start + s.duration;
    let mut kill_at = (s.kill_hub && cluster.is_some()).then(|| run_start + s.duration / 2);
    let mut kill = None;
    loop {
        let now = Instant::now();
        ui.set(now.duration_since(run_start).as_secs());
        if let Some(at) = kill_at
            && now >= at
            && let Some(c) = cluster.as_mut()
        {
            kill_at = None;
            let before = errors.snapshot();
            let mut k = kill_and_restart(c, &fleet, &hub_pid, &paused, epoch, &mut events).await?;
            k.errors = errors
                .snapshot()
                .into_iter()
                .filter_map(|(kind, n)| {
                    let d = n - before.get(&kind).copied().unwrap_or(0);
                    (d > 0).then_some((kind, d))
                })
                .collect();
            ui.note(&format!(
                "{prefix} hub killed at {:.1} s, listening again after {:.2} s, {} stores back{}",
                k.killed_at_secs,
                k.restart_secs,
                k.stores_back,
                k.reconnect_all_secs
                    .map_or(String::new(), |r| format!(" in {r:.2} s"))
            ));
            if k.reconnect_all_secs.is_none() {
                errors.add("reconnect_all_timeout");
            }
            kill = Some(k);
            continue;
        }
        if now >= end_at {
            break;
        }
        tokio::time::sleep((end_at - now).min(Duration::from_millis(200))).await;
    }
    let end = fleet.snapshot();
    let measured_secs = run_start.elapsed().as_secs_f64();
    stop.cancel();
    let samples = probe_task.await.unwrap_or_default();
    for t in shop_tasks {
        let _ = t.await;
    }
    fleet.stop().await;
    let sampled = monitor.finish().await;
    ui.finish();
    if cluster.is_none() && s.cleanup {
        clean_up(&admin, &fleet.ids(), &all_products, &errors, ui, prefix).await;
    }
    Ok(Outcome {
        stores: s.stores,
        local: cluster.is_some(),
        enroll_secs,
        connect_all_secs,
        connected_stores,
        kill,
        measured_secs,
        start,
        end,
        samples,
        shop,
        paid_at_start,
        sampled,
        events,
        errors,
        epoch,
    })
}

/// SIGKILLs the local hub, restarts it on the same data and address, and waits until every
/// store has a new session.
async fn kill_and_restart(
    cluster: &mut LocalCluster,
    fleet: &Fleet,
    hub_pid: &HubPid,
    paused: &AtomicBool,
    epoch: Instant,
    events: &mut Vec<Event>,
) -> Result<HubKill, LoadError> {
    paused.store(true, Ordering::Release);
    let killed = Instant::now();
    *hub_pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
    cluster.kill_hub().await;
    events.push(Event {
        t: killed.duration_since(epoch).as_secs_f64(),
        what: "hub killed".into(),
    });
    cluster.restart_hub().await?;
    let up = Instant::now();
    *hub_pid.lock().unwrap_or_else(|p| p.into_inner()) = cluster.hub_pid();
    events.push(Event {
        t: up.duration_since(epoch).as_secs_f64(),
        what: "hub listening again".into(),
    });
    let back = fleet
        .wait_reconnected(up, RECONNECT_TIMEOUT, |_| {})
        .await
        .ok();
    if let Some(d) = back {
        events.push(Event {
            t: (up + d).duration_since(epoch).as_secs_f64(),
            what: "all back".into(),
        });
    }
    paused.store(false, Ordering::Release);
    let stores_back = fleet
        .snapshot()
        .stores
        .iter()
        .filter(|s| s.connected && s.last_welcome.is_some_and(|w| w > up))
        .count();
    Ok(HubKill {
        killed_at_secs: killed.duration_since(epoch).as_secs_f64(),
        restart_secs: up.duration_since(killed).as_secs_f64(),
        reconnect_all_secs: back.map(|d| d.as_secs_f64()),
        stores_back,
        errors: Default::default(),
    })
}

/// Against a deployment's hub: retire the run's stores and archive its products, so they
/// neither hold back the hub's compaction nor show in the catalog.
async fn clean_up(
    admin: &Admin,
    stores: &[String],
    products: &[String],
    errors: &ErrorCounts,
    ui: &Ui,
    prefix: &str,
) {
    use futures::StreamExt as _;
    ui.phase(
        prefix,
        "cleaning up",
        (stores.len() + products.len()) as u64,
    );
    let mut done = 0u64;
    let mut calls =
        futures::stream::iter(stores.iter().map(|id| admin.decommission(id))).buffer_unordered(4);
    while let Some(r) = calls.next().await {
        if r.is_err() {
            errors.add("cleanup_decommission");
        }
        done += 1;
        ui.set(done);
    }
    for p in products {
        if admin.archive_product(p).await.is_err() {
            errors.add("cleanup_archive");
        }
        done += 1;
        ui.set(done);
    }
    ui.finish();
    ui.note(&format!(
        "{prefix} decommissioned {} simulated stores, archived {} products",
        stores.len(),
        products.len()
    ));
}
