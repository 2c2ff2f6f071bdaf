//! Integer extremes are bad input: deltas, quantities, prices and refund amounts at and past the
//! edges of i64 are refused with a problem naming the field, and change nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json_of, problem};

/// POSTs `body` as raw JSON text, so numbers outside i64 (which `json!` cannot build) reach
/// the server exactly as written.
async fn post_raw(app: &TestApp, path: &str, token: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST")
}

/// Beyond i64 on both sides, and u64::MAX: each a JSON number serde cannot fit in an i64.
const OUTSIDE_I64: [&str; 4] = [
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
];

#[tokio::test]
async fn stock_deltas_at_the_extremes_are_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Anvil", 100, 5).await;
    let path = format!("/v1/products/{product}/stock");
    for delta in [
        i64::MIN,
        i64::MIN + 1,
        i64::MAX,
        1_000_000_001,
        -1_000_000_001,
        0,
    ] {
        let body = problem(
            app.post(&path, Some(&admin), &json!({ "delta": delta }))
                .await,
            422,
            Some("delta"),
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("1000000000"),
            "the bound is stated: {body}"
        );
    }
    for raw in OUTSIDE_I64 {
        problem(
            post_raw(&app, &path, &admin, format!("{{\"delta\": {raw}}}")).await,
            422,
            Some("delta"),
        )
        .await;
    }
    assert_eq!(app.stock(&product).await, (5, 5), "nothing changed");
    // The bound itself is accepted both ways.
    let up = json_of(
        app.post(&path, Some(&admin), &json!({"delta": 1_000_000_000}))
            .await,
        200,
    )
    .await;
    assert_eq!(up["available_here"], 1_000_000_005);
    let down = json_of(
        app.post(&path, Some(&admin), &json!({"delta": -1_000_000_000}))
            .await,
        200,
    )
    .await;
    assert_eq!(down["available_here"], 5);
    assert_eq!(app.stock(&product).await, (5, 5));
}

#[tokio::test]
async fn a_counter_at_the_storage_bound_refuses_more_instead_of_wrapping() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Grain", 1, 1).await;
    // A cell only gets near i64::MAX by merges the API cannot make (a hub, years of receipts):
    // put it there directly.
    let db = rusqlite::Connection::open(app.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let changed = db
        .execute(
            "UPDATE stock_entries SET value = ?1 WHERE product_id = ?2 AND kind = 'inc'",
            rusqlite::params![i64::MAX - 5, product],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let path = format!("/v1/products/{product}/stock");
    // Up to the bound exactly is fine.
    let full = json_of(
        app.post(&path, Some(&admin), &json!({"delta": 5})).await,
        200,
    )
    .await;
    assert_eq!(full["available_here"], i64::MAX);
    // The log's end (compaction may drop superseded entries, never append or drop the newest).
    let changes = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT max(seq) FROM changes", [], |r| r.get(0))
            .unwrap()
    };
    let before = changes(&db);
    for delta in [1, 1_000_000_000] {
        problem(
            app.post(&path, Some(&admin), &json!({ "delta": delta }))
                .await,
            422,
            Some("delta"),
        )
        .await;
    }
    assert_eq!(app.stock(&product).await, (i64::MAX, i64::MAX));
    assert_eq!(
        changes(&db),
        before,
        "no change-log entry for a refused receipt"
    );
    let value: i64 = db
        .query_row(
            "SELECT value FROM stock_entries WHERE product_id = ?1 AND kind = 'inc'",
            [&product],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, i64::MAX);
    // Selling from a full counter works and is exact.
    let (token, _) = app.register("grain@example.com").await;
    json_of(app.order(&token, &product, 2).await, 201).await;
    assert_eq!(app.stock(&product).await, (i64::MAX - 2, i64::MAX - 2));
}

#[tokio::test]
async fn quantities_at_the_extremes_are_422_and_change_nothing() {
    let app = TestApp::spawn().await;
    let product = app.product("Nail", 10, 20_000).await;
    let (token, _) = app.register("nails@example.com").await;
    for q in [
        i64::MAX,
        i64::MIN,
        i64::from(u32::MAX),
        i64::from(u32::MAX) + 1,
        10_001,
    ] {
        problem(
            app.order(&token, &product, q).await,
            422,
            Some("items[0].quantity"),
        )
        .await;
    }
    for raw in OUTSIDE_I64 {
        let body =
            format!("{{\"items\": [{{\"product_id\": \"{product}\", \"quantity\": {raw}}}]}}");
        problem(
            post_raw(&app, "/v1/orders", &token, body).await,
            422,
            Some("items[0].quantity"),
        )
        .await;
    }
    // Lines of one product are one line: together they stay within the bound too.
    problem(
        app.post(
            "/v1/orders",
            Some(&token),
            &json!({"items": [{"product_id": product, "quantity": 10_000},
                              {"product_id": product, "quantity": 1}]}),
        )
        .await,
        422,
        Some("items[1].quantity"),
    )
    .await;
    assert_eq!(app.stock(&product).await, (20_000, 20_000));
    let orders = json_of(app.get("/v1/orders", Some(&token)).await, 200).await;
    assert_eq!(orders["items"], json!([]), "no order was written");
}

