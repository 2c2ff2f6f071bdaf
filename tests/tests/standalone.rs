//! A store that ran standalone for a while, compacting its change log to the newest entry per
//! record, is connected to a hub later: the hub ends with the same stock and orders as if it had
//! seen every operation.

use std::time::Duration;

use edgecart_e2e::{
    ADMIN_TOKEN, AdminToken, TestHub, TestNode, admin_login, order, register, stock_at, wait_until,
};
use edgecart_proto::pb;
use reqwest::Client;
use serde_json::{Value, json};

/// (all entries, entries that are the newest of their key) in a node's change log.
fn log_sizes(db: &std::path::Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(db).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.query_row(
        "SELECT (SELECT count(*) FROM changes),
                (SELECT count(*) FROM (SELECT 1 FROM changes
                   GROUP BY entity, entity_id, json_extract(payload, '$.entry.key')))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

async fn post(client: &Client, node: &TestNode, path: &str, token: &str, body: Value) -> Value {
    let r = client
        .post(node.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_standalone_store_converges_when_connected_later() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("solo");
    let client = Client::new();
    let compact = ["--changelog-compact-secs", "1"];
    let mut solo = TestNode::start_with("solo", &store_dir, None, "", &compact);
    let admin = admin_login(&client, &solo).await;
    let product = post(
        &client,
        &solo,
        "/v1/products",
        &admin,
        json!({"name": "Lantern", "price": {"amount": 1200, "currency": "USD"}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stock = format!("/v1/products/{product}/stock");
    for _ in 0..8 {
        post(&client, &solo, &stock, &admin, json!({"delta": 5})).await;
    }
    let token = register(&client, &solo, "solo@example.com").await;
    let mut orders = Vec::new();
    for qty in [1, 2, 3, 4] {
        let (status, body) = order(&client, &solo, &token, &product, qty).await;
        assert_eq!(status, 201, "{body}");
        orders.push(body["id"].as_str().unwrap().to_string());
    }
    let cancel = format!("/v1/orders/{}/cancel", orders[1]);
    post(&client, &solo, &cancel, &token, json!({})).await;
    let pay = format!("/v1/orders/{}/payments", orders[0]);
    post(&client, &solo, &pay, &token, json!({"method": "cash"})).await;
    // 40 received, 2 released, 10 sold.
    let expected = stock_at(&client, &solo, &product).await.unwrap();
    assert_eq!(expected, (32, 32));
    wait_until(
        Duration::from_secs(20),
        "the standalone node compacting its change log",
        || async {
            let (all, newest) = log_sizes(&solo.db_path());
            (all == newest).then_some(())
        },
        || async { format!("log (all, newest): {:?}", log_sizes(&solo.db_path())) },
    )
    .await;
    solo.kill9();

    // Connected to a hub for the first time.
    let hub = TestHub::start(&dir.path().join("hub"));
    let solo = TestNode::start("solo", &store_dir, Some(&hub.url()));
    let level = wait_until(
        Duration::from_secs(30),
        "the hub learning the store's stock",
        || async {
            hub.stock(&product)
                .await
                .filter(|l| l.global_stock == expected.1)
        },
        || async { format!("hub: {:?}", hub.stock(&product).await) },
    )
    .await;
    let at_store = level.nodes.iter().find(|n| n.node_id == "solo").unwrap();
    assert_eq!((at_store.received, at_store.sold), (42, 10));
    let mut admin_orders = pb::order_admin_client::OrderAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let statuses = wait_until(
        Duration::from_secs(30),
        "the hub learning the store's orders",
        || {
            let mut admin_orders = admin_orders.clone();
            let orders = orders.clone();
            async move {
                let mut out = Vec::new();
                for id in &orders {
                    let o = admin_orders
                        .get_order(pb::GetOrderRequest {
                            order_id: id.clone(),
                        })
                        .await
                        .ok()?
                        .into_inner();
                    out.push(o.status);
                }
                Some(out)
            }
        },
        || async { String::new() },
    )
    .await;
    assert_eq!(
        statuses,
        ["paid", "cancelled", "pending_payment", "pending_payment"],
        "each order in its newest state"
    );
    let listed = admin_orders
        .list_orders(pb::ListOrdersRequest {
            node_id: "solo".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.orders.len(),
        orders.len(),
        "no order lost, none doubled"
    );
    assert_eq!(stock_at(&client, &solo, &product).await.unwrap().1, 32);
}
