//! # Storefront benchmark
//!
//! `cargo bench -p edgecart-node --bench storefront` starts the real `edgecart-node` binary
//! (release build) on loopback and measures, each against a baseline taken in the same run:
//!
//! 1. product reads `GET /v1/products/{id}` against the static `GET /healthz` of the same server;
//! 2. durable order capture `POST /v1/orders` with group commit (the node's default) against one
//!    transaction per order (`--group-commit-max 1`), with `--sqlite-synchronous normal` (no
//!    fsync per commit) as the upper reference;
//! 3. the node's resident memory, idle after start-up and after the load.
//!
//! See `BENCHMARKS.md` at the repository root for figures and the machine they come from.
//!
//! # Layout
//! - this file: settings, the scenarios, the report table.
//! - [`support::node`]: the node process in a temp dir, killed on drop.
//! - [`support::loadgen`]: a closed-loop HTTP/1.1 keep-alive client on raw TCP.
//!
//! # Settings (environment)
//! `BENCH_SECS` (5) measured seconds per run, `BENCH_WARMUP_SECS` (1) warm-up before each,
//! `BENCH_CONNECTIONS` (64) concurrent keep-alive connections, `BENCH_IDLE_SECS` (2) idle time
//! before a memory reading, `BENCH_CLIENT_THREADS` (1) worker threads of the load generator
//! (1 = a current-thread runtime), `BENCH_ONLY` (unset) `reads` or `orders` to run one part alone
//! (the report then leaves the other part's rows out), `BENCH_NODE_BIN` (unset) a node binary to
//! measure instead of this build's (for before/after comparisons on the same machine load).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use support::loadgen::{self, Load, Tally};
use support::node::{self, Node};

/// A load run with the CPU time each side used during it (warm-up included).
struct Run {
    tally: Tally,
    server_cpu: f64,
    client_cpu: f64,
    /// CPU the whole machine was busy for; what the node and the generator do not explain is
    /// other processes competing with the measurement.
    machine_cpu: f64,
}

impl Run {
    async fn measure(node: &Node, load: Load) -> Run {
        let server0 = node.cpu_secs();
        let client0 = node::cpu_secs("/proc/self/stat");
        let machine0 = node::machine_busy_secs();
        let tally = load.run().await;
        Run {
            server_cpu: node.cpu_secs() - server0,
            client_cpu: node::cpu_secs("/proc/self/stat") - client0,
            machine_cpu: node::machine_busy_secs() - machine0,
            tally,
        }
    }

    fn rate(&self) -> f64 {
        self.tally.ok_per_sec()
    }

    /// Server CPU per response, in microseconds (over the whole run; 10 ms tick resolution).
    fn server_us_per_response(&self) -> f64 {
        self.server_cpu * 1e6 / self.tally.total.max(1) as f64
    }

    /// `(server, generator)` CPU cores busy on average over the run.
    fn cores(&self) -> (f64, f64) {
        let wall = self.tally.elapsed.as_secs_f64();
        (self.server_cpu / wall, self.client_cpu / wall)
    }

    /// Cores other processes kept busy on average over the run.
    fn other_cores(&self) -> f64 {
        let rest = self.machine_cpu - self.server_cpu - self.client_cpu;
        (rest / self.tally.elapsed.as_secs_f64()).max(0.0)
    }
}

/// Units stocked before an order run: far more than any run can sell, so no order is refused.
const STOCK: i64 = 100_000_000;

const READ_RATE_GOAL: f64 = 15_000.0;
const READ_RATIO_GOAL: f64 = 0.5;
const ORDER_RATE_GOAL: f64 = 2_000.0;
const IDLE_RSS_GOAL_MIB: f64 = 32.0;

struct Settings {
    measure: Duration,
    warmup: Duration,
    idle: Duration,
    connections: usize,
    client_threads: usize,
    reads: bool,
    orders: bool,
}

