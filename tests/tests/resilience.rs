//! The sync protocol under bad input and recovery: replayed, out-of-order, malformed and
//! forged stream messages change nothing twice; a node restored from an older copy of its
//! database is detected and re-synced; acknowledged change-log entries are compacted.

use std::time::Duration;

use edgecart_e2e::{
    ADMIN_TOKEN, AdminToken, Bearer, TestHub, TestNode, admin_login, get_json_auth, login, order,
    register, stock_at, wait_until,
};
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::stock::{Entry, EntryKey};
use edgecart_proto::sync::{PROTOCOL_VERSION, StockPayload};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CONVERGE: Duration = Duration::from_secs(20);

fn stock_change(seq: i64, clock: &Clock, product: &str, key: EntryKey, value: u64) -> pb::Change {
    pb::Change {
        seq,
        entity: "stock".into(),
        entity_id: product.into(),
        version: clock.now().to_string(),
        payload_json: serde_json::to_string(&StockPayload {
            product_id: product.into(),
            entry: Entry { key, value },
        })
        .unwrap(),
        ..Default::default()
    }
}

/// A hand-driven node stream: send a batch, wait for its acknowledgement.
struct RawNode {
    out: mpsc::Sender<pb::NodeMessage>,
    replies: tonic::Streaming<pb::HubMessage>,
}

impl RawNode {
    async fn connect(hub: &TestHub, id: &str) -> RawNode {
        let mut sync = pb::sync_client::SyncClient::with_interceptor(
            hub.channel().await,
            Bearer(hub.enroll(id)),
        );
        let (out, rx) = mpsc::channel(8);
        out.send(pb::NodeMessage {
            msg: Some(node_message::Msg::Hello(pb::Hello {
                node_id: id.into(),
                protocol_version: PROTOCOL_VERSION,
                release: "raw".into(),
                hub_cursor: 0,
                last_seq: 0,
            })),
        })
        .await
        .unwrap();
        let replies = sync
            .stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        RawNode { out, replies }
    }

