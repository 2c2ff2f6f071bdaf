//! Observability across real processes: a shop day (orders, a card payment, the link cut by
//! killing the hub, offline card payments, the hub back) with both metrics endpoints scraped
//! along the way. Every scrape passes `promtool check metrics`; counters and gauges move as the
//! day goes; every metric an alert rule or a dashboard panel in `deploy/monitoring/` names is
//! one the binaries export; the logs name each request's id, and never carry a secret.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs it).

use std::time::Duration;

use edgecart_e2e::metrics::{Scrape, lint, metrics_named_in_monitoring, scrape, scrape_linted};
use edgecart_e2e::{
    ADMIN_PASSWORD, ADMIN_TOKEN, JWT_SECRET, TestHub, TestNode, admin_login, stock_at, wait_until,
};
use reqwest::Client;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const SHOPPER_PASSWORD: &str = "shopper-pass-obs-1";
const CARD: &str = "tok_visa";

/// Scrapes `url` until `ok` holds; on timeout shows the last scrape and `log()`.
async fn scrape_until(
    client: &Client,
    url: &str,
    what: &str,
    ok: impl Fn(&Scrape) -> bool,
    log: impl Fn() -> String,
) -> Scrape {
    wait_until(
        WAIT,
        what,
        || async { scrape(client, url).await.filter(|s| ok(s)) },
        || async {
            let last = scrape(client, url)
                .await
                .map(|s| s.text)
                .unwrap_or_default();
            format!(
                "{last}
log:
{}",
                log()
            )
        },
    )
    .await
}

async fn node_until(
    client: &Client,
    node: &TestNode,
    what: &str,
    ok: impl Fn(&Scrape) -> bool,
) -> Scrape {
    scrape_until(client, &node.url("/metrics"), what, ok, || node.proc.log()).await
}

async fn hub_until(
    client: &Client,
    hub: &TestHub,
    what: &str,
    ok: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let url = format!("{}/metrics", hub.metrics_base());
    scrape_until(client, &url, what, ok, || hub.proc.log()).await
}

struct Day {
    client: Client,
    node: TestNode,
    token: String,
    product: String,
}

