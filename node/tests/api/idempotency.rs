//! `Idempotency-Key`: a retried POST returns the first result and consumes stock once.

use serde_json::json;

use crate::helpers::{TestApp, json_of, problem};

#[tokio::test]
async fn a_retried_order_returns_the_first_response_and_sells_once() {
    let app = TestApp::spawn().await;
    let product = app.product("Tin", 1500, 10).await;
    let (token, _) = app.register("retry@example.com").await;
    let send = |key: &'static str, qty: i64| {
        let app = &app;
        let token = token.clone();
        let product = product.clone();
        async move {
            app.client
                .post(app.url("/v1/orders"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&json!({"items": [{"product_id": product, "quantity": qty}]}))
                .send()
                .await
                .unwrap()
        }
    };
    let first = send("order-abc", 2).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.text().await.unwrap();
    let retry = send("order-abc", 2).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.text().await.unwrap(),
        first,
        "byte-for-byte the first response"
    );
    assert_eq!(app.stock(&product).await.0, 8, "stock consumed once");
    // The same key for a different request is refused.
    problem(send("order-abc", 3).await, 422, Some("Idempotency-Key")).await;
    // Keys are per customer: another customer's identical key is independent.
    let (other, _) = app.register("other@example.com").await;
    let r = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(other)
        .header("idempotency-key", "order-abc")
        .json(&json!({"items": [{"product_id": product, "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.stock(&product).await.0, 6);
    let orders = json_of(app.get("/v1/orders", Some(&token)).await, 200).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_order() {
    let app = TestApp::spawn().await;
    let product = app.product("Jar", 200, 50).await;
    let (token, _) = app.register("burst@example.com").await;
    let responses = futures::future::join_all((0..16).map(|_| {
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", "burst-1")
            .json(&json!({"items": [{"product_id": product, "quantity": 3}]}))
            .send()
    }))
    .await;
    let mut bodies = Vec::new();
    for r in responses {
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        bodies.push(json_of(r, 201).await["id"].as_str().unwrap().to_string());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every retry got the same order");
    assert_eq!(app.stock(&product).await.0, 47);
}

#[tokio::test]
async fn a_retried_payment_is_recorded_once() {
    let app = TestApp::spawn().await;
    let product = app.product("Box", 1000, 3).await;
    let (token, _) = app.register("payonce@example.com").await;
    let order = json_of(app.order(&token, &product, 1).await, 201).await;
    let path = format!("/v1/orders/{}/payments", order["id"].as_str().unwrap());
    let pay = || {
        app.client
            .post(app.url(&path))
            .bearer_auth(&token)
            .header("idempotency-key", "pay-1")
            .json(&json!({"method": "cash"}))
            .send()
    };
    let first = json_of(pay().await.unwrap(), 201).await;
    let second = json_of(pay().await.unwrap(), 201).await;
    assert_eq!(first["id"], second["id"]);
    let order = json_of(
        app.get(
            &format!("/v1/orders/{}", order["id"].as_str().unwrap()),
            Some(&token),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(order["payments"].as_array().unwrap().len(), 1);
    assert_eq!(order["status"], "paid");
    // Without the key, a second payment is a conflict, not a double charge.
    let r = app
        .post(&path, Some(&token), &json!({"method": "cash"}))
        .await;
    problem(r, 409, None).await;
}

#[tokio::test]
async fn a_retried_stock_receipt_is_counted_once() {
    let app = TestApp::spawn().await;
    let product = app.product("Crate", 900, 10).await;
    let admin = app.admin_token().await;
    let send = |key: &'static str, delta: i64| {
        let (app, admin, product) = (&app, admin.clone(), product.clone());
        async move {
            app.client
                .post(app.url(&format!("/v1/products/{product}/stock")))
                .bearer_auth(admin)
                .header("idempotency-key", key)
                .json(&json!({"delta": delta}))
                .send()
                .await
                .unwrap()
        }
    };
    let first = send("delivery-7", 5).await;
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    let retry = send("delivery-7", 5).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), first);
    assert_eq!(app.stock(&product).await.0, 15, "received once");
    problem(send("delivery-7", 6).await, 422, Some("Idempotency-Key")).await;
    assert_eq!(send("delivery-8", 5).await.status(), 200);
    assert_eq!(app.stock(&product).await.0, 20);
}

/// Keys expire after `--idempotency-retention-secs`: within it a retry replays, after it the
/// same key makes a new order, and the expired records are pruned as new keys are written.
#[tokio::test]
async fn an_expired_key_is_a_new_request_and_is_pruned() {
    use std::time::{Duration, Instant};
    const RETENTION: Duration = Duration::from_secs(1);
    let app = TestApp::spawn_with(&["--idempotency-retention-secs", "1"]).await;
    let product = app.product("Jar", 400, 50).await;
    let (token, _) = app.register("expiry@example.com").await;
    let send = |key: String| {
        let app = &app;
        let token = token.clone();
        let product = product.clone();
        async move {
            let r = app
                .client
                .post(app.url("/v1/orders"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
                .send()
                .await
                .unwrap();
            let replayed = r.headers().contains_key("idempotent-replayed");
            let body = json_of(r, 201).await;
            (body["id"].as_str().unwrap().to_string(), replayed)
        }
    };
    let sent = Instant::now();
    let (first, _) = send("jar-1".into()).await;
    for i in 2..=5 {
        send(format!("jar-{i}")).await;
    }
    let (again, replayed) = send("jar-1".into()).await;
    // The key's record is younger than `sent.elapsed()`; only a machine too slow to make six
    // requests in a second could see it expire already.
    if sent.elapsed() < RETENTION {
        assert!(replayed, "within retention a retry replays");
        assert_eq!(again, first);
    }
    assert_eq!(app.stock(&product).await.0, 50 - 5 - i64::from(!replayed));

    // Retry until the key has expired: the retry is then a new order.
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let (id, replayed) = send("jar-1".into()).await;
        if !replayed {
            break id;
        }
        assert_eq!(id, first, "a replay is the first order");
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(second, first);
    let orders = json_of(app.get("/v1/orders?page_size=100", Some(&token)).await, 200).await;
    let ids: Vec<&str> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    assert_eq!(app.stock(&product).await.0, 50 - ids.len() as i64);
    // jar-5 was written last of the old keys: once it too is a new request, jar-2..4 are
    // older than a retention and writing it pruned them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while send("jar-5".into()).await.1 {
        assert!(Instant::now() < deadline, "jar-5 never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let db = rusqlite::Connection::open(app.db_path()).unwrap();
    let keys: Vec<String> = db
        .prepare("SELECT key FROM idempotency_keys ORDER BY key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // The new jar-1 stays unless it, too, expired in the meantime.
    assert!(
        keys == ["jar-1", "jar-5"] || keys == ["jar-5"],
        "expired keys pruned: {keys:?}"
    );
}

#[test]
fn idempotency_retention_defaults_to_a_day() {
    use clap::Parser;
    let config = edgecart_node::Config::parse_from(["edgecart-node"]);
    assert_eq!(config.idempotency_retention_secs, 86_400);
    assert!(
        edgecart_node::Config::try_parse_from([
            "edgecart-node",
            "--idempotency-retention-secs",
            "0"
        ])
        .is_err(),
        "a zero retention would make every retry a new request"
    );
}