    async fn send(&mut self, changes: Vec<pb::Change>) -> i64 {
        self.out
            .send(pb::NodeMessage {
                msg: Some(node_message::Msg::Changes(pb::ChangeBatch { changes })),
            })
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.replies.message())
                .await
                .expect("an ack in time")
                .expect("stream alive")
                .expect("a message");
            if let Some(hub_message::Msg::Ack(a)) = m.msg {
                return a.seq;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_out_of_order_malformed_and_forged_messages_change_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let mut inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let product = hub.stocked_product("Replayed", 100, 0).await;
    let me = ActorId::parse("raw-1").unwrap();
    let clock = Clock::new(me.clone());
    let mut node = RawNode::connect(&hub, "raw-1").await;

    let received = |level: &pb::StockLevel| {
        level
            .nodes
            .iter()
            .find(|n| n.node_id == "raw-1")
            .map_or(0, |n| n.received)
    };
    let get = |inv: &mut pb::inventory_admin_client::InventoryAdminClient<_>| {
        let product = product.clone();
        let mut inv: pb::inventory_admin_client::InventoryAdminClient<_> = inv.clone();
        async move {
            inv.get_stock(pb::GetStockRequest {
                product_id: product,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };

    // 10 units received at the node; the batch is then replayed twice.
    let batch = vec![stock_change(
        1,
        &clock,
        &product,
        EntryKey::Inc(me.clone()),
        10,
    )];
    assert_eq!(node.send(batch.clone()).await, 1);
    assert_eq!(node.send(batch.clone()).await, 1);
    assert_eq!(node.send(batch).await, 1);
    let level = get(&mut inventory).await;
    assert_eq!(
        (received(&level), level.global_stock),
        (10, 10),
        "{level:?}"
    );

    // An older sequence number with a different value is a replay: ignored.
    assert_eq!(
        node.send(vec![stock_change(
            1,
            &clock,
            &product,
            EntryKey::Inc(me.clone()),
            99
        )])
        .await,
        1
    );
    // Malformed payloads and unknown entities are skipped; the stream and the hub go on.
    let mut bad = stock_change(2, &clock, &product, EntryKey::Inc(me.clone()), 1);
    bad.payload_json = "{not json".into();
    let mut unknown = stock_change(3, &clock, &product, EntryKey::Inc(me.clone()), 1);
    unknown.entity = "teleport".into();
    let mut no_version = stock_change(4, &clock, &product, EntryKey::Inc(me.clone()), 1);
    no_version.version = "yesterday".into();
    // A node may not write another actor's cells (here: give itself the hub's stock).
    let forged = stock_change(5, &clock, &product, EntryKey::Inc(ActorId::hub()), 1000);
    assert_eq!(node.send(vec![bad, unknown, no_version, forged]).await, 5);
    let level = get(&mut inventory).await;
    assert_eq!(
        (received(&level), level.global_stock, level.hub_rights),
        (10, 10, 0),
        "{level:?}"
    );

    // Later, genuine changes still apply once.
    let sale = vec![stock_change(
        6,
        &clock,
        &product,
        EntryKey::Dec(me.clone()),
        4,
    )];
    assert_eq!(node.send(sale.clone()).await, 6);
    assert_eq!(node.send(sale).await, 6);
    let level = get(&mut inventory).await;
    assert_eq!(level.global_stock, 6, "{level:?}");
    inventory
        .receive_stock(pb::ReceiveStockRequest {
            product_id: product.clone(),
            quantity: 1,
        })
        .await
        .unwrap();
    assert!(hub.proc.log().contains("skipped a change"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_older_copy_resyncs_and_acknowledged_entries_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let node_dir = dir.path().join("store-1");
    let mut node = TestNode::start("store-1", &node_dir, Some(&hub.url()));
    let client = Client::new();
    let inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let product = hub.stocked_product("Restored", 100, 20).await;
    let stock = |node: &TestNode| {
        let url = node.url(&format!("/v1/products/{product}"));
        let client = client.clone();
        async move {
            let p: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            Some((
                p["stock"]["available_here"].as_i64()?,
                p["stock"]["global"].as_i64()?,
            ))
        }
    };
    wait_until(
        CONVERGE,
        "rights at the node",
        || async { stock(&node).await.filter(|(h, _)| *h > 0) },
        || async { node.proc.log() },
    )
    .await;
    let r = client
        .post(node.url("/v1/users"))
        .json(&json!({"email": "restore@example.com", "name": "R", "password": "restore-pass-1"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(order(&client, &node, &token, &product, 2).await.0, 201);
    let admin = admin_login(&client, &node).await;
    // Once the hub has everything, the node's log is compacted down to its newest entry.
    wait_until(
        CONVERGE,
        "the hub to acknowledge everything",
        || async {
            let s = get_json_auth(&client, node.url("/v1/sync/status"), &admin).await;
            (s["pending_changes"] == 0 && s["hub_connected"] == true).then_some(s)
        },
        || async { node.proc.log() },
    )
    .await;

    // Back up the node's database while it is stopped.
    node.kill9();
    let db = node_dir.join("edgecart-node.db");
    let backup = dir.path().join("backup.db");
    checkpoint_copy(&node_dir, &db, &backup);
    node.restart();
    let admin = admin_login(&client, &node).await;
    assert_eq!(order(&client, &node, &token, &product, 3).await.0, 201);
    wait_until(
        CONVERGE,
        "the sale after the backup to reach the hub",
        || async {
            (get_json_auth(&client, node.url("/v1/sync/status"), &admin).await["pending_changes"]
                == 0)
                .then_some(())
        },
        || async { node.proc.log() },
    )
    .await;

    // Restore the older copy and start again: the hub notices and re-syncs the node.
    node.replace_database(&backup);
    node.restart();
    let mut inv = inventory.clone();
    let product_id = product.clone();
    let level = inv
        .get_stock(pb::GetStockRequest { product_id })
        .await
        .unwrap()
        .into_inner();
    let at_hub = level
        .nodes
        .iter()
        .find(|n| n.node_id == "store-1")
        .unwrap()
        .clone();
    assert_eq!(at_hub.sold, 5, "{level:?}");
    // The restored node learns its own sales back: it cannot sell the 3 units twice.
    wait_until(
        CONVERGE,
        "the restored node to get its own cells back",
        || async {
            stock(&node)
                .await
                .filter(|(h, g)| *h == at_hub.rights && *g == 15)
        },
        || async { format!("{:?}\n{}", stock(&node).await, hub.proc.log()) },
    )
    .await;
    assert!(
        hub.proc.log().contains("re-syncing"),
        "the hub detected the restore"
    );
    // New sales after the restore are not mistaken for replays.
    assert_eq!(order(&client, &node, &token, &product, 1).await.0, 201);
    wait_until(
        CONVERGE,
        "the post-restore sale at the hub",
        || async { hub.stock(&product).await.filter(|l| l.global_stock == 14) },
        || async { hub.proc.log() },
    )
    .await;
}

/// Copies a stopped node's database, folding the WAL in first so the copy is complete.
fn checkpoint_copy(dir: &std::path::Path, db: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(format!(".backup '{}'", to.display()))
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        // Without the sqlite3 shell: copy the file and its WAL side by side.
        std::fs::copy(db, to).unwrap();
        let wal = dir.join("edgecart-node.db-wal");
        if wal.exists() {
            std::fs::copy(&wal, format!("{}-wal", to.display())).unwrap();
        }
    }
}

/// A store restored from an older copy while the hub is away knows it by itself (its change-log
/// watermark is ahead of the database): it does not sell what it had sold before — the copy may
/// count rights already spent — not even after another restart, until the hub re-syncs it.
/// Products it had never sold stay on sale (until a restart: then what it sold since is held too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_while_the_hub_is_away_holds_the_products_it_sold_until_resynced() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(&dir.path().join("hub"));
    let node_dir = dir.path().join("store-1");
    let mut node = TestNode::start("store-1", &node_dir, Some(&hub.url()));
    let client = Client::new();
    let mut products = Vec::new();
    for name in ["Sold before", "Never sold"] {
        products.push(hub.stocked_product(name, 100, 20).await);
    }
    let (sold, never) = (products[0].clone(), products[1].clone());
    for p in &products {
        wait_until(
            CONVERGE,
            "rights at the node",
            || async { stock_at(&client, &node, p).await.filter(|(h, _)| *h > 2) },
            || async { node.proc.log() },
        )
        .await;
    }
    let token = register(&client, &node, "held@example.com").await;
    assert_eq!(order(&client, &node, &token, &sold, 1).await.0, 201);
    let copy = dir.path().join("copy.db");
    edgecart_e2e::chaos::backup(&node.db_path(), &copy);
    assert_eq!(order(&client, &node, &token, &sold, 1).await.0, 201);
    // The watermark beside the database moves past the copy's change log (written about once
    // a second).
    let copy_seq = edgecart_e2e::chaos::log_end(&copy);
    wait_until(
        CONVERGE,
        "the watermark to move past the copy",
        || async { (node.watermark()? > copy_seq).then_some(()) },
        || async { node.proc.log() },
    )
    .await;

    hub.kill9();
    node.replace_database(&copy);
    for start in 0..2 {
        node.restart();
        let token = login(&client, &node, "held@example.com", "shopper-pass-1")
            .await
            .expect("the shopper signs in");
        let (status, body) = order(&client, &node, &token, &sold, 1).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["type"], "urn:edgecart:problem:resyncing");
        if start == 0 {
            assert_eq!(order(&client, &node, &token, &never, 1).await.0, 201);
        }
    }
    assert!(
        node.proc
            .log()
            .contains("older than what this node had written")
    );

    // The hub comes back: it re-syncs the node, which sells again, counting right.
    hub.restart();
    let token = login(&client, &node, "held@example.com", "shopper-pass-1")
        .await
        .unwrap();
    wait_until(
        CONVERGE,
        "the node to sell the held product again",
        || async { (order(&client, &node, &token, &sold, 1).await.0 == 201).then_some(()) },
        || async { format!("{}\n{}", node.proc.log(), hub.proc.log()) },
    )
    .await;
    wait_until(
        CONVERGE,
        "the node to drop its restore marker (at the hub's heartbeat after the re-sync)",
        || async { (!node_dir.join("edgecart-node.restored").exists()).then_some(()) },
        || async { node.proc.log() },
    )
    .await;
    // Nothing sold on either side of the restore is lost or counted twice: 2 + 1 units of the
    // held product, and the unit of the other sold while the hub was away.
    for (product, global) in [(&sold, 17), (&never, 19)] {
        wait_until(
            CONVERGE,
            "every unit sold counted once at the hub",
            || async {
                hub.stock(product)
                    .await
                    .filter(|l| l.global_stock == global)
            },
            || async { hub.proc.log() },
        )
        .await;
    }
    // Dealt with: a later restart, even with the hub away, is an ordinary one.
    hub.kill9();
    node.restart();
    let token = login(&client, &node, "held@example.com", "shopper-pass-1")
        .await
        .unwrap();
    let (status, body) = order(&client, &node, &token, &sold, 1).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        !node
            .proc
            .log()
            .contains("older than what this node had written")
    );
}
