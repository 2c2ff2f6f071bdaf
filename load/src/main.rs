//! `edgecart-load`: simulate a fleet of stores against a hub and report what it did.
//!
//!   edgecart-load --local --stores 100 --duration 60 --kill-hub --out report/
//!   edgecart-load --local --stores 100,300,1000 --out sweep/
//!   edgecart-load --hub https://hub.staging:50051 --hub-ca ca.pem --stores 300 \
//!       --node http://store-1.staging:8080 --node http://store-2.staging:8080 --out staging/
//!   (admin token from EDGECART_ADMIN_TOKEN or --admin-token)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use edgecart_load::hub::{HubTarget, Secret};
use edgecart_load::local::default_bin;
use edgecart_load::progress::Ui;
use edgecart_load::report::{Report, RunReport, Settings};
use edgecart_load::{RunSettings, Target, run_once, write_report};

#[derive(Parser)]
#[command(
    name = "edgecart-load",
    version,
    about = "Fleet load tool: simulated stores on Sync streams and shoppers at real nodes, with a report and charts",
    after_help = "Either --local (a hub and two nodes started here) or --hub with --admin-token \
                  (a deployment's hub; the run enrols its own stores and creates its own products, \
                  and retires and archives them at the end unless --keep). See docs/load.md."
)]
struct Args {
    /// The hub's gRPC URL, http:// or https:// (not with --local).
    #[arg(
        long,
        env = "EDGECART_HUB_URL",
        conflicts_with = "local",
        required_unless_present = "local"
    )]
    hub: Option<String>,

    /// The hub's admin token: enrols the simulated stores, creates the run's products and stock.
    /// Never printed.
    #[arg(
        long,
        env = "EDGECART_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "local",
        required_unless_present = "local"
    )]
    admin_token: Option<String>,

    /// CA certificate(s), PEM, to trust for an https:// hub (default: the system roots).
    #[arg(long, env = "EDGECART_HUB_CA", conflicts_with = "local")]
    hub_ca: Option<PathBuf>,

    /// Simulated stores. A comma list (100,300,1000) is a sweep: one run per size.
    #[arg(long, default_value = "100", value_parser = parse_sizes)]
    stores: Sizes,

    /// Seconds between two sales of one simulated store (each sells one unit of a product it
    /// holds rights for); 0: the stores do not sell.
    #[arg(long, default_value_t = 5.0)]
    sale_every_secs: f64,

    /// Length of each run's measured phase, seconds (after the stores connected).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,

    /// A real node's REST base URL (http://host:port) for shoppers and propagation probes;
    /// repeat for several nodes. Not with --local, which starts its own.
    #[arg(long = "node", value_name = "URL", conflicts_with = "local")]
    nodes: Vec<String>,

    /// Directory for report.json and the SVG charts (created).
    #[arg(long, default_value = "edgecart-load-report")]
    out: PathBuf,

    /// Start a hub and real nodes from their binaries in a temp dir on ports the OS picks,
    /// enrol the nodes, and stop everything at the end (a fresh set for every size).
    #[arg(long)]
    local: bool,

    /// --local: the hub binary (default: edgecart-hub next to this executable).
    #[arg(long, requires = "local")]
    hub_bin: Option<PathBuf>,

    /// --local: the node binary (default: edgecart-node next to this executable).
    #[arg(long, requires = "local")]
    node_bin: Option<PathBuf>,

    /// --local: how many real nodes to start.
    #[arg(long, default_value_t = 2)]
    local_nodes: usize,

    /// --local: SIGKILL the hub half-way through each run, restart it on the same data and
    /// address, and measure the time until every simulated store is back.
    #[arg(long, requires = "local")]
    kill_hub: bool,

    /// Products each run creates, with stock at the hub (plus one probe product).
    #[arg(long, default_value_t = 16)]
    products: usize,

    /// Orders per second, over all shoppers at all real nodes (register, order, pay by card);
    /// 0: no shoppers.
    #[arg(long, default_value_t = 2.0)]
    orders_per_sec: f64,

    /// Shoppers at each real node.
    #[arg(long, default_value_t = 2)]
    shoppers_per_node: usize,

    /// Sync streams sharing one HTTP/2 connection; 1 is one connection per store, as real
    /// stores do.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    stores_per_connection: u64,

    /// How long all stores may take to connect, seconds; the run goes on with those that did.
    #[arg(long, default_value_t = 300)]
    connect_timeout_secs: u64,

    /// Against a deployment's hub: leave the simulated stores enrolled and the products active
    /// at the end (by default they are decommissioned and archived).
    #[arg(long)]
    keep: bool,

    /// EnrollNode calls in flight at once.
    #[arg(long, default_value_t = 8)]
    enroll_concurrency: usize,
}

#[derive(Clone, Debug)]
struct Sizes(Vec<usize>);