impl Settings {
    fn from_env() -> Settings {
        fn var(name: &str, default: f64) -> f64 {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
                Err(_) => default,
            }
        }
        let only = std::env::var("BENCH_ONLY").ok();
        if let Some(o) = only.as_deref() {
            assert!(
                o == "reads" || o == "orders",
                "BENCH_ONLY={o:?} is neither `reads` nor `orders`"
            );
        }
        Settings {
            measure: Duration::from_secs_f64(var("BENCH_SECS", 5.0).max(0.1)),
            warmup: Duration::from_secs_f64(var("BENCH_WARMUP_SECS", 1.0).max(0.0)),
            idle: Duration::from_secs_f64(var("BENCH_IDLE_SECS", 2.0).max(0.0)),
            connections: (var("BENCH_CONNECTIONS", 64.0) as usize).max(1),
            client_threads: (var("BENCH_CLIENT_THREADS", 1.0) as usize).max(1),
            reads: only.as_deref().is_none_or(|o| o == "reads"),
            orders: only.as_deref().is_none_or(|o| o == "orders"),
        }
    }

    fn load(&self, addr: SocketAddr, request: std::sync::Arc<[u8]>, expect: u16) -> Load {
        Load {
            addr,
            request,
            expect,
            connections: self.connections,
            warmup: self.warmup,
            measure: self.measure,
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter, so arguments are ignored.
    let settings = Settings::from_env();
    // The generator shares the machine with the server it measures. A current-thread runtime
    // caps it at one core and avoids cross-thread wake-ups; BENCH_CLIENT_THREADS can change that.
    let runtime = if settings.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.client_threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    runtime.block_on(bench(settings));
}

/// Everything the final table shows.
struct Report {
    /// `(static, product)`, when the reads ran.
    reads: Option<(Run, Run)>,
    orders: Vec<(&'static str, Run, Option<f64>)>,
    memory: Vec<(String, (u64, u64))>,
}

async fn bench(settings: Settings) {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before the bench: {}", loadavg.trim());
    println!(
        "storefront bench: {} connections, {:?} warm-up + {:?} measured per run, generator on {} \
         thread(s), {} CPU(s)",
        settings.connections,
        settings.warmup,
        settings.measure,
        settings.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let http = reqwest::Client::new();
    let mut memory = Vec::new();
    let reads = if settings.reads {
        Some(reads(&settings, &http, &mut memory).await)
    } else {
        None
    };
    let orders = if settings.orders {
        orders(&settings, &http, &mut memory).await
    } else {
        Vec::new()
    };
    print_report(&Report {
        reads,
        orders,
        memory,
    });
}

/// 1. Reads, and the memory of a node with the default configuration.
async fn reads(
    settings: &Settings,
    http: &reqwest::Client,
    memory: &mut Vec<(String, (u64, u64))>,
) -> (Run, Run) {
    let node = Node::start(&[]);
    tokio::time::sleep(settings.idle).await;
    memory.push((
        "idle, first start (hashes the admin password)".into(),
        node.memory_kib(),
    ));
    let node = node.restart(&[]);
    tokio::time::sleep(settings.idle).await;
    memory.push((
        "idle, restart on the same data dir".into(),
        node.memory_kib(),
    ));
    let shop = Shop::open(http, &node).await;
    memory.push(("after 1 login + 1 sign-up".into(), node.memory_kib()));

    let healthz = loadgen::request("GET", node.addr, "/healthz", None, None);
    expect_once(node.addr, &healthz, 200, "\"ok\"").await;
    let static_reads = Run::measure(&node, settings.load(node.addr, healthz, 200)).await;
    print_run("GET /healthz", &static_reads, "req/s");

    let path = format!("/v1/products/{}", shop.product);
    let product = loadgen::request("GET", node.addr, &path, None, None);
    expect_once(node.addr, &product, 200, &shop.product).await;
    let product_reads = Run::measure(&node, settings.load(node.addr, product, 200)).await;
    print_run("GET /v1/products/{id}", &product_reads, "req/s");

    tokio::time::sleep(settings.idle).await;
    memory.push(("idle after the read runs".into(), node.memory_kib()));
    (static_reads, product_reads)
}

/// 2. Orders: a fresh node (fresh database) per configuration.
async fn orders(
    settings: &Settings,
    http: &reqwest::Client,
    memory: &mut Vec<(String, (u64, u64))>,
) -> Vec<(&'static str, Run, Option<f64>)> {
    let configs: [(&'static str, &[&str]); 3] = [
        (
            "group commit (full, max 256)",
            &["--sqlite-synchronous", "full", "--group-commit-max", "256"],
        ),
        (
            "one tx per order (full, max 1)",
            &["--sqlite-synchronous", "full", "--group-commit-max", "1"],
        ),
        (
            "no fsync (normal, max 256)",
            &[
                "--sqlite-synchronous",
                "normal",
                "--group-commit-max",
                "256",
            ],
        ),
    ];
    let mut orders = Vec::new();
    for (i, (label, flags)) in configs.into_iter().enumerate() {
        let node = Node::start(flags);
        let shop = Shop::open(http, &node).await;
        shop.stock(http, &node, STOCK).await;
        let body = json!({"items": [{"product_id": shop.product, "quantity": 1}]}).to_string();
        let order = loadgen::request(
            "POST",
            node.addr,
            "/v1/orders",
            Some(&shop.customer),
            Some(&body),
        );
        expect_once(node.addr, &order, 201, &shop.product).await;
        let run = Run::measure(&node, settings.load(node.addr, order, 201)).await;
        print_run(label, &run, "orders/s");
        let batch = mean_batch_size(http, &node).await;
        if let Some(b) = batch {
            println!("    mean group-commit batch over the node's life: {b:.1} writes");
        }
        if i == 0 {
            tokio::time::sleep(settings.idle).await;
            memory.push((
                "idle after the group-commit order run".into(),
                node.memory_kib(),
            ));
        }
        orders.push((label, run, batch));
    }
    orders
}

/// The fixture every run needs: tokens and one product.
struct Shop {
    admin: String,
    customer: String,
    product: String,
}

impl Shop {
    async fn open(http: &reqwest::Client, node: &Node) -> Shop {
        let base = format!("http://{}", node.addr);
        let login = json!({"email": node::ADMIN_EMAIL, "password": node::ADMIN_PASSWORD});
        let admin = call(http, &format!("{base}/v1/auth/login"), None, &login, 200).await;
        let admin = field(&admin, "token");
        let product = json!({
            "name": "Bench mug",
            "description": "A mug that is bought many times a second.",
            "price": {"amount": 1000, "currency": "USD"},
        });
        let product = call(
            http,
            &format!("{base}/v1/products"),
            Some(&admin),
            &product,
            201,
        )
        .await;
        let customer = json!({
            "email": "customer@bench.test",
            "name": "Bench Customer",
            "password": "customer passphrase",
        });
        let customer = call(http, &format!("{base}/v1/users"), None, &customer, 201).await;
        Shop {
            customer: field(&customer, "token"),
            product: field(&product, "id"),
            admin,
        }
    }

    async fn stock(&self, http: &reqwest::Client, node: &Node, delta: i64) {
        let url = format!("http://{}/v1/products/{}/stock", node.addr, self.product);
        call(http, &url, Some(&self.admin), &json!({"delta": delta}), 200).await;
    }
}

/// POSTs `body` and returns the JSON answer; any other status than `expect` aborts the bench.
async fn call(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
    expect: u16,
) -> Value {
    let mut req = http.post(url).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, expect, "POST {url} answered {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: {e}: {text}"))
}

fn field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{name}` in {v}"))
        .to_string()
}

/// Checks that a pre-built request gets the expected answer before the server is loaded with it.
async fn expect_once(addr: SocketAddr, request: &[u8], status: u16, body_contains: &str) {
    let (got, body) = loadgen::once(addr, request)
        .await
        .expect("sending the check request");
    assert!(
        got == status && body.contains(body_contains),
        "check request answered {got}: {body}"
    );
}

/// The mean of `edgecart_db_batch_size` from the node's Prometheus metrics.
async fn mean_batch_size(http: &reqwest::Client, node: &Node) -> Option<f64> {
    let text = http
        .get(format!("http://{}/metrics", node.addr))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    let (sum, count) = (
        value("edgecart_db_batch_size_sum")?,
        value("edgecart_db_batch_size_count")?,
    );
    (count > 0.0).then(|| sum / count)
}

fn print_run(label: &str, run: &Run, unit: &str) {
    let t = &run.tally;
    let (server, client) = run.cores();
    println!(
        "  {label:<32} {:>9.0} {unit}  p50 {:.2} ms  p99 {:.2} ms  ok {}  other {:?}  errors {}  \
         server {server:.2} cores ({:.0} µs/response), generator {client:.2} cores, \
         other processes {:.2} cores{}",
        run.rate(),
        t.latency_ms(0.5),
        t.latency_ms(0.99),
        t.ok,
        t.other,
        t.errors,
        run.server_us_per_response(),
        run.other_cores(),
        t.first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default(),
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "NO" }
}

/// Prints the summary as a Markdown table (pasted into BENCHMARKS.md).
fn print_report(r: &Report) {
    let row = |cells: [&str; 6]| {
        let [what, figure, latency, cpu, goal, met] = cells;
        println!("| {what:<50} | {figure:>9} | {latency:<13} | {cpu:<24} | {goal:<9} | {met:<3} |");
    };
    let latency = |run: &Run| {
        let t = &run.tally;
        let mut s = format!("{:.1} / {:.1}", t.latency_ms(0.5), t.latency_ms(0.99));
        if t.non_ok() > 0 || t.errors > 0 {
            s.push_str(&format!(" ({} non-ok, {} errors)", t.non_ok(), t.errors));
        }
        s
    };
    let cpu = |run: &Run| {
        let (server, client) = run.cores();
        format!(
            "{server:.2} + {client:.2} (+{:.2}); {:.0} µs",
            run.other_cores(),
            run.server_us_per_response()
        )
    };

    println!();
    row([
        "measurement",
        "figure",
        "p50/p99 ms",
        "cores srv + gen (+other); srv µs/resp",
        "goal",
        "met",
    ]);
    println!(
        "|{:-<52}|{:->11}|{:-<15}|{:-<26}|{:-<11}|{:-<5}|",
        "", "", "", "", "", ""
    );
    if let Some((s, p)) = &r.reads {
        row([
            "GET /healthz (static baseline), req/s",
            &format!("{:.0}", s.rate()),
            &latency(s),
            &cpu(s),
            "",
            "",
        ]);
        row([
            "GET /v1/products/{id}, req/s",
            &format!("{:.0}", p.rate()),
            &latency(p),
            &cpu(p),
            "≥ 15,000",
            verdict(p.rate() >= READ_RATE_GOAL),
        ]);
        let ratio = p.rate() / s.rate();
        row([
            "ratio product / static",
            &format!("{ratio:.2}"),
            "",
            "",
            "≥ 0.50",
            verdict(ratio >= READ_RATIO_GOAL),
        ]);
    }
    for (i, (label, run, batch)) in r.orders.iter().enumerate() {
        let (goal, met) = if i == 0 {
            ("≥ 2,000", verdict(run.rate() >= ORDER_RATE_GOAL))
        } else {
            ("", "")
        };
        let batch = batch.map(|b| format!(", batch {b:.1}")).unwrap_or_default();
        row([
            &format!("POST /v1/orders, {label}, orders/s"),
            &format!("{:.0}", run.rate()),
            &latency(run),
            &format!("{}{batch}", cpu(run)),
            goal,
            met,
        ]);
    }
    if let [(_, group, _), (_, single, _), (_, normal, _)] = &r.orders[..] {
        row([
            "ratio group commit / one tx per order",
            &format!("{:.2}", group.rate() / single.rate()),
            "",
            "",
            "",
            "",
        ]);
        row([
            "ratio group commit / no-fsync reference",
            &format!("{:.2}", group.rate() / normal.rate()),
            "",
            "",
            "",
            "",
        ]);
    }
    for (label, (rss, peak)) in &r.memory {
        row([
            &format!("RSS {label}, MiB"),
            &format!("{:.1}", mib(*rss)),
            "",
            &format!("peak (VmHWM) {:.1} MiB", mib(*peak)),
            "< 32 MiB",
            verdict(mib(*rss) < IDLE_RSS_GOAL_MIB),
        ]);
    }
    let refused: u64 = r.orders.iter().map(|(_, run, _)| run.tally.non_ok()).sum();
    println!("\nnon-201 order responses in the measured windows: {refused}");
}
