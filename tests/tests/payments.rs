//! The payment saga across node, hub and a real HTTP payment provider: charge once, decline and
//! compensate, store-and-forward while offline, refunds, reconciliation.

use std::time::Duration;

use edgecart_e2e::provider::Provider;
use edgecart_e2e::{
    ADMIN_TOKEN, AdminToken, Bearer, TestHub, TestNode, admin_login, get_json_auth, stock_at,
    wait_until,
};
use edgecart_proto::pb;
use reqwest::Client;
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(20);

struct Shop {
    _dir: tempfile::TempDir,
    hub: TestHub,
    node: TestNode,
    client: Client,
    token: String,
    product: String,
}

async fn shop(hub_args: &[&str], node_args: &[&str]) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start_with(&dir.path().join("hub"), 0, hub_args);
    let node = TestNode::start_with(
        "store-1",
        &dir.path().join("store-1"),
        Some(&hub.url()),
        &hub.enroll("store-1"),
        node_args,
    );
    let client = Client::new();
    let product = hub.stocked_product("Grinder", 2500, 50).await;
    wait_until(
        CONVERGE,
        "stock rights at the node",
        || async { available(&client, &node, &product).await.filter(|a| *a > 0) },
        || async { node.proc.log() },
    )
    .await;
    let r = client
        .post(node.url("/v1/users"))
        .json(&json!({"email": "payer@example.com", "name": "Payer", "password": "payer-pass-123"}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    Shop {
        _dir: dir,
        hub,
        node,
        client,
        token,
        product,
    }
}

async fn available(client: &Client, node: &TestNode, product: &str) -> Option<i64> {
    stock_at(client, node, product).await.map(|(here, _)| here)
}

impl Shop {
    async fn order(&self, qty: i64) -> String {
        let r = self
            .client
            .post(self.node.url("/v1/orders"))
            .bearer_auth(&self.token)
            .json(&json!({"items": [{"product_id": self.product, "quantity": qty}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn pay_card(&self, order: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.node.url(&format!("/v1/orders/{order}/payments")))
            .bearer_auth(&self.token)
            .json(&json!({"method": "card", "card_token": token}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn order_status(&self, order: &str) -> Value {
        self.client
            .get(self.node.url(&format!("/v1/orders/{order}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_order(&self, order: &str, status: &str) -> Value {
        wait_until(
            CONVERGE,
            &format!("order {order} to become {status}"),
            || async {
                let o = self.order_status(order).await;
                (o["status"] == status).then_some(o)
            },
            || async {
                format!(
                    "{}\nnode:\n{}\nhub:\n{}",
                    self.order_status(order).await,
                    self.node.proc.log(),
                    self.hub.proc.log()
                )
            },
        )
        .await
    }

    async fn payments(
        &self,
    ) -> pb::payment_admin_client::PaymentAdminClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AdminToken>,
    > {
        pb::payment_admin_client::PaymentAdminClient::with_interceptor(
            self.hub.channel().await,
            AdminToken(ADMIN_TOKEN),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_payment_is_charged_once_through_the_http_provider_despite_500s_and_a_hub_restart() {
    let (url, provider) = Provider::start(2).await;
    let hub_args = Provider::hub_args(&url);
    let hub_args: Vec<&str> = hub_args.iter().map(String::as_str).collect();
    let mut s = shop(&hub_args, &[]).await;
    let order = s.order(1).await;
    let (status, payment) = s.pay_card(&order, "tok_visa").await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(
        payment["status"], "pending",
        "no fake success before the provider answered"
    );
    let paid = s.wait_order(&order, "paid").await;
    assert_eq!(paid["payments"][0]["status"], "captured");
    {
        let p = provider.state();
        assert_eq!(p.charges.len(), 1, "one charge");
        assert!(
            p.charges.contains_key(payment["id"].as_str().unwrap()),
            "keyed by the payment id"
        );
        assert!(p.requests >= 3, "two 500s were retried with the same key");
    }
    // The hub restarts and the node re-sends everything unacknowledged: still one charge.
    s.hub.restart();
    let order2 = s.order(1).await;
    s.pay_card(&order2, "tok_visa").await;
    s.wait_order(&order2, "paid").await;
    let p = provider.state();
    assert_eq!(
        p.charges.len(),
        2,
        "one charge per payment: {:?}",
        p.charges.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_releases_stock_and_tells_the_customer() {
    let s = shop(&[], &[]).await;
    let before = available(&s.client, &s.node, &s.product).await.unwrap();
    let order = s.order(2).await;
    assert_eq!(
        available(&s.client, &s.node, &s.product).await.unwrap(),
        before - 2
    );
    let (status, _) = s.pay_card(&order, "tok_decline").await;
    assert_eq!(status, 201);
    let cancelled = s.wait_order(&order, "cancelled").await;
    assert_eq!(cancelled["payments"][0]["status"], "failed");
    assert_eq!(
        available(&s.client, &s.node, &s.product).await.unwrap(),
        before,
        "stock released"
    );
    let notes: Value = s
        .client
        .get(s.node.url("/v1/notifications?page_size=100"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        notes["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["event"] == "PaymentFailed"),
        "{notes}"
    );

    // tok_timeout times out once, then succeeds: retried, charged, paid.
    let order = s.order(1).await;
    s.pay_card(&order, "tok_timeout").await;
    s.wait_order(&order, "paid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_card_payments_are_accepted_within_limits_and_charged_when_the_hub_returns() {
    // Orders of 2500: the per-payment limit admits one unit, the node total admits two payments.
    let mut s = shop(
        &[],
        &[
            "--offline-card-limit",
            "3000",
            "--offline-card-total",
            "5000",
        ],
    )
    .await;
    let orders: Vec<String> = futures::future::join_all((0..3).map(|_| s.order(1))).await;
    let big = s.order(2).await;
    s.hub.kill9();
    // The node notices the link is gone, then takes payments offline. Paying before it noticed
    // would make an ordinary pending payment (and a second try a 409): wait for the event.
    let admin = admin_login(&s.client, &s.node).await;
    wait_until(
        CONVERGE,
        "the node to notice the hub is gone",
        || async {
            let st = get_json_auth(&s.client, s.node.url("/v1/sync/status"), &admin).await;
            (st["hub_connected"] == false).then_some(())
        },
        || async { s.node.proc.log() },
    )
    .await;
    let (status, body) = s.pay_card(&orders[0], "tok_visa").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("authorized_offline")),
        "{body}"
    );
    let (status, body) = s.pay_card(&orders[1], "tok_visa").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("authorized_offline")),
        "{body}"
    );
    let (status, body) = s.pay_card(&orders[2], "tok_visa").await;
    assert_eq!(status, 409, "over the node's offline total: {body}");
    let (status, body) = s.pay_card(&big, "tok_visa").await;
    assert_eq!(status, 422, "over the per-payment offline limit: {body}");
    assert_eq!(body["field"], "amount");

    s.hub.restart();
    s.wait_order(&orders[0], "paid").await;
    s.wait_order(&orders[1], "paid").await;
    let mut payments = s.payments().await;
    let list = payments
        .list_payments(pb::ListPaymentsRequest {
            node_id: String::new(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.payments.len(), 2);
    assert!(
        list.payments
            .iter()
            .all(|p| p.offline && p.status == "captured"),
        "{list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_partial_full_bounded_and_idempotent_and_reconciliation_finds_breakage() {
    let s = shop(&[], &[]).await;
    let order = s.order(2).await; // 5000
    let (_, payment) = s.pay_card(&order, "tok_visa").await;
    let payment_id = payment["id"].as_str().unwrap().to_string();
    s.wait_order(&order, "paid").await;
    let mut payments = s.payments().await;
    wait_until(
        CONVERGE,
        "the payment captured in the ledger",
        || {
            let mut p = payments.clone();
            let id = payment_id.clone();
            async move {
                let pay = p
                    .get_payment(pb::GetPaymentRequest { payment_id: id })
                    .await
                    .ok()?
                    .into_inner();
                (pay.status == "captured").then_some(pay)
            }
        },
        || async { String::new() },
    )
    .await;
    let refund = |amount: i64, refund_id: &str| pb::RefundPaymentRequest {
        payment_id: payment_id.clone(),
        amount,
        refund_id: refund_id.to_string(),
        reason: "test".into(),
    };
    let r1 = "01900000-0000-7000-8000-0000000000a1";
    payments.refund_payment(refund(1000, r1)).await.unwrap();
    payments.refund_payment(refund(1000, r1)).await.unwrap(); // the same refund retried: once
    let err = payments.refund_payment(refund(4001, "")).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "above what is left: {err:?}"
    );
    assert_eq!(
        payments
            .refund_payment(refund(0, ""))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );
    payments
        .refund_payment(refund(4000, "01900000-0000-7000-8000-0000000000a2"))
        .await
        .unwrap();
    // The node learns of both refunds; the payment ends fully refunded.
    wait_until(
        CONVERGE,
        "the refunds at the node",
        || async {
            let o = s.order_status(&order).await;
            (o["payments"][0]["status"] == "refunded").then_some(o)
        },
        || async { s.order_status(&order).await.to_string() },
    )
    .await;
    let p = payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.refunded.unwrap().amount, 5000);
    assert_eq!(p.refunds.len(), 2);

    // A card refund requested at the node (admin) goes through the hub to the provider.
    let order = s.order(1).await; // 2500
    let (_, payment) = s.pay_card(&order, "tok_visa").await;
    s.wait_order(&order, "paid").await;
    let admin = admin_login(&s.client, &s.node).await;
    let r = s
        .client
        .post(s.node.url(&format!(
            "/v1/payments/{}/refunds",
            payment["id"].as_str().unwrap()
        )))
        .bearer_auth(&admin)
        .json(&json!({"amount": 700}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["refunds"][0]["status"], "pending",
        "card refunds wait for the provider"
    );
    wait_until(
        CONVERGE,
        "the node's card refund to succeed",
        || async {
            let o = s.order_status(&order).await;
            (o["payments"][0]["status"] == "partially_refunded"
                && o["payments"][0]["refunds"][0]["status"] == "succeeded")
                .then_some(o)
        },
        || async { s.order_status(&order).await.to_string() },
    )
    .await;

    // Refunding a failed payment is refused.
    let order = s.order(1).await;
    let (_, failed) = s.pay_card(&order, "tok_decline").await;
    s.wait_order(&order, "cancelled").await;
    let failed_id = failed["id"].as_str().unwrap().to_string();
    let err = wait_until(
        CONVERGE,
        "the failure at the hub",
        || {
            let mut p = payments.clone();
            let id = failed_id.clone();
            async move {
                let e = p
                    .refund_payment(pb::RefundPaymentRequest {
                        payment_id: id,
                        amount: 100,
                        refund_id: String::new(),
                        reason: String::new(),
                    })
                    .await
                    .err()?;
                (e.code() == tonic::Code::FailedPrecondition).then_some(e)
            }
        },
        || async { String::new() },
    )
    .await;
    assert!(err.message().contains("failed"), "{}", err.message());

    // Clean so far; then a node reports a payment for an order nobody knows.
    let report = payments
        .get_reconciliation_report(pb::ReconciliationRequest {
            offline_threshold_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.clean, "{report:?}");
    let mut sync = pb::sync_client::SyncClient::with_interceptor(
        s.hub.channel().await,
        Bearer(s.hub.enroll("rogue")),
    );
    let clock =
        edgecart_proto::hlc::Clock::new(edgecart_proto::ids::ActorId::parse("rogue").unwrap());
    let ghost = edgecart_proto::sync::PaymentPayload {
        id: "01900000-0000-7000-8000-00000000beef".into(),
        order_id: "01900000-0000-7000-8000-00000000dead".into(),
        user_id: "01900000-0000-7000-8000-000000000001".into(),
        method: "cash".into(),
        status: "captured".into(),
        amount: 999,
        currency: "USD".into(),
        card_token: None,
        refunds: vec![],
        updated_at: 0,
    };
    let messages = vec![
        pb::NodeMessage {
            msg: Some(pb::node_message::Msg::Hello(pb::Hello {
                node_id: "rogue".into(),
                protocol_version: edgecart_proto::sync::PROTOCOL_VERSION,
                release: "test".into(),
                hub_cursor: 0,
                last_seq: 1,
            })),
        },
        pb::NodeMessage {
            msg: Some(pb::node_message::Msg::Changes(pb::ChangeBatch {
                changes: vec![pb::Change {
                    seq: 1,
                    entity: "payment".into(),
                    entity_id: ghost.id.clone(),
                    version: clock.now().to_string(),
                    payload_json: serde_json::to_string(&ghost).unwrap(),
                    ..Default::default()
                }],
            })),
        },
    ];
    let mut replies = sync
        .stream(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = replies.message().await.unwrap() {
        if matches!(m.msg, Some(pb::hub_message::Msg::Ack(_))) {
            break;
        }
    }
    let report = payments
        .get_reconciliation_report(pb::ReconciliationRequest {
            offline_threshold_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!report.clean);
    assert!(
        report
            .issues
            .iter()
            .any(|i| i.kind == "payment_without_order"
                && i.payment_id == ghost.id
                && i.node_id == "rogue"),
        "{report:?}"
    );
}

/// Rows of `sql` (a count) in the SQLite file at `db`, read-only.
fn count(db: &std::path::Path, sql: &str, token: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row(sql, [token], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_charge_leaves_no_card_token_at_the_store_or_the_hub_nor_in_logs_or_answers() {
    let s = shop(&[], &[]).await;
    // A token no other test data contains, so any copy of it is found.
    let card = "tok_visa_trust_6e3b1c";
    let order = s.order(1).await;
    let (status, payment) = s.pay_card(&order, card).await;
    assert_eq!(status, 201, "{payment}");
    assert!(!payment.to_string().contains(card), "{payment}");
    let paid = s.wait_order(&order, "paid").await;
    assert_eq!(paid["payments"][0]["status"], "captured");
    assert!(!paid.to_string().contains(card));

    // The hub's ledger settles first, then the store hears of it: wait for both to forget.
    let (node_db, hub_db) = (s.node.db_path(), s.hub.db_path());
    wait_until(
        CONVERGE,
        "the card token to be cleared at the store and the hub",
        || async {
            let at_store = count(
                &node_db,
                "SELECT count(*) FROM payments WHERE card_token = ?1",
                card,
            );
            let at_hub = count(
                &hub_db,
                "SELECT count(*) FROM ledger WHERE card_token = ?1",
                card,
            );
            (at_store == 0 && at_hub == 0).then_some(())
        },
        || async { s.node.proc.log() },
    )
    .await;
    // The hub's read copy of the store's payments never held it.
    let like = format!("%{card}%");
    assert_eq!(
        count(
            &hub_db,
            "SELECT count(*) FROM payments WHERE payload LIKE ?1",
            &like
        ),
        0
    );
    // Nor do the admin API's answers or either log.
    let mut payments = pb::payment_admin_client::PaymentAdminClient::with_interceptor(
        s.hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let listed = payments
        .list_payments(pb::ListPaymentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{listed:?}").contains(card));
    assert!(!s.hub.proc.log().contains(card));
    assert!(!s.node.proc.log().contains(card));
}