fn parse_sizes(s: &str) -> Result<Sizes, String> {
    let sizes: Vec<usize> = s
        .split(',')
        .map(|p| {
            let p = p.trim().replace('_', "");
            p.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{p:?} is not a number of stores (1 or more)"))
        })
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        return Err("no size given".into());
    }
    Ok(Sizes(sizes))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Dropping the run on Ctrl-C or SIGTERM stops what it started: local processes are killed
    // (kill_on_drop) and the temp dir is removed. Against a remote hub the clean-up is skipped.
    let outcome = tokio::select! {
        r = run(args) => r,
        _ = interrupted() => Err(anyhow::anyhow!(
            "interrupted: the run was stopped (a remote hub keeps the stores it enrolled)"
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecart-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target =
        if args.local {
            Target::Local {
                hub_bin: args
                    .hub_bin
                    .clone()
                    .unwrap_or_else(|| default_bin("edgecart-hub")),
                node_bin: args
                    .node_bin
                    .clone()
                    .unwrap_or_else(|| default_bin("edgecart-node")),
                nodes: args.local_nodes,
            }
        } else {
            let url = args
                .hub
                .as_deref()
                .context("--hub is required without --local")?;
            let ca = match &args.hub_ca {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("reading --hub-ca {}", path.display()))?,
                ),
                None => None,
            };
            Target::Remote {
                hub: HubTarget::new(url, ca)?,
                admin_token: Secret::new(args.admin_token.clone().context(
                    "--admin-token (or EDGECART_ADMIN_TOKEN) is required without --local",
                )?),
                nodes: args.nodes.clone(),
            }
        };
    if !args.sale_every_secs.is_finite() || args.sale_every_secs < 0.0 {
        anyhow::bail!("--sale-every-secs must be a number ≥ 0");
    }
    let settings = |stores: usize| RunSettings {
        stores,
        sale_every: (args.sale_every_secs > 0.0)
            .then(|| Duration::from_secs_f64(args.sale_every_secs)),
        duration: Duration::from_secs(args.duration),
        products: args.products,
        orders_per_sec: args.orders_per_sec,
        shoppers_per_node: args.shoppers_per_node,
        stores_per_connection: args.stores_per_connection as usize,
        kill_hub: args.kill_hub,
        connect_timeout: Duration::from_secs(args.connect_timeout_secs),
        cleanup: !args.keep,
        enroll_concurrency: args.enroll_concurrency,
    };
    // Every size is checked before the first run starts.
    for &n in &args.stores.0 {
        settings(n).validate(&target)?;
    }
    let real_nodes = match &target {
        Target::Local { nodes, .. } => *nodes,
        Target::Remote { nodes, .. } => nodes.len(),
    };
    let mut report = Report {
        tool: "edgecart-load".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: if args.local { "local" } else { "remote" }.into(),
        hub: match &target {
            Target::Remote { hub, .. } => hub.url().to_string(),
            Target::Local { .. } => "local".into(),
        },
        started_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        settings: Settings {
            sale_every_secs: (args.sale_every_secs > 0.0).then_some(args.sale_every_secs),
            duration_secs: args.duration as f64,
            products: args.products,
            real_nodes,
            orders_per_sec: args.orders_per_sec,
            stores_per_connection: args.stores_per_connection as usize,
            kill_hub: args.kill_hub,
        },
        runs: Vec::new(),
    };
    let ui = Ui::new();
    for &n in &args.stores.0 {
        let r = run_once(&target, &settings(n), &ui)
            .await
            .with_context(|| format!("the run with {n} stores"));
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // What earlier sizes measured is kept.
                if !report.runs.is_empty() {
                    write_report(&args.out, &report)?;
                }
                return Err(e);
            }
        };
        if report.runs.is_empty() {
            println!("{}", header());
        }
        println!("{}", line(&r));
        report.runs.push(r);
        write_report(&args.out, &report)?;
    }
    let files = write_report(&args.out, &report)?;
    println!("report: {}", files[0].display());
    for f in &files[1..] {
        println!("chart:  {}", f.display());
    }
    Ok(())
}

fn header() -> String {
    format!(
        "{:>6} {:>11} {:>13} {:>22} {:>14} {:>8} {:>11} {:>8} {:>7}",
        "stores",
        "connect s",
        "reconnect s",
        "propagation p50/p99/max",
        "hub cores",
        "hub MiB",
        "in/store/s",
        "orders/s",
        "errors"
    )
}

fn line(r: &RunReport) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let p = &r.propagation_secs;
    format!(
        "{:>6} {:>11} {:>13} {:>22} {:>14} {:>8} {:>11.1} {:>8.2} {:>7}",
        r.stores,
        opt(r.connect_all_secs),
        opt(r.reconnect_all_secs),
        format!("{}/{}/{}", opt(p.p50), opt(p.p99), opt(p.max)),
        r.hub.as_ref().map_or("-".into(), |h| format!(
            "{:.2}/{:.2}",
            h.cpu_cores_mean, h.cpu_cores_max
        )),
        r.hub
            .as_ref()
            .map_or("-".into(), |h| format!("{:.0}", h.rss_mib_max)),
        r.entries.hub_to_stores_per_store_per_sec.mean,
        r.orders.per_sec,
        r.errors.values().sum::<u64>()
    )
}
