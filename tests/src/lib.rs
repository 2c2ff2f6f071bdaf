//! # edgecart-e2e
//!
//! Cross-process test harness: [`TestHub`] and [`TestNode`] run the real `edgecart-hub` and
//! `edgecart-node` binaries in temp dirs on port 0, read the bound address from their log line,
//! and kill them on drop. [`wait_until`] polls for convergence until a deadline.
//!
//! # Layout
//! - this file: process handling, HTTP and gRPC helpers.
//! - `src/bin/edgecart-local.rs`: the README's run command (a hub and two nodes in one process).
//! - `src/metrics.rs`: Prometheus scrape parsing, `promtool check metrics`, the metrics named in
//!   `deploy/monitoring/`.
//! - `tests/cluster.rs`: the cross-process tests.

pub mod chaos;
pub mod metrics;
pub mod provider;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const JWT_SECRET: &str = "e2e-jwt-secret-that-is-long-enough-123";
pub const ADMIN_EMAIL: &str = "admin@shop.test";
pub const ADMIN_PASSWORD: &str = "admin-pass-123";

/// Where the workspace's binaries are: `EDGECART_BIN_DIR`, or the target dir this test runs from
/// (`cargo test --workspace` builds every package's binaries before running tests).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("EDGECART_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            // target/<profile>/deps/<test binary>, or target/<profile>/<binary> (the soak)
            let dir = exe.parent().expect("target dir");
            if dir.ends_with("deps") {
                dir.parent().expect("target dir").to_path_buf()
            } else {
                dir.to_path_buf()
            }
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// A child process whose stderr is collected; killed (SIGKILL) on drop.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `binary` (from [`bin`]) with `args`; returns once it logged `marker` followed by
    /// its address (panics after 30 s).
    pub fn start(binary: &str, args: &[String], marker: &str) -> Proc {
        Self::spawn(binary, args, marker)
    }

    fn spawn(binary: &str, args: &[String], marker: &str) -> Proc {
        Self::spawn_cmd(binary, Command::new(bin(binary)), args, marker)
    }

    /// Spawns `cmd` (the binary, or a wrapper that ends by exec-ing it) with `args` appended.
    fn spawn_cmd(binary: &str, mut cmd: Command, args: &[String], marker: &str) -> Proc {
        let mut child = cmd
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (sink, marker, echo) = (
            log.clone(),
            marker.to_string(),
            std::env::var_os("TEST_LOG").is_some(),
        );
        let name = binary.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{name}] {line}");
                }
                if let Some(addr) = parse_addr(&line, &marker) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => panic!(
                "{binary} did not log its address; log:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        Proc { child, addr, log }
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The address of a second listener, from the first log line containing `marker` (e.g. the
    /// hub's `metrics on http://`); waits up to 30 s for it.
    pub fn listener_addr(&self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find_map(|line| parse_addr(line, marker));
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {marker:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// Sends `signal` (e.g. "-TERM") to the process with the `kill` executable.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid());
    }

    /// Sends SIGTERM and waits for the process to exit, for up to `within`. Returns the exit
    /// status and how long the exit took, or `None` (the process then is SIGKILLed) if it was
    /// still running after `within`. Blocks on the exit itself (in a thread), not a poll.
    pub fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        self.signal("-TERM");
        let pid = self.pid();
        let child = &mut self.child;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            match rx.recv_timeout(within) {
                Ok(status) => Some((status.expect("waiting for the process"), started.elapsed())),
                Err(_) => {
                    // Unblocks the waiting thread, so the scope can end.
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    None
                }
            }
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// The hub as a real process.
pub struct TestHub {
    pub proc: Proc,
    pub dir: PathBuf,
    port: u16,
    extra: Vec<String>,
    tmpfs: Option<u64>,
}

impl TestHub {
    pub fn start(dir: &Path) -> TestHub {
        Self::start_on(dir, 0)
    }

    /// Starts on a given port (0 = any); a restart reuses the old port so nodes find it again.
    pub fn start_on(dir: &Path, port: u16) -> TestHub {
        Self::start_with(dir, port, &[])
    }

    /// Starts with extra command-line arguments (kept across restarts).
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> TestHub {
        Self::start_full(dir, port, extra, None)
    }

    /// Starts the hub with its data dir on a private tmpfs of `bytes` (a mount namespace of its
    /// own, through `unshare`), so a test can fill its disk: see [`TestHub::disk_path`]. The data
    /// lives as long as the process.
    pub fn start_on_tmpfs(dir: &Path, bytes: u64, extra: &[&str]) -> TestHub {
        Self::start_full(dir, 0, extra, Some(bytes))
    }

    fn start_full(dir: &Path, port: u16, extra: &[&str], tmpfs: Option<u64>) -> TestHub {
        let mut args: Vec<String> = [
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--admin-token",
            ADMIN_TOKEN,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().cloned());
        let proc = match tmpfs {
            None => Proc::spawn("edgecart-hub", &args, "listening on grpc://"),
            Some(bytes) => {
                std::fs::create_dir_all(dir).expect("hub dir");
                // A user + mount namespace (works unprivileged where user namespaces are
                // enabled), a tmpfs over the data dir, then exec the hub: its pid stays the
                // child's pid, so kill9 and /proc/<pid>/root reach the hub itself.
                let mut cmd = Command::new("unshare");
                cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg(format!(
                        "mount -t tmpfs -o size={bytes} tmpfs \"$0\" && exec \"$@\""
                    ))
                    .arg(dir)
                    .arg(bin("edgecart-hub"));
                Proc::spawn_cmd("edgecart-hub", cmd, &args, "listening on grpc://")
            }
        };
        let port = proc.addr.port();
        TestHub {
            proc,
            dir: dir.to_path_buf(),
            port,
            extra,
            tmpfs,
        }
    }

    /// The hub's data dir as seen from outside its mount namespace (the tmpfs when started with
    /// [`TestHub::start_on_tmpfs`]).
    pub fn disk_path(&self) -> PathBuf {
        match self.tmpfs {
            None => self.dir.clone(),
            Some(_) => PathBuf::from(format!("/proc/{}/root", self.proc.pid()))
                .join(self.dir.strip_prefix("/").unwrap_or(&self.dir)),
        }
    }

    /// The hub's database file (see [`TestHub::disk_path`]).
    pub fn db_path(&self) -> PathBuf {
        self.disk_path().join("edgecart-hub.db")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://addr` of the metrics listener (start the hub with `--metrics-addr 127.0.0.1:0`).
    pub fn metrics_base(&self) -> String {
        format!("http://{}", self.proc.listener_addr("metrics on http://"))
    }

    /// Enrolls store `id` at this hub (NodeAdmin/EnrollNode, through `edgecart-admin nodes
    /// enroll`); returns its credential. A store enrolled before gets an additional one
    /// (`nodes rotate`): the old ones keep working.
    pub fn enroll(&self, id: &str) -> String {
        enroll_at(&self.url(), id)
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGTERM, then waits for the exit (see [`Proc::terminate`]).
    pub fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        self.proc.terminate(within)
    }

    pub fn restart(&mut self) {
        self.proc.kill9();
        assert!(
            self.tmpfs.is_none(),
            "a hub on tmpfs loses its data when it stops"
        );
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        *self = TestHub::start_with(&self.dir.clone(), self.port, &extra);
    }

    /// Creates a product at the hub (USD, `price` in cents) and, when `quantity` > 0, receives
    /// that many units at the hub; returns the product id.
    pub async fn stocked_product(&self, name: &str, price: i64, quantity: i64) -> String {
        use edgecart_proto::pb;
        let ch = self.channel().await;
        let id = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            ch.clone(),
            AdminToken(ADMIN_TOKEN),
        )
        .create_product(pb::CreateProductRequest {
            name: name.into(),
            description: format!("{name} from the hub"),
            price: Some(pb::Money {
                amount: price,
                currency: "USD".into(),
            }),
            category_id: String::new(),
        })
        .await
        .expect("create product")
        .into_inner()
        .id;
        if quantity > 0 {
            pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
                ch,
                AdminToken(ADMIN_TOKEN),
            )
            .receive_stock(pb::ReceiveStockRequest {
                product_id: id.clone(),
                quantity,
            })
            .await
            .expect("receive stock");
        }
        id
    }

    /// The hub's stock level of a product; `None` while the hub cannot answer.
    pub async fn stock(&self, product: &str) -> Option<edgecart_proto::pb::StockLevel> {
        use edgecart_proto::pb;
        let ch = tonic::transport::Endpoint::from_shared(self.url())
            .ok()?
            .connect()
            .await
            .ok()?;
        pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            ch,
            AdminToken(ADMIN_TOKEN),
        )
        .get_stock(pb::GetStockRequest {
            product_id: product.to_string(),
        })
        .await
        .ok()
        .map(tonic::Response::into_inner)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to hub")
    }
}

/// Enrolls store `id` at the hub at `hub_url` with the `edgecart-admin` CLI (`nodes enroll`,
/// or `nodes rotate` when it was enrolled before); returns the credential it printed.
pub fn enroll_at(hub_url: &str, id: &str) -> String {
    let run = |action: &str| {
        Command::new(bin("edgecart-admin"))
            .args([
                "--hub",
                hub_url,
                "--token",
                ADMIN_TOKEN,
                "nodes",
                action,
                id,
            ])
            .output()
            .unwrap_or_else(|e| panic!("running edgecart-admin: {e}"))
    };
    let mut out = run("enroll");
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("enrolled already") {
        out = run("rotate");
    }
    assert!(
        out.status.success(),
        "enrolling {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let credential = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        credential.starts_with("ecn_"),
        "enrolling {id}: {credential:?}"
    );
    credential
}

/// A gRPC interceptor adding a bearer token known at run time (a store's credential).
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("token"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

/// A gRPC interceptor adding the admin token.
#[derive(Clone)]
pub struct AdminToken(pub &'static str);

impl tonic::service::Interceptor for AdminToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("token"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

/// A store node as a real process.
pub struct TestNode {
    pub proc: Proc,
    pub id: String,
    pub dir: PathBuf,
    hub_url: Option<String>,
    token: String,
    extra: Vec<String>,
}

impl TestNode {
    /// The credential this store presents to its hub (empty when standalone).
    pub fn credential(&self) -> &str {
        &self.token
    }

    /// Starts store `id`; with a hub, enrolls it there first (see [`enroll_at`]) and presents
    /// its credential.
    pub fn start(id: &str, dir: &Path, hub_url: Option<&str>) -> TestNode {
        let credential = hub_url.map(|url| enroll_at(url, id)).unwrap_or_default();
        Self::start_with_token(id, dir, hub_url, &credential)
    }

    pub fn start_with_token(id: &str, dir: &Path, hub_url: Option<&str>, token: &str) -> TestNode {
        Self::start_with(id, dir, hub_url, token, &[])
    }

    /// Starts with extra command-line arguments (kept across restarts).
    pub fn start_with(
        id: &str,
        dir: &Path,
        hub_url: Option<&str>,
        token: &str,
        extra: &[&str],
    ) -> TestNode {
        Self::start_on(id, dir, 0, hub_url, token, extra)
    }

    fn start_on(
        id: &str,
        dir: &Path,
        port: u16,
        hub_url: Option<&str>,
        token: &str,
        extra: &[&str],
    ) -> TestNode {
        let http_addr = format!("127.0.0.1:{port}");
        let mut args: Vec<String> = [
            "--node-id",
            id,
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--http-addr",
            &http_addr,
            // No --jwt-secret: each store makes its own signing key, as deployed.
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-password",
            ADMIN_PASSWORD,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(url) = hub_url {
            args.extend([
                "--hub-url".into(),
                url.into(),
                "--hub-token".into(),
                token.into(),
            ]);
        }
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().cloned());
        let proc = Proc::spawn("edgecart-node", &args, "listening on http://");
        TestNode {
            proc,
            id: id.to_string(),
            dir: dir.to_path_buf(),
            hub_url: hub_url.map(str::to_string),
            token: token.to_string(),
            extra,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.proc.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// The node's database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("edgecart-node.db")
    }

    /// Kills the node and puts `copy` in place of its database (an operator restoring a backup:
    /// the database file alone, its WAL and shared-memory files removed). Start it again with
    /// [`TestNode::restart`].
    pub fn replace_database(&mut self, copy: &Path) {
        self.kill9();
        let db = self.db_path();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(copy, &db).expect("restore the copy");
    }

    /// The node's record of how far its change log got (`edgecart-node.seq`), if written yet.
    pub fn watermark(&self) -> Option<i64> {
        std::fs::read_to_string(self.dir.join("edgecart-node.seq"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM, then waits for the exit (see [`Proc::terminate`]).
    pub fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        self.proc.terminate(within)
    }

    /// Kills the node (if running) and starts it again on the same port and data dir.
    pub fn restart(&mut self) {
        self.proc.kill9();
        let port = self.proc.addr.port();
        let (id, dir, hub, token) = (
            self.id.clone(),
            self.dir.clone(),
            self.hub_url.clone(),
            self.token.clone(),
        );
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        *self = TestNode::start_on(&id, &dir, port, hub.as_deref(), &token, &extra);
    }
}

/// `edgecart-local` as a real process: a hub and `nodes` store nodes in one process, data in
/// `dir`, every port chosen by the system. `proc.addr` is the hub's; [`local_node_addrs`] reads
/// the nodes'.
pub fn start_local(dir: &Path, nodes: u16) -> Proc {
    let args: Vec<String> = [
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--nodes",
        &nodes.to_string(),
        "--first-port",
        "0",
        "--hub-port",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::spawn("edgecart-local", &args, "listening on grpc://")
}

/// The nodes' HTTP addresses `edgecart-local` logged so far.
pub fn local_node_addrs(local: &Proc) -> Vec<SocketAddr> {
    local
        .log()
        .lines()
        .filter_map(|line| parse_addr(line, "listening on http://"))
        .collect()
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` with `describe()`'s dump of
/// every side's state.
pub async fn wait_until<T, F, Fut, D, DFut>(
    timeout: Duration,
    what: &str,
    mut probe: F,
    describe: D,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    D: FnOnce() -> DFut,
    DFut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                describe().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- HTTP helpers against a node's storefront API -----------------------------------------

use reqwest::Client;
use serde_json::{Value, json};

/// GET a JSON body; `None` unless 2xx.
pub async fn get_json(client: &Client, url: String) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// (available_here, global) of a product at a node, once the node knows the product.
pub async fn stock_at(client: &Client, node: &TestNode, product: &str) -> Option<(i64, i64)> {
    let p = get_json(client, node.url(&format!("/v1/products/{product}"))).await?;
    Some((
        p["stock"]["available_here"].as_i64()?,
        p["stock"]["global"].as_i64()?,
    ))
}

/// Registers a customer (password `shopper-pass-1`); returns the token.
pub async fn register(client: &Client, node: &TestNode, email: &str) -> String {
    let r = client
        .post(node.url("/v1/users"))
        .json(&json!({"email": email, "name": "Shopper", "password": "shopper-pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Logs in; `None` unless 200.
pub async fn login(
    client: &Client,
    node: &TestNode,
    email: &str,
    password: &str,
) -> Option<String> {
    let r = client
        .post(node.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    Some(r.json::<Value>().await.ok()?["token"].as_str()?.to_string())
}

/// Places a one-line order; returns status and body.
pub async fn order(
    client: &Client,
    node: &TestNode,
    token: &str,
    product: &str,
    qty: i64,
) -> (u16, Value) {
    let r = client
        .post(node.url("/v1/orders"))
        .bearer_auth(token)
        .json(&json!({"items": [{"product_id": product, "quantity": qty}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GET a JSON body with a bearer token.
pub async fn get_json_auth(client: &Client, url: String, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Signs in the bootstrap admin the harness creates on every node.
pub async fn admin_login(client: &Client, node: &TestNode) -> String {
    login(client, node, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect("the bootstrap admin signs in")
}
