//! The node while its disk is full (simulated with `PRAGMA max_page_count` on the writer's
//! connection, as `hub/tests/storage_full.rs` does for the hub):
//! - the node's twin of the hub's test: a batch of hub changes that cannot be stored is not
//!   acknowledged and nothing of it is kept; once space is back the hub's re-sent batch applies
//!   exactly once (a bad entry in it skipped, its siblings applied);
//! - orders streaming in while the disk fills: every 201 is on disk after a restart, and no
//!   order exists whose request got an error.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use edgecart_node::Config;
use edgecart_node::state::AppState;
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{Command, PROTOCOL_VERSION, UserPayload, entity};
use reqwest::Client;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, create_product, json_of, login, register, wait_healthy,
};

const HUB_TOKEN: &str = "hub-token-for-storage-tests";
const WAIT: Duration = Duration::from_secs(10);

/// A node in this process, with its state at hand (the tests cap its writer's database).
struct Node {
    state: AppState,
    base: String,
    client: Client,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    sync: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(dir: &Path, hub_url: Option<&str>) -> Node {
        let mut args: Vec<String> = [
            "edgecart-node",
            "--data-dir",
            dir.to_str().expect("utf-8 temp dir"),
            "--jwt-secret",
            JWT_SECRET,
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-password",
            ADMIN_PASSWORD,
            "--node-id",
            "store-full",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(url) = hub_url {
            args.extend([
                "--hub-url".into(),
                url.into(),
                "--hub-token".into(),
                HUB_TOKEN.into(),
            ]);
        }
        let config = Config::parse_from(args);
        let state = edgecart_node::build_state(&config)
            .await
            .expect("node state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let router = edgecart_node::http::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
                .expect("serve");
        });
        let sync = hub_url.map(|url| {
            tokio::spawn(edgecart_node::sync::client::run(
                state.clone(),
                edgecart_node::sync::client::HubLink {
                    url: url.to_string(),
                    ca_pem: None,
                },
                HUB_TOKEN.to_string(),
                stop.clone(),
            ))
        });
        let client = Client::new();
        wait_healthy(&client, &format!("{base}/readyz")).await;
        Node {
            state,
            base,
            client,
            stop,
            server,
            sync,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
        if let Some(sync) = self.sync {
            let _ = sync.await;
        }
    }

    /// Caps the database at its current size plus `spare` pages.
    async fn fill_disk(&self, spare: u64) {
        let pages = self.state.db.page_count().await.unwrap();
        self.state
            .db
            .set_max_page_count(pages + spare)
            .await
            .unwrap();
    }

    async fn free_disk(&self) {
        self.state.db.set_max_page_count(1 << 30).await.unwrap();
    }

    async fn count(&self, sql: &'static str) -> i64 {
        self.state
            .db
            .read(move |c| Ok::<_, edgecart_node::db::DbError>(c.query_row(sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    async fn order_status(&self, id: &str) -> String {
        let id = id.to_string();
        self.state
            .db
            .read(move |c| {
                Ok::<_, edgecart_node::db::DbError>(c.query_row(
                    "SELECT status FROM orders WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap()
    }

    async fn hub_cursor(&self) -> i64 {
        self.count("SELECT hub_cursor FROM sync_peers WHERE peer = 'hub'")
            .await
    }
}

/// One Sync stream as the scripted hub sees it.
struct Session {
    hello: pb::Hello,
    to_node: mpsc::Sender<Result<pb::HubMessage, Status>>,
    /// The node's Acks; closed when the node ends the stream.
    acks: mpsc::UnboundedReceiver<i64>,
}

impl Session {
    async fn send(&self, msg: hub_message::Msg) {
        self.to_node
            .send(Ok(pb::HubMessage { msg: Some(msg) }))
            .await
            .expect("the node is listening");
    }

    async fn welcome(&self) {
        self.send(hub_message::Msg::Welcome(pb::Welcome {
            protocol_version: PROTOCOL_VERSION,
            release: "scripted".into(),
            // "I have everything you wrote": the node's own changes are not this test's subject.
            node_cursor: self.hello.last_seq,
            resync: false,
        }))
        .await;
    }

    /// Sends the entries the node has not applied yet (as the real hub resends from the
    /// node's cursor).
    async fn send_changes(&self, changes: &[pb::Change]) {
        let from = self.hello.hub_cursor;
        let changes = changes.iter().filter(|c| c.seq > from).cloned().collect();
        self.send(hub_message::Msg::Changes(pb::ChangeBatch { changes }))
            .await;
    }

    /// The node's next Ack, or `None` once the node ended the stream.
    async fn next_ack(&mut self) -> Option<i64> {
        tokio::time::timeout(WAIT, self.acks.recv())
            .await
            .expect("neither an Ack nor the end of the stream")
    }
}

/// The hub's side of the Sync service, driven by the test: each stream the node opens is
/// handed to the test as a [`Session`].
struct ScriptedHub {
    sessions: mpsc::UnboundedSender<Session>,
}

#[tonic::async_trait]
impl pb::sync_server::Sync for ScriptedHub {
    type StreamStream = ReceiverStream<Result<pb::HubMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::NodeMessage {
                msg: Some(node_message::Msg::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("Hello first")),
        };
        let (to_node, rx) = mpsc::channel(16);
        let (ack_tx, acks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Drains everything the node sends; only Acks matter here.
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(node_message::Msg::Ack(a)) = m.msg {
                    let _ = ack_tx.send(a.seq);
                }
            }
        });
        let _ = self.sessions.send(Session {
            hello,
            to_node,
            acks,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn scripted_hub() -> (String, mpsc::UnboundedReceiver<Session>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (sessions, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::sync_server::SyncServer::new(ScriptedHub { sessions }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

async fn next_session(sessions: &mut mpsc::UnboundedReceiver<Session>) -> Session {
    tokio::time::timeout(WAIT, sessions.recv())
        .await
        .expect("the node (re)connects")
        .expect("hub running")
}

/// The hub's batch: a command cancelling `order_id`, `users` sizeable accounts (storing them
/// needs new pages) and, among them, one entry the node cannot read.
fn hub_batch(order_id: &str, users: usize) -> Vec<pb::Change> {
    let clock = Clock::new(ActorId::hub());
    let mut changes = vec![pb::Change {
        seq: 1,
        entity: entity::COMMAND.into(),
        entity_id: "cmd-1".into(),
        version: clock.now().to_string(),
        payload_json: serde_json::to_string(&Command::OrderStatus {
            id: "cmd-1".into(),
            order_id: order_id.into(),
            status: "cancelled".into(),
        })
        .unwrap(),
        ..Default::default()
    }];
    for i in 0..users {
        let id = edgecart_proto::ids::new_id().to_string();
        let payload_json = if i == users / 2 {
            "{\"id\": \"not a whole account\"".to_string()
        } else {
            serde_json::to_string(&UserPayload {
                id: id.clone(),
                email: Some(format!("hub-user-{i}@example.com")),
                name: "x".repeat(2000),
                password_hash: None,
                role: "customer".into(),
                status: "active".into(),
                conflicted: false,
                created_at: 1,
                updated_at: 1,
            })
            .unwrap()
        };
        changes.push(pb::Change {
            seq: changes.len() as i64 + 1,
            entity: entity::USER.into(),
            entity_id: id,
            version: clock.now().to_string(),
            payload_json,
            ..Default::default()
        });
    }
    changes
}

const HUB_USERS: &str = "SELECT count(*) FROM users WHERE email LIKE 'hub-user-%'";
const COMMANDS: &str = "SELECT count(*) FROM sync_commands";

#[tokio::test]
async fn a_full_disk_fails_the_hub_batch_unacknowledged_and_the_resent_batch_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let (hub_url, mut sessions) = scripted_hub().await;
    let node = Node::start(dir.path(), Some(&hub_url)).await;
    let mut s = next_session(&mut sessions).await;
    s.welcome().await;

    // An order for the hub to cancel: the command's effect (status, stock back) is visible.
    let base = node.base.clone();
    let admin = login(&node.client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(&node.client, &base, &admin, "Kettle", 2500, 10).await;
    let (customer, _) = register(&node.client, &base, "buyer@example.com").await;
    let order = json_of(
        node.client
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&customer)
            .json(&json!({"items": [{"product_id": product, "quantity": 3}]}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let order_id = order["id"].as_str().expect("order id").to_string();
    let available = |node: &Node| {
        let url = format!("{}/v1/products/{product}", node.base);
        let client = node.client.clone();
        async move {
            let p = json_of(client.get(url).send().await.unwrap(), 200).await;
            p["stock"]["available_here"]
                .as_i64()
                .expect("available_here")
        }
    };
    assert_eq!(available(&node).await, 7);

    let changes = hub_batch(&order_id, 40);
    let last = changes.len() as i64;

    // The disk fills up: the database may not grow by a single page.
    node.fill_disk(0).await;
    for attempt in 0..2 {
        s.send_changes(&changes).await;
        assert_eq!(
            s.next_ack().await,
            None,
            "attempt {attempt}: no Ack for a batch not stored; the node ends the stream"
        );
        // Nothing of it was kept, not even the entries that fitted in the pages there were.
        assert_eq!(node.count(HUB_USERS).await, 0);
        assert_eq!(
            node.count(COMMANDS).await,
            0,
            "the command id is not recorded"
        );
        assert_eq!(node.order_status(&order_id).await, "pending_payment");
        assert_eq!(node.hub_cursor().await, 0);
        // The node reconnects by itself and says it has applied nothing.
        s = next_session(&mut sessions).await;
        assert_eq!(s.hello.hub_cursor, 0);
        s.welcome().await;
    }
    assert_eq!(available(&node).await, 7);

    // Space is back, same node process: the re-sent batch is applied once and acknowledged.
    node.free_disk().await;
    s.send_changes(&changes).await;
    assert_eq!(s.next_ack().await, Some(last));
    // The unreadable entry is skipped; its 39 siblings and the command applied.
    assert_eq!(node.count(HUB_USERS).await, 39);
    assert_eq!(node.count(COMMANDS).await, 1);
    assert_eq!(node.order_status(&order_id).await, "cancelled");
    assert_eq!(
        available(&node).await,
        10,
        "the cancel released the stock once"
    );
    assert_eq!(node.hub_cursor().await, last);

    // A replay (the Ack lost on the way) changes nothing.
    s.send(hub_message::Msg::Changes(pb::ChangeBatch {
        changes: changes.clone(),
    }))
    .await;
    assert_eq!(s.next_ack().await, Some(last));
    assert_eq!(node.count(HUB_USERS).await, 39);
    assert_eq!(node.count(COMMANDS).await, 1);
    assert_eq!(available(&node).await, 10);
    node.stop().await;
}

/// What one POST /v1/orders got back.
enum Outcome {
    Created(String),
    Failed(u16),
}

#[tokio::test]
async fn orders_streaming_in_while_the_disk_fills_are_on_disk_exactly_when_they_got_201() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), None).await;
    let base = node.base.clone();
    let admin = login(&node.client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let product = create_product(&node.client, &base, &admin, "Tea", 300, 100_000).await;
    let mut customers = Vec::new();
    for i in 0..4 {
        customers.push(
            register(&node.client, &base, &format!("c{i}@example.com"))
                .await
                .0,
        );
    }
    // A few pages of room: the disk fills while the orders stream in.
    node.fill_disk(12).await;

    const WORKERS: usize = 12;
    const PER_WORKER: usize = 40;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (client, base, product) = (node.client.clone(), base.clone(), product.clone());
        let token = customers[w % customers.len()].clone();
        let outcomes = outcomes.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_WORKER {
                let r = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
                    .send()
                    .await
                    .expect("an answer");
                let status = r.status().as_u16();
                let outcome = if status == 201 {
                    let body: serde_json::Value = r.json().await.expect("order JSON");
                    Outcome::Created(body["id"].as_str().expect("id").to_string())
                } else {
                    Outcome::Failed(status)
                };
                outcomes.lock().await.push(outcome);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().await);
    let created: BTreeSet<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Created(id) => Some(id.clone()),
            Outcome::Failed(_) => None,
        })
        .collect();
    let failed: Vec<u16> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(s) => Some(*s),
            Outcome::Created(_) => None,
        })
        .collect();
    assert_eq!(created.len() + failed.len(), WORKERS * PER_WORKER);
    assert!(!created.is_empty(), "the first orders fitted");
    assert!(!failed.is_empty(), "the disk filled up");
    // A full disk is the storage failing, not the request: 503, retry later.
    assert!(failed.iter().all(|s| *s == 503), "{failed:?}");
    eprintln!(
        "{} orders created, {} refused with 503 while the disk filled",
        created.len(),
        failed.len()
    );

    // Restart: a new node process state on the same file, with the disk free.
    node.stop().await;
    let node = Node::start(dir.path(), None).await;
    let on_disk: BTreeSet<String> = node
        .state
        .db
        .read(|c| {
            let mut stmt = c.prepare("SELECT id FROM orders")?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<BTreeSet<String>>>()?;
            Ok::<_, edgecart_node::db::DbError>(ids)
        })
        .await
        .unwrap();
    assert_eq!(
        on_disk, created,
        "every 201 is on disk and no order exists whose request got an error"
    );
    // The stock agrees: exactly the created orders took a unit each.
    let p = json_of(
        node.client
            .get(format!("{}/v1/products/{product}", node.base))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        p["stock"]["available_here"].as_i64(),
        Some(100_000 - created.len() as i64)
    );
    node.stop().await;
}
