//! A hub and several nodes as real processes: catalog and accounts everywhere, stock allocated
//! and sold within rights, the hub killed and restarted, convergence, commands, top-ups.

use std::time::Duration;

use edgecart_e2e::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_TOKEN, AdminToken, TestHub, TestNode, get_json_auth, login,
    order, register, stock_at, wait_until,
};
use edgecart_proto::pb;
use reqwest::Client;
use serde_json::json;
use tonic::transport::Channel;

const CONVERGE: Duration = Duration::from_secs(20);

type Catalog = pb::catalog_admin_client::CatalogAdminClient<
    tonic::service::interceptor::InterceptedService<Channel, AdminToken>,
>;
type Inventory = pb::inventory_admin_client::InventoryAdminClient<
    tonic::service::interceptor::InterceptedService<Channel, AdminToken>,
>;
type Orders = pb::order_admin_client::OrderAdminClient<
    tonic::service::interceptor::InterceptedService<Channel, AdminToken>,
>;

async fn admin_clients(hub: &TestHub) -> (Catalog, Inventory, Orders) {
    let ch = hub.channel().await;
    (
        pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            ch.clone(),
            AdminToken(ADMIN_TOKEN),
        ),
        pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            ch.clone(),
            AdminToken(ADMIN_TOKEN),
        ),
        pb::order_admin_client::OrderAdminClient::with_interceptor(ch, AdminToken(ADMIN_TOKEN)),
    )
}

async fn describe(client: &Client, nodes: &[&TestNode], product: &str) -> String {
    let mut out = String::new();
    for n in nodes {
        out += &format!("{}: {:?}\n", n.id, stock_at(client, n, product).await);
    }
    out
}

struct Cluster {
    _dir: tempfile::TempDir,
    hub: TestHub,
    nodes: Vec<TestNode>,
}

impl Cluster {
    /// Waits until every store is connected at the hub: the allocation of stock received after
    /// that sees all of them (a store joining later gets its floor from the reserve).
    async fn connected(&self) {
        let nodes = pb::node_admin_client::NodeAdminClient::with_interceptor(
            self.hub.channel().await,
            AdminToken(ADMIN_TOKEN),
        );
        let want = self.nodes.len();
        wait_until(
            CONVERGE,
            "every store connected at the hub",
            || {
                let mut nodes = nodes.clone();
                async move {
                    let listed = nodes.list_nodes(pb::ListNodesRequest {}).await.ok()?;
                    let up = listed
                        .into_inner()
                        .nodes
                        .iter()
                        .filter(|n| n.connected)
                        .count();
                    (up == want).then_some(())
                }
            },
            || async { self.hub.proc.log() },
        )
        .await;
    }
}