#[tokio::test]
async fn prices_at_the_extremes_are_422_and_an_overflowing_total_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Gold bar", 100, 10_000).await;
    let price =
        |amount: Value| json!({"name": "p", "price": {"amount": amount, "currency": "USD"}});
    for amount in [i64::MAX, i64::MIN, 1_000_000_000_001, -1] {
        problem(
            app.post("/v1/products", Some(&admin), &price(json!(amount)))
                .await,
            422,
            Some("price.amount"),
        )
        .await;
        problem(
            app.patch(
                &format!("/v1/products/{product}"),
                Some(&admin),
                &json!({"price": {"amount": amount, "currency": "USD"}}),
            )
            .await,
            422,
            Some("price.amount"),
        )
        .await;
    }
    for raw in OUTSIDE_I64 {
        let body =
            format!("{{\"name\": \"p\", \"price\": {{\"amount\": {raw}, \"currency\": \"USD\"}}}}");
        problem(
            post_raw(&app, "/v1/products", &admin, body).await,
            422,
            Some("price.amount"),
        )
        .await;
    }
    // The largest price times the largest quantity is exact.
    let p = json_of(
        app.patch(
            &format!("/v1/products/{product}"),
            Some(&admin),
            &json!({"price": {"amount": 1_000_000_000_000_i64, "currency": "USD"}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(p["price"]["amount"], 1_000_000_000_000_i64);
    let (token, _) = app.register("rich@example.com").await;
    let order = json_of(app.order(&token, &product, 10_000).await, 201).await;
    assert_eq!(order["total"]["amount"], 10_000_000_000_000_000_i64);
    let stock_after_first = app.stock(&product).await;
    json_of(
        app.post(
            &format!("/v1/products/{product}/stock"),
            Some(&admin),
            &json!({"delta": 10}),
        )
        .await,
        200,
    )
    .await;
    // A price the API refuses can still arrive from elsewhere (a hub's catalog, an old row):
    // the order total is checked arithmetic, so such a line is refused, not wrapped.
    let db = rusqlite::Connection::open(app.db_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE products SET price_amount = ?1 WHERE id = ?2",
        rusqlite::params![i64::MAX / 2 + 1, product],
    )
    .unwrap();
    problem(
        app.order(&token, &product, 2).await,
        422,
        Some("items[0].product_id"),
    )
    .await;
    assert_eq!(
        app.stock(&product).await,
        (stock_after_first.0 + 10, stock_after_first.1 + 10),
        "the refused order took no stock"
    );
    let orders = json_of(app.get("/v1/orders", Some(&token)).await, 200).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn refund_amounts_at_the_extremes_are_422_and_refund_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Kettle", 2500, 3).await;
    let (token, _) = app.register("kettle@example.com").await;
    let order = json_of(app.order(&token, &product, 1).await, 201).await;
    let order_id = order["id"].as_str().unwrap();
    let payment = json_of(app.pay_cash(&token, order_id).await, 201).await;
    let payment_id = payment["id"].as_str().unwrap();
    let path = format!("/v1/payments/{payment_id}/refunds");
    for amount in [i64::MAX, i64::MIN, i64::MIN + 1, 0, -1, 2501] {
        problem(
            app.post(&path, Some(&admin), &json!({ "amount": amount }))
                .await,
            422,
            Some("amount"),
        )
        .await;
    }
    for raw in OUTSIDE_I64 {
        problem(
            post_raw(&app, &path, &admin, format!("{{\"amount\": {raw}}}")).await,
            422,
            Some("amount"),
        )
        .await;
    }
    let after = json_of(
        app.get(&format!("/v1/payments/{payment_id}"), Some(&admin))
            .await,
        200,
    )
    .await;
    assert_eq!(after["status"], "captured");
    assert_eq!(after["refunded"]["amount"], 0);
    assert_eq!(after["refunds"], json!([]));
    // The whole amount, exactly, is still refundable.
    let done = json_of(
        app.post(&path, Some(&admin), &json!({"amount": 2500}))
            .await,
        201,
    )
    .await;
    assert_eq!(done["status"], "refunded");
}