impl Day {
    async fn order(&self) -> String {
        let r = self
            .client
            .post(self.node.url("/v1/orders"))
            .bearer_auth(&self.token)
            .json(&json!({"items": [{"product_id": self.product, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn pay(&self, order: &str, body: Value) -> Value {
        let r = self
            .client
            .post(self.node.url(&format!("/v1/orders/{order}/payments")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_day_moves_the_metrics_of_both_services_and_the_logs_keep_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start_with(
        &dir.path().join("hub"),
        0,
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let client = Client::new();

    // The hub's metrics listener answers /healthz and a lint-clean /metrics from the start.
    let health: Value = client
        .get(format!("{}/healthz", hub.metrics_base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let hub0 = scrape_linted(&client, "hub", &format!("{}/metrics", hub.metrics_base())).await;
    assert_eq!(hub0.value("edgecart_hub_nodes_connected", &[]), 0.0);

    let product = hub.stocked_product("Kettle", 2400, 40).await;
    let node = TestNode::start("store-obs", &dir.path().join("node"), Some(&hub.url()));
    let node0 = node_until(&client, &node, "the node to report the link up", |s| {
        s.get("edgecart_sync_connected", &[]) == Some(1.0)
    })
    .await;
    lint("node", &node0.text);
    wait_until(
        WAIT,
        "selling rights at the node",
        || async {
            stock_at(&client, &node, &product)
                .await
                .filter(|(here, _)| *here > 0)
        },
        || async { node.proc.log() },
    )
    .await;

    // Register (with our own request id: the log line of the sign-up must carry it), shop.
    let r = client
        .post(node.url("/v1/users"))
        .header("x-request-id", "obs-signup-1")
        .json(&json!({"email": "obs@shop.test", "name": "Obs", "password": SHOPPER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_jwt = admin_login(&client, &node).await;
    let day = Day {
        client: client.clone(),
        node,
        token,
        product: product.clone(),
    };
    let cash_order = day.order().await;
    let card_order = day.order().await;
    day.pay(&cash_order, json!({"method": "cash"})).await;
    let card = day
        .pay(&card_order, json!({"method": "card", "card_token": CARD}))
        .await;
    assert_eq!(card["status"], "pending", "{card}");

    // The hub charges the card; the node hears of it.
    let node1 = node_until(
        &client,
        &day.node,
        "the card capture to reach the node",
        |s| {
            s.get(
                "edgecart_payments_total",
                &[("method", "card"), ("outcome", "captured")],
            ) == Some(1.0)
        },
    )
    .await;
    lint("node", &node1.text);
    assert_eq!(
        node1.value("edgecart_orders_total", &[("outcome", "created")]),
        2.0
    );
    assert_eq!(
        node1.value(
            "edgecart_payments_total",
            &[("method", "cash"), ("outcome", "captured")]
        ),
        1.0
    );
    assert_eq!(
        node1.value(
            "edgecart_payments_total",
            &[("method", "card"), ("outcome", "pending")]
        ),
        1.0
    );
    assert!(node1.value("edgecart_sync_messages_total", &[("direction", "sent")]) > 0.0);
    assert!(node1.value("edgecart_sync_bytes_total", &[("direction", "received")]) > 0.0);
    assert!(
        node1.value(
            "edgecart_http_requests_total",
            &[
                ("route", "/v1/orders"),
                ("method", "POST"),
                ("status", "201")
            ]
        ) >= 2.0
    );
    assert!(
        node1.value(
            "edgecart_http_request_duration_seconds_count",
            &[("route", "/v1/orders")]
        ) >= 2.0
    );
    assert_eq!(node1.value("edgecart_offline_card_payments", &[]), 0.0);

    let hub1 = hub_until(
        &client,
        &hub,
        "the hub to count the charge and the node",
        |s| {
            s.get(
                "edgecart_hub_provider_requests_total",
                &[("operation", "charge"), ("outcome", "succeeded")],
            ) == Some(1.0)
                && s.get("edgecart_hub_nodes_connected", &[]) == Some(1.0)
        },
    )
    .await;
    lint("hub", &hub1.text);
    assert_eq!(
        hub1.value("edgecart_hub_node_connected", &[("node", "store-obs")]),
        1.0
    );
    assert!(
        hub1.value(
            "edgecart_hub_changes_merged_total",
            &[("node", "store-obs")]
        ) > 0.0
    );
    assert!(hub1.value("edgecart_hub_node_lag_seconds", &[("node", "store-obs")]) < 30.0);
    assert!(
        hub1.value(
            "edgecart_hub_grpc_requests_total",
            &[("method", "edgecart.v1.Sync/Stream")]
        ) >= 1.0
    );
    assert!(
        hub1.value(
            "edgecart_hub_grpc_requests_total",
            &[
                ("method", "edgecart.v1.CatalogAdmin/CreateProduct"),
                ("code", "Ok")
            ]
        ) >= 1.0
    );
    assert!(hub1.value("edgecart_hub_sqlite_write_duration_seconds_count", &[]) > 0.0);
    assert!(
        hub1.value(
            "edgecart_hub_provider_request_duration_seconds_count",
            &[("operation", "charge")]
        ) >= 1.0
    );
    assert_eq!(
        hub1.value("edgecart_hub_payments", &[("state", "charging")]),
        0.0
    );

    // Cut the link: kill the hub. The node notices, keeps selling, takes a card offline.
    hub.kill9();
    let _ = node_until(
        &client,
        &day.node,
        "the node to report the link down",
        |s| s.get("edgecart_sync_connected", &[]) == Some(0.0),
    )
    .await;
    let offline_order = day.order().await;
    let offline = day
        .pay(
            &offline_order,
            json!({"method": "card", "card_token": CARD}),
        )
        .await;
    assert_eq!(offline["status"], "authorized_offline", "{offline}");
    let node2 = scrape_linted(&client, "node", &day.node.url("/metrics")).await;
    assert_eq!(node2.value("edgecart_sync_connected", &[]), 0.0);
    assert_eq!(
        node2.value("edgecart_orders_total", &[("outcome", "created")]),
        3.0
    );
    assert_eq!(node2.value("edgecart_offline_card_payments", &[]), 1.0);
    assert_eq!(
        node2.value("edgecart_offline_card_payments_amount", &[]),
        2400.0
    );
    assert!(node2.value("edgecart_offline_card_payments_oldest_age_seconds", &[]) >= 0.0);
    assert!(
        node2.value("edgecart_sync_unacked_changes", &[]) > 0.0,
        "the offline sale waits for the hub"
    );
    assert_eq!(
        node2.value(
            "edgecart_payments_total",
            &[("method", "card"), ("outcome", "authorized_offline")]
        ),
        1.0
    );

    // The hub is back (new process, new metrics port): the node reconnects, its backlog drains,
    // the offline payment is charged.
    hub.restart();
    let node3 = node_until(
        &client,
        &day.node,
        "the backlog to drain after the hub is back",
        |s| {
            s.get("edgecart_sync_connected", &[]) == Some(1.0)
                && s.get("edgecart_sync_unacked_changes", &[]) == Some(0.0)
                && s.get("edgecart_offline_card_payments", &[]) == Some(0.0)
        },
    )
    .await;
    lint("node", &node3.text);
    assert_eq!(
        node3.value("edgecart_sync_oldest_unacked_age_seconds", &[]),
        0.0
    );
    assert!(node3.value("edgecart_sync_reconnects_total", &[]) >= 1.0);
    assert_eq!(
        node3.value(
            "edgecart_payments_total",
            &[("method", "card"), ("outcome", "captured")]
        ),
        2.0
    );
    let hub3 = hub_until(
        &client,
        &hub,
        "the restarted hub to see the node and the charge",
        |s| {
            s.get("edgecart_hub_nodes_connected", &[]) == Some(1.0)
                && s.get(
                    "edgecart_hub_provider_requests_total",
                    &[("operation", "charge"), ("outcome", "succeeded")],
                ) == Some(1.0)
        },
    )
    .await;
    lint("hub", &hub3.text);
    assert_eq!(
        hub3.value("edgecart_hub_oldest_pending_charge_age_seconds", &[]),
        0.0
    );

    // Every family has HELP (promtool checked it) and the contract's families are all there.
    let mut exported = node3.families();
    exported.extend(hub3.families());
    for family in [
        "edgecart_sync_connected",
        "edgecart_sync_unacked_changes",
        "edgecart_sync_oldest_unacked_age_seconds",
        "edgecart_sync_reconnects_total",
        "edgecart_sync_messages_total",
        "edgecart_sync_bytes_total",
        "edgecart_orders_total",
        "edgecart_payments_total",
        "edgecart_offline_card_payments",
        "edgecart_offline_card_payments_amount",
        "edgecart_offline_card_payments_oldest_age_seconds",
        "edgecart_top_ups_total",
        "edgecart_top_up_duration_seconds",
        "edgecart_notifications_queued_total",
        "edgecart_notifications_delivered_total",
        "edgecart_notifications_dead_lettered_total",
        "edgecart_http_requests_total",
        "edgecart_http_request_duration_seconds",
        "edgecart_hub_nodes_connected",
        "edgecart_hub_node_lag_seconds",
        "edgecart_hub_node_pending_changes",
        "edgecart_hub_changes_merged_total",
        "edgecart_hub_stream_errors_total",
        "edgecart_hub_refused_changes_total",
        "edgecart_hub_payments",
        "edgecart_hub_provider_requests_total",
        "edgecart_hub_provider_request_duration_seconds",
        "edgecart_hub_oldest_pending_charge_age_seconds",
        "edgecart_hub_grpc_requests_total",
        "edgecart_hub_grpc_request_duration_seconds",
        "edgecart_hub_sqlite_write_duration_seconds",
        "edgecart_hub_sqlite_write_jobs",
        "edgecart_hub_hellos_in_flight",
        "edgecart_hub_digest_entries_total",
        "edgecart_hub_digest_period_seconds",
    ] {
        assert!(exported.contains(family), "{family} is not exported");
    }
    // What the alerts and dashboards name is what the binaries export.
    let named = metrics_named_in_monitoring();
    assert!(
        named.len() >= 8,
        "deploy/monitoring names too few metrics: {named:?}"
    );
    for (metric, file) in &named {
        assert!(
            exported.contains(metric),
            "{} names {metric}, which neither binary exports",
            file.display()
        );
    }

    // Logs: the sign-up's line carries its request id; no secret anywhere.
    let node_log = day.node.proc.log();
    let hub_log = hub.proc.log();
    assert!(
        node_log
            .lines()
            .any(|l| l.contains("account created") && l.contains("request_id=obs-signup-1")),
        "{node_log}"
    );
    for secret in [
        ADMIN_PASSWORD,
        SHOPPER_PASSWORD,
        JWT_SECRET,
        day.node.credential(),
        ADMIN_TOKEN,
        CARD,
        day.token.as_str(),
        admin_jwt.as_str(),
    ] {
        assert!(
            !node_log.contains(secret),
            "the node logged a secret ({secret:?}):\n{node_log}"
        );
        assert!(
            !hub_log.contains(secret),
            "the hub logged a secret ({secret:?}):\n{hub_log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_on_both_services() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start_with(
        &dir.path().join("hub"),
        0,
        &["--log-format", "json", "--metrics-addr", "127.0.0.1:0"],
    );
    let node = TestNode::start_with(
        "store-json",
        &dir.path().join("node"),
        Some(&hub.url()),
        &hub.enroll("store-json"),
        &["--log-format", "json"],
    );
    let client = Client::new();
    let r = client
        .post(node.url("/v1/users"))
        .header("x-request-id", "json-signup-7")
        .json(&json!({"email": "json@shop.test", "name": "Json", "password": SHOPPER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let lines = |log: String| -> Vec<Value> {
        log.lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect()
    };
    let node_lines = lines(node.proc.log());
    // The bootstrap admin's "account created" (at start-up, in no request) has no request id;
    // the customer's, logged while serving the sign-up, carries the caller's.
    let signup = node_lines
        .iter()
        .find(|l| l["message"] == "account created" && l["role"] == "customer")
        .unwrap_or_else(|| panic!("no sign-up line in {node_lines:?}"));
    assert_eq!(signup["span"]["request_id"], "json-signup-7", "{signup}");
    assert_eq!(signup["span"]["path"], "/v1/users", "{signup}");
    assert_eq!(signup["level"], "INFO");

    // The hub: the node's stream opened inside a `grpc` span with a request id.
    let connected = wait_until(
        WAIT,
        "the hub to log the node's connection",
        || async {
            lines(hub.proc.log())
                .into_iter()
                .find(|l| l["message"] == "node connected")
        },
        || async { hub.proc.log() },
    )
    .await;
    assert_eq!(
        connected["span"]["method"], "edgecart.v1.Sync/Stream",
        "{connected}"
    );
    assert!(
        connected["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{connected}"
    );
    assert!(!hub.proc.log().contains(node.credential()));
}
