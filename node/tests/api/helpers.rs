//! Test harness: `TestApp` runs the node in-process on a temp-dir SQLite file; `TestNode` runs
//! the real binary as a child process (killed on drop). Both bind port 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use edgecart_node::Config;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const ADMIN_EMAIL: &str = "admin@shop.test";
pub const ADMIN_PASSWORD: &str = "admin-pass-123";

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        // Test logs only: no OTEL_* variables, so there is no exporter to keep alive.
        drop(edgecart_node::telemetry::init(
            edgecart_node::telemetry::LogFormat::Text,
        ));
    }
}

fn base_args(dir: &Path) -> Vec<String> {
    [
        "--data-dir",
        dir.to_str().unwrap_or("."),
        "--http-addr",
        "127.0.0.1:0",
        "--jwt-secret",
        JWT_SECRET,
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
        "--node-id",
        "test-node",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// An in-process node.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    admin: tokio::sync::OnceCell<String>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[&str]) -> TestApp {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = vec!["edgecart-node".to_string()];
        args.extend(base_args(dir.path()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::parse_from(args);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            // `run` builds the state (migrations, admin) before serving; tell the test when the
            // listener is ours by polling /healthz below instead.
            let _ = ready_tx.send(());
            if let Err(e) = edgecart_node::run(config, listener, async {
                let _ = rx.await;
            })
            .await
            {
                panic!("node failed: {e:#}");
            }
        });
        let _ = ready_rx.await;
        let app = TestApp {
            addr,
            client: Client::new(),
            _dir: dir,
            shutdown: Some(tx),
            admin: tokio::sync::OnceCell::new(),
        };
        wait_healthy(&app.client, &app.url("/readyz")).await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The node's SQLite file, for tests that must put the store in a state the API refuses
    /// to create (e.g. a counter cell a hub merged up to near `i64::MAX`).
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("edgecart-node.db")
    }

    pub async fn admin_token(&self) -> String {
        self.admin
            .get_or_init(|| async { self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await })
            .await
            .clone()
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        login(&self.client, &self.url(""), email, password).await
    }

    /// Registers a customer; returns (token, user id).
    pub async fn register(&self, email: &str) -> (String, String) {
        register(&self.client, &self.url(""), email).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("POST")
    }

    /// POST without a body (e.g. `/cancel`).
    pub async fn post_empty(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.patch(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("PATCH")
    }

    /// Creates a product (as admin) with `stock` units received here; returns its id.
    pub async fn product(&self, name: &str, price: i64, stock: i64) -> String {
        create_product(
            &self.client,
            &self.url(""),
            &self.admin_token().await,
            name,
            price,
            stock,
        )
        .await
    }

    pub async fn stock(&self, product_id: &str) -> (i64, i64) {
        let p = json_of(
            self.get(&format!("/v1/products/{product_id}"), None).await,
            200,
        )
        .await;
        (
            p["stock"]["available_here"]
                .as_i64()
                .expect("available_here"),
            p["stock"]["global"].as_i64().expect("global"),
        )
    }

    pub async fn order(&self, token: &str, product_id: &str, quantity: i64) -> Response {
        self.post(
            "/v1/orders",
            Some(token),
            &json!({"items": [{"product_id": product_id, "quantity": quantity}]}),
        )
        .await
    }

    /// Pays an order in cash.
    pub async fn pay_cash(&self, token: &str, order_id: &str) -> Response {
        self.post(
            &format!("/v1/orders/{order_id}/payments"),
            Some(token),
            &json!({"method": "cash"}),
        )
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn wait_healthy(client: &Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not become ready in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn login(client: &Client, base: &str, email: &str, password: &str) -> String {
    let r = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    let body = json_of(r, 200).await;
    body["token"].as_str().expect("token").to_string()
}

pub async fn register(client: &Client, base: &str, email: &str) -> (String, String) {
    let r = client
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": email, "name": "Test Customer", "password": "customer-pass-1"}))
        .send()
        .await
        .expect("register");
    let body = json_of(r, 201).await;
    (
        body["token"].as_str().expect("token").to_string(),
        body["user"]["id"].as_str().expect("user.id").to_string(),
    )
}

pub async fn create_product(
    client: &Client,
    base: &str,
    admin: &str,
    name: &str,
    price: i64,
    stock: i64,
) -> String {
    let r = client
        .post(format!("{base}/v1/products"))
        .bearer_auth(admin)
        .json(
            &json!({"name": name, "description": format!("{name} for tests"),
                      "price": {"amount": price, "currency": "USD"}}),
        )
        .send()
        .await
        .expect("create product");
    let id = json_of(r, 201).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    if stock > 0 {
        let r = client
            .post(format!("{base}/v1/products/{id}/stock"))
            .bearer_auth(admin)
            .json(&json!({"delta": stock}))
            .send()
            .await
            .expect("stock");
        json_of(r, 200).await;
    }
    id
}

/// Asserts the status and returns the JSON body (printing it on mismatch).
pub async fn json_of(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts a problem response: status, content type, and (when given) the named field.
pub async fn problem(r: Response, status: u16, field: Option<&str>) -> Value {
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = json_of(r, status).await;
    assert_eq!(
        ct, "application/problem+json",
        "problem content type; body {body}"
    );
    assert_eq!(body["status"].as_u64(), Some(u64::from(status)), "{body}");
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    if let Some(field) = field {
        assert_eq!(body["field"].as_str(), Some(field), "field of {body}");
    }
    body
}

/// The real `edgecart-node` binary as a child process; killed (SIGKILL) on drop.
pub struct TestNode {
    pub child: Child,
    pub addr: SocketAddr,
}

impl TestNode {
    pub fn start(dir: &Path) -> TestNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgecart-node"))
            .args(base_args(dir))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgecart-node");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let echo = std::env::var_os("TEST_LOG").is_some();
        // Keep draining stderr for the life of the process so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[node] {line}");
                }
                if let Some(addr) = parse_listening(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node did not log its listening address");
        TestNode { child, addr }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Like [`TestNode::start`], with extra command-line flags.
    pub fn start_with(dir: &Path, extra: &[&str]) -> TestNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgecart-node"))
            .args(base_args(dir))
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgecart-node");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let echo = std::env::var_os("TEST_LOG").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[node] {line}");
                }
                if let Some(addr) = parse_listening(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node did not log its listening address");
        TestNode { child, addr }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}
