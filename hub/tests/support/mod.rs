//! An in-process hub on loopback, admin clients, and a scripted store speaking the real Sync
//! protocol over gRPC (so a test controls exactly what the store sends and acknowledges).

#![allow(dead_code)]

use std::time::Duration;

use clap::Parser;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{PROTOCOL_VERSION, RELEASE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

pub const ADMIN: &str = "admin-token-for-tests-123";
/// Long enough for a loaded CI machine; every wait polls for an event up to it.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Token(pub &'static str);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(req)
    }
}

pub struct TestHub {
    pub channel: Channel,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// Credentials issued to the stores the tests connected, by store id.
    credentials: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(&[]).await
    }

    /// Starts with extra command-line arguments.
    pub async fn start_with(extra: &[&str]) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "edgecart-hub",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--admin-token",
            ADMIN,
        ];
        args.extend_from_slice(extra);
        let config = edgecart_hub::Config::parse_from(args);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(edgecart_hub::run(config, listener, std::future::pending()));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
                return TestHub {
                    channel,
                    url,
                    dir,
                    credentials: Default::default(),
                };
            }
            assert!(tokio::time::Instant::now() < deadline, "hub did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Enrolls store `id` through NodeAdmin/EnrollNode; returns its credential.
    pub async fn enroll(&self, id: &str) -> String {
        let credential = self
            .nodes()
            .enroll_node(pb::EnrollNodeRequest {
                node_id: id.into(),
                catalog_edits: None,
            })
            .await
            .unwrap()
            .into_inner()
            .credential;
        self.credentials
            .lock()
            .unwrap()
            .insert(id.to_string(), credential.clone());
        credential
    }

    /// Store `id`'s credential, enrolling it the first time.
    pub async fn credential(&self, id: &str) -> String {
        let known = self.credentials.lock().unwrap().get(id).cloned();
        match known {
            Some(c) => c,
            None => self.enroll(id).await,
        }
    }

    /// Runs `edgecart-admin` against this hub; returns (success, stdout, stderr).
    pub async fn admin_cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgecart-admin"))
            .args(["--hub", &self.url, "--token", ADMIN])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A read-only look at the hub's SQLite file, for what no API shows (compaction, sales).
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("edgecart-hub.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub fn catalog(
        &self,
    ) -> pb::catalog_admin_client::CatalogAdminClient<
        tonic::service::interceptor::InterceptedService<Channel, Token>,
    > {
        pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            self.channel.clone(),
            Token(ADMIN),
        )
    }

    pub fn inventory(
        &self,
    ) -> pb::inventory_admin_client::InventoryAdminClient<
        tonic::service::interceptor::InterceptedService<Channel, Token>,
    > {
        pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            self.channel.clone(),
            Token(ADMIN),
        )
    }

    pub fn nodes(
        &self,
    ) -> pb::node_admin_client::NodeAdminClient<
        tonic::service::interceptor::InterceptedService<Channel, Token>,
    > {
        pb::node_admin_client::NodeAdminClient::with_interceptor(self.channel.clone(), Token(ADMIN))
    }

    /// Creates a product; returns its id.
    pub async fn product(&self, name: &str) -> String {
        self.catalog()
            .create_product(pb::CreateProductRequest {
                name: name.into(),
                description: String::new(),
                price: Some(pb::Money {
                    amount: 100,
                    currency: "USD".into(),
                }),
                category_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .id
    }

    pub async fn receive(&self, product_id: &str, quantity: i64) -> pb::StockLevel {
        self.inventory()
            .receive_stock(pb::ReceiveStockRequest {
                product_id: product_id.into(),
                quantity,
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn stock(&self, product_id: &str) -> pb::StockLevel {
        self.inventory()
            .get_stock(pb::GetStockRequest {
                product_id: product_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

/// A store speaking the Sync protocol, driven by the test.
pub struct FakeNode {
    pub out: mpsc::Sender<pb::NodeMessage>,
    pub inbound: Streaming<pb::HubMessage>,
    pub welcome: pb::Welcome,
}

fn node_msg(m: node_message::Msg) -> pb::NodeMessage {
    pb::NodeMessage { msg: Some(m) }
}

impl FakeNode {
    /// Connects as store `id` with its credential (enrolled on first use).
    pub async fn connect(
        hub: &TestHub,
        id: &str,
        hub_cursor: i64,
        last_seq: i64,
    ) -> Result<FakeNode, Status> {
        let credential = hub.credential(id).await;
        Self::connect_as(hub, id, &credential, hub_cursor, last_seq).await
    }

    /// Connects with `credential`, saying `id` in Hello (which may not be the credential's).
    pub async fn connect_as(
        hub: &TestHub,
        id: &str,
        credential: &str,
        hub_cursor: i64,
        last_seq: i64,
    ) -> Result<FakeNode, Status> {
        let (out, rx) = mpsc::channel(16);
        out.send(node_msg(node_message::Msg::Hello(pb::Hello {
            node_id: id.into(),
            protocol_version: PROTOCOL_VERSION,
            release: RELEASE.into(),
            hub_cursor,
            last_seq,
        })))
        .await
        .unwrap();
        let mut request = Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
        let mut inbound = pb::sync_client::SyncClient::new(hub.channel.clone())
            .max_decoding_message_size(16 << 20)
            .stream(request)
            .await?
            .into_inner();
        let welcome = match inbound.message().await? {
            Some(pb::HubMessage {
                msg: Some(hub_message::Msg::Welcome(w)),
            }) => w,
            other => panic!("expected Welcome, got {other:?}"),
        };
        Ok(FakeNode {
            out,
            inbound,
            welcome,
        })
    }

    /// The next message from the hub, or the status the hub ended the stream with.
    pub async fn next(&mut self) -> Result<Option<hub_message::Msg>, Status> {
        match tokio::time::timeout(DEADLINE, self.inbound.message()).await {
            Ok(m) => Ok(m?.and_then(|m| m.msg)),
            Err(_) => panic!("no message from the hub within {DEADLINE:?}"),
        }
    }

    /// Reads change batches until `done` says the received changes are complete; returns every
    /// change batch received (heartbeats and other messages are skipped).
    pub async fn read_until(
        &mut self,
        mut done: impl FnMut(&[pb::ChangeBatch]) -> bool,
    ) -> Vec<pb::ChangeBatch> {
        let mut batches = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(&batches) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub did not send what was expected"
            );
            if let Some(hub_message::Msg::Changes(b)) = self.next().await.unwrap() {
                batches.push(b);
            }
        }
        batches
    }

    pub async fn send(&self, m: node_message::Msg) {
        self.out.send(node_msg(m)).await.unwrap();
    }

    /// Acknowledges hub changes up to `seq`, then heartbeats, which makes the hub write the
    /// acknowledgement down (and compact its change log).
    pub async fn ack_and_heartbeat(&self, seq: i64, last_seq: i64) {
        self.send(node_message::Msg::Ack(pb::Ack { seq })).await;
        self.send(node_message::Msg::Heartbeat(pb::Heartbeat {
            unix_ms: 0,
            last_seq,
        }))
        .await;
    }
}

/// Polls `f` until it returns `Some`, up to [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
