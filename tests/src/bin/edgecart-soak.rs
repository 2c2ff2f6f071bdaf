//! Soak run (not part of CI): the reliability suite's workload and faults for as long as you
//! like, in rounds. Each round runs the workload under random faults, stops the faults, lets
//! the system converge, and checks every promise against the whole history so far. Reports
//! throughput, convergence times, memory of every process over time, and any promise broken.
//!
//! ```text
//! cargo run --release -p edgecart-e2e --bin edgecart-soak -- --minutes 30 --nodes 3
//! ```
//!
//! Needs the release binaries of the hub and node next to it (`cargo build --release
//! --workspace`), or `EDGECART_BIN_DIR`.

use std::time::{Duration, Instant};

use clap::Parser;
use edgecart_e2e::chaos::check::{Expect, converge, violations};
use edgecart_e2e::chaos::proxy::Fault;
use edgecart_e2e::chaos::workload::{History, Outcome, ReceiptOp, Workload};
use edgecart_e2e::chaos::{Cluster, ClusterConfig, inventory_client, seed};
use edgecart_proto::pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(about = "Runs edgecart's reliability workload under random faults for a while")]
struct Args {
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Length of one round of load and faults before the checks, in seconds.
    #[arg(long, default_value_t = 30)]
    round_secs: u64,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 4)]
    shoppers_per_node: usize,
    #[arg(long, default_value_t = 5)]
    products: usize,
    /// Units of each product at the start (and the hub receives more during the run).
    #[arg(long, default_value_t = 1000)]
    initial_stock: i64,
    /// Run without faults (a pure load soak).
    #[arg(long)]
    no_faults: bool,
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn memory_line(c: &Cluster) -> String {
    let mut parts = vec![format!(
        "hub {} MiB",
        rss_kib(c.hub.proc.pid()).map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
    )];
    for s in &c.stores {
        parts.push(format!(
            "{} {} MiB",
            s.node.id,
            rss_kib(s.node.proc.pid()).map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
        ));
    }
    parts.join(", ")
}

/// One random fault for a few seconds, then healed (processes restarted).
async fn random_fault(c: &mut Cluster, rng: &mut StdRng) -> String {
    let store = rng.random_range(0..c.stores.len());
    let hold = Duration::from_millis(rng.random_range(500..3000));
    let what = match rng.random_range(0..6) {
        0 => {
            c.hub.kill9();
            tokio::time::sleep(hold).await;
            c.hub.restart();
            "hub killed and restarted".to_string()
        }
        1 => {
            c.stores[store].node.kill9();
            tokio::time::sleep(hold).await;
            c.stores[store].node.restart();
            format!("store-{store} killed and restarted")
        }
        2 => {
            c.stores[store].proxy.set(Fault::Down);
            tokio::time::sleep(hold).await;
            format!("store-{store} partitioned")
        }
        3 => {
            c.stores[store].proxy.set(Fault::LoseAcks(50));
            tokio::time::sleep(hold).await;
            format!("store-{store} losing acknowledgements")
        }
        4 => {
            c.stores[store].proxy.set(Fault::Stall);
            tokio::time::sleep(hold).await;
            format!("store-{store} stalled")
        }
        _ => {
            c.stores[store]
                .proxy
                .set(Fault::Delay(Duration::from_millis(rng.random_range(5..80))));
            tokio::time::sleep(hold).await;
            format!("store-{store} slow link")
        }
    };
    c.heal();
    format!("{what} for {hold:?}")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Cluster::start(
        seed,
        ClusterConfig {
            nodes: args.nodes,
            products: args.products,
            initial_stock: args.initial_stock,
            shoppers_per_node: args.shoppers_per_node,
            ..ClusterConfig::default()
        },
    )
    .await;
    println!(
        "soak: seed {seed}, {} nodes, {:.1} min, rounds of {} s",
        args.nodes, args.minutes, args.round_secs
    );
    println!("memory at start: {}", memory_line(&c));
    let end = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let mut all = History::default();
    let mut convergence = Vec::new();
    let mut broken = 0;
    let mut crashed = false;
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        // Restock at the hub every round so a long soak does not sell out (recorded like any
        // other receipt, for the stock check).
        if round > 1 {
            let mut inventory = inventory_client(&c.hub).await;
            for product in c.products.clone() {
                let qty = args.initial_stock / 2;
                let r = inventory
                    .receive_stock(pb::ReceiveStockRequest {
                        product_id: product.clone(),
                        quantity: qty,
                    })
                    .await;
                all.receipts.push(ReceiptOp {
                    store: None,
                    product,
                    qty,
                    outcome: if r.is_ok() {
                        Outcome::Succeeded
                    } else {
                        Outcome::Unknown
                    },
                    spans_restore: false,
                    may_be_lost: false,
                });
            }
        }
        let w = Workload::start_round(&c, round);
        let round_end = Instant::now() + Duration::from_secs(args.round_secs);
        let mut faults = Vec::new();
        while Instant::now() < round_end {
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
            if !args.no_faults && Instant::now() < round_end {
                let f = random_fault(&mut c, &mut rng).await;
                crashed |= f.contains("store") && f.contains("killed");
                faults.push(f);
            }
        }
        let started = w.started;
        let h = w.finish(Duration::from_secs(20)).await;
        let confirmed = h.count(|o| o.outcome == Outcome::Succeeded);
        let secs = started.elapsed().as_secs_f64();
        all.extend(h);
        let (snap, took) = converge(&c, Duration::from_secs(120)).await;
        convergence.push(took);
        let v = violations(
            &c,
            &snap,
            &all,
            Expect {
                redelivery: crashed,
                ..Expect::default()
            },
        )
        .await;
        broken += v.len();
        println!(
            "round {round}: {confirmed} orders confirmed ({:.1}/s), {} faults, converged in {took:.2?}, {} promise(s) broken; memory: {}",
            confirmed as f64 / secs,
            faults.len(),
            v.len(),
            memory_line(&c)
        );
        for f in &faults {
            println!("  fault: {f}");
        }
        for line in &v {
            println!("  BROKEN: {line}");
        }
    }
    let total: usize = all.count(|o| o.outcome == Outcome::Succeeded);
    let avg = convergence.iter().sum::<Duration>() / convergence.len().max(1) as u32;
    let max = convergence.iter().max().copied().unwrap_or_default();
    println!(
        "soak done: {round} rounds, {} orders tried, {total} confirmed, {} receipts, {} edits; convergence avg {avg:.2?} max {max:.2?}; {broken} promise(s) broken (seed {seed})",
        all.orders.len(),
        all.receipts.len(),
        all.edits.len()
    );
    if broken > 0 {
        std::process::exit(1);
    }
}