fn cluster(n: usize) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let nodes = (1..=n)
        .map(|i| {
            TestNode::start(
                &format!("store-{i}"),
                &dir.path().join(format!("store-{i}")),
                Some(&hub.url()),
            )
        })
        .collect();
    Cluster {
        _dir: dir,
        hub,
        nodes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_accounts_and_stock_flow_through_the_hub() {
    let c = cluster(3);
    let client = Client::new();
    let (_, mut inventory, _) = admin_clients(&c.hub).await;
    // Every store known to the hub before the delivery, so that its allocation is the one the
    // assertions below describe (a store arriving later takes its floor from the reserve).
    let node_admin = pb::node_admin_client::NodeAdminClient::with_interceptor(
        c.hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    wait_until(
        CONVERGE,
        "every store connected to the hub",
        || {
            let mut admin = node_admin.clone();
            async move {
                let nodes = admin.list_nodes(pb::ListNodesRequest {}).await.ok()?;
                (nodes
                    .into_inner()
                    .nodes
                    .iter()
                    .filter(|n| n.connected)
                    .count()
                    == 3)
                    .then_some(())
            }
        },
        || async { c.hub.proc.log() },
    )
    .await;

    // A product created at the hub appears at every node; stock received at the hub is
    // allocated to every node (floor 5 each, the rest by share, 10% kept in reserve).
    c.connected().await;
    let product = c.hub.stocked_product("Hub tea", 700, 60).await;
    let nodes: Vec<&TestNode> = c.nodes.iter().collect();
    for node in &nodes {
        wait_until(
            CONVERGE,
            &format!("{} to receive rights and the global stock", node.id),
            || async {
                stock_at(&client, node, &product)
                    .await
                    .filter(|(here, global)| *here >= 5 && *global == 60)
            },
            || describe(&client, &nodes, &product),
        )
        .await;
    }
    let level = inventory
        .get_stock(pb::GetStockRequest {
            product_id: product.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let node_rights: i64 = level.nodes.iter().map(|n| n.rights).sum();
    assert_eq!(level.global_stock, 60);
    assert_eq!(
        node_rights + level.hub_rights,
        60,
        "rights add up to the stock: {level:?}"
    );
    assert!(
        level.hub_rights >= 6,
        "the reserve stays at the hub: {level:?}"
    );

    // A customer registered at one store logs in at another.
    register(&client, &c.nodes[0], "roaming@example.com").await;
    let token = wait_until(
        CONVERGE,
        "the account to reach store-3",
        || {
            login(
                &client,
                &c.nodes[2],
                "roaming@example.com",
                "shopper-pass-1",
            )
        },
        || async { String::new() },
    )
    .await;

    // Sales at every node; each node's sales reach the hub and every node's global figure.
    let mut sold = 0;
    for node in &c.nodes {
        let t = login(&client, node, "roaming@example.com", "shopper-pass-1").await;
        let t = t.unwrap_or_else(|| token.clone());
        let (status, body) = order(&client, node, &t, &product, 2).await;
        assert_eq!(status, 201, "{body}");
        sold += 2;
    }
    let expected = 60 - sold;
    for node in &nodes {
        wait_until(
            CONVERGE,
            &format!("{} to see every sale in the global stock", node.id),
            || async {
                stock_at(&client, node, &product)
                    .await
                    .filter(|(_, g)| *g == expected)
            },
            || describe(&client, &nodes, &product),
        )
        .await;
    }
    let level = inventory
        .get_stock(pb::GetStockRequest {
            product_id: product.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(level.global_stock, expected);
    assert!(level.nodes.iter().all(|n| n.sold == 2), "{level:?}");

    // The operator's CLI sees the three nodes connected and the product's stock.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(edgecart_e2e::bin("edgecart-admin"))
            .args(["--hub", &c.hub.url(), "--token", ADMIN_TOKEN])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let nodes_out = cli(&["nodes"]);
    for node in &c.nodes {
        assert!(
            nodes_out
                .lines()
                .any(|l| l.starts_with(&node.id) && l.contains("true")),
            "{nodes_out}"
        );
    }
    let stock_out = cli(&["stock", &product]);
    assert!(
        stock_out.contains(&format!("global {expected}")),
        "{stock_out}"
    );

    // A second registration of the same email at another store is refused by the hub.
    register(&client, &c.nodes[1], "dup@example.com").await;
    wait_until(
        CONVERGE,
        "dup@ to reach store-3",
        || login(&client, &c.nodes[2], "dup@example.com", "shopper-pass-1"),
        || async { String::new() },
    )
    .await;
    let late = client
        .post(c.nodes[2].url("/v1/users"))
        .json(&json!({"email": "dup@example.com", "name": "Late", "password": "late-pass-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        late.status(),
        409,
        "the node already knows the email from the hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sell_within_their_rights_while_the_hub_is_down_and_converge_after() {
    let mut c = cluster(3);
    let client = Client::new();
    c.connected().await;
    let product = c.hub.stocked_product("Scarce kettle", 4500, 30).await;
    let nodes: Vec<&TestNode> = c.nodes.iter().collect();
    let mut rights = Vec::new();
    let mut tokens = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        let (here, _) = wait_until(
            CONVERGE,
            "rights to arrive",
            || async {
                stock_at(&client, node, &product)
                    .await
                    .filter(|(here, g)| *here >= 5 && *g == 30)
            },
            || describe(&client, &nodes, &product),
        )
        .await;
        rights.push(here);
        tokens.push(register(&client, node, &format!("offline{i}@example.com")).await);
    }

    // The hub dies. Every node sells exactly its rights, then refuses with both figures.
    c.hub.kill9();
    let mut sold_total = 0;
    for (i, node) in c.nodes.iter().enumerate() {
        for _ in 0..rights[i] {
            let (status, body) = order(&client, node, &tokens[i], &product, 1).await;
            assert_eq!(status, 201, "{} selling within its rights: {body}", node.id);
            sold_total += 1;
        }
        let (status, body) = order(&client, node, &tokens[i], &product, 1).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["available_here"], 0);
        assert!(
            body["global"].as_i64().unwrap() > 0,
            "the last known global stock: {body}"
        );
        let admin = login(&client, node, ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .unwrap();
        let status = get_json_auth(&client, node.url("/v1/sync/status"), &admin).await;
        assert_eq!(status["hub_connected"], false, "{status}");
        assert!(status["pending_changes"].as_i64().unwrap() > 0, "{status}");
    }
    assert!(sold_total <= 30, "never more than received");

    // The hub comes back: every replica converges to the same stock, no sale lost or doubled.
    c.hub.restart();
    let (_, _, orders) = admin_clients(&c.hub).await;
    let expected = 30 - sold_total;
    for node in &nodes {
        wait_until(
            CONVERGE,
            &format!("{} to converge after the hub restart", node.id),
            || async {
                stock_at(&client, node, &product)
                    .await
                    .filter(|(_, g)| *g == expected)
            },
            || describe(&client, &nodes, &product),
        )
        .await;
    }
    let level = wait_until(
        CONVERGE,
        "the hub to have every sale",
        || async {
            c.hub
                .stock(&product)
                .await
                .filter(|l| l.global_stock == expected)
        },
        || describe(&client, &nodes, &product),
    )
    .await;
    for (i, n) in c.nodes.iter().enumerate() {
        let at_hub = level.nodes.iter().find(|s| s.node_id == n.id).unwrap();
        assert_eq!(at_hub.sold, rights[i], "{level:?}");
    }
    let all = wait_until(
        CONVERGE,
        "every order's read copy at the hub",
        || {
            let mut o = orders.clone();
            async move {
                let list = o
                    .list_orders(pb::ListOrdersRequest {
                        node_id: String::new(),
                        page_size: 500,
                        page_token: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                (list.orders.len() as i64 == sold_total).then_some(list)
            }
        },
        || async { String::new() },
    )
    .await;
    let mut ids: Vec<_> = all.orders.iter().map(|o| o.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len() as i64, sold_total, "no order twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_commands_reach_the_owning_node_and_short_nodes_get_top_ups() {
    let c = cluster(2);
    let client = Client::new();
    let (_, _, mut orders) = admin_clients(&c.hub).await;
    c.connected().await;
    let product = c.hub.stocked_product("Teapot", 3000, 40).await;
    let nodes: Vec<&TestNode> = c.nodes.iter().collect();
    let (here, _) = wait_until(
        CONVERGE,
        "rights at store-1",
        || async {
            stock_at(&client, &c.nodes[0], &product)
                .await
                .filter(|(h, g)| *h > 0 && *g == 40)
        },
        || describe(&client, &nodes, &product),
    )
    .await;

    // More than store-1 holds: it asks the hub for a top-up from its reserve and sells.
    let token = register(&client, &c.nodes[0], "big@example.com").await;
    let (status, body) = order(&client, &c.nodes[0], &token, &product, here + 2).await;
    assert_eq!(status, 201, "top-up from the hub's reserve: {body}");
    let order_id = body["id"].as_str().unwrap().to_string();
    let paid = client
        .post(c.nodes[0].url(&format!("/v1/orders/{order_id}/payments")))
        .bearer_auth(&token)
        .json(&json!({"method": "cash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 201);

    // The hub ships it: a command the owning node applies.
    wait_until(
        CONVERGE,
        "the paid order at the hub",
        || {
            let mut o = orders.clone();
            let id = order_id.clone();
            async move {
                let order = o
                    .get_order(pb::GetOrderRequest { order_id: id })
                    .await
                    .ok()?
                    .into_inner();
                (order.status == "paid").then_some(order)
            }
        },
        || async { String::new() },
    )
    .await;
    orders
        .update_order_status(pb::UpdateOrderStatusRequest {
            order_id: order_id.clone(),
            status: "shipped".into(),
        })
        .await
        .unwrap();
    let admin = login(&client, &c.nodes[0], ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    wait_until(
        CONVERGE,
        "store-1 to ship the order",
        || async {
            let o = get_json_auth(
                &client,
                c.nodes[0].url(&format!("/v1/orders/{order_id}")),
                &admin,
            )
            .await;
            (o["status"] == "shipped").then_some(o)
        },
        || async { String::new() },
    )
    .await;
    // An illegal move is refused by the hub with FAILED_PRECONDITION; unknown ids are NOT_FOUND.
    let err = orders
        .update_order_status(pb::UpdateOrderStatusRequest {
            order_id: order_id.clone(),
            status: "cancelled".into(),
        })
        .await;
    let err = wait_for_status(err, &mut orders, &order_id).await;
    assert_eq!(err, tonic::Code::FailedPrecondition);
    let missing = orders
        .get_order(pb::GetOrderRequest {
            order_id: "01900000-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// The hub's read copy may still say `paid` right after the node shipped: retry until the
/// copy catches up and the hub refuses.
async fn wait_for_status(
    first: Result<tonic::Response<pb::UpdateOrderStatusResponse>, tonic::Status>,
    orders: &mut Orders,
    order_id: &str,
) -> tonic::Code {
    let mut outcome = first;
    for _ in 0..100 {
        if let Err(e) = &outcome {
            return e.code();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = orders
            .update_order_status(pb::UpdateOrderStatusRequest {
                order_id: order_id.into(),
                status: "cancelled".into(),
            })
            .await;
    }
    tonic::Code::Ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let ch = hub.channel().await;

    // Admin calls without or with a wrong token.
    let mut bad = pb::node_admin_client::NodeAdminClient::with_interceptor(
        ch.clone(),
        AdminToken("wrong-token-wrong-token"),
    );
    assert_eq!(
        bad.list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );
    let mut none = pb::node_admin_client::NodeAdminClient::new(ch.clone());
    assert_eq!(
        none.list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    // Invalid arguments name the field.
    let mut catalog = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
        ch.clone(),
        AdminToken(ADMIN_TOKEN),
    );
    let err = catalog
        .create_product(pb::CreateProductRequest {
            name: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("name"), "{}", err.message());
    let err = catalog
        .get_product(pb::GetProductRequest {
            id: "x'; DROP TABLE products".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A node with a wrong token never connects, and the hub logs no secret.
    let node = TestNode::start_with_token(
        "intruder",
        &dir.path().join("n"),
        Some(&hub.url()),
        "not-the-node-token-123",
    );
    let client = Client::new();
    let admin = login(&client, &node, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    // Wait until the node has tried (and been refused) twice, then look.
    wait_until(
        CONVERGE,
        "the hub to refuse the intruder's stream twice",
        || async {
            (hub.proc.log().matches("refused a node connection").count() >= 2).then_some(())
        },
        || async { format!("hub:\n{}\nnode:\n{}", hub.proc.log(), node.proc.log()) },
    )
    .await;
    assert!(
        node.proc.log().contains("Unauthenticated")
            || node.proc.log().contains("valid node credential")
    );
    let status = get_json_auth(&client, node.url("/v1/sync/status"), &admin).await;
    assert_eq!(status["hub_connected"], false);
    assert_eq!(status["mode"], "disconnected");
    assert!(!hub.proc.log().contains("not-the-node-token-123"));
    assert!(!node.proc.log().contains("not-the-node-token-123"));
    let mut admin_nodes = pb::node_admin_client::NodeAdminClient::with_interceptor(
        ch.clone(),
        AdminToken(ADMIN_TOKEN),
    );
    assert!(
        admin_nodes
            .list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes
            .is_empty()
    );

    // An unsupported protocol version is refused with FAILED_PRECONDITION.
    let mut sync = pb::sync_client::SyncClient::with_interceptor(
        ch,
        edgecart_e2e::Bearer(hub.enroll("future-node")),
    );
    let hello = pb::NodeMessage {
        msg: Some(pb::node_message::Msg::Hello(pb::Hello {
            node_id: "future-node".into(),
            protocol_version: 99,
            release: "99.0.0".into(),
            hub_cursor: 0,
            last_seq: 0,
        })),
    };
    let err = sync
        .stream(futures::stream::iter(vec![hello]))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
}
