//! Every kind of bad input gets a clear problem response, and changes nothing.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp, json_of, problem};

/// Everything a bad request could have changed: the customer's orders, the product's stock,
/// the number of accounts.
async fn snapshot(app: &TestApp, token: &str, product: &str) -> (Value, (i64, i64), usize) {
    let orders = json_of(app.get("/v1/orders", Some(token)).await, 200).await["items"].clone();
    let admin = app.admin_token().await;
    let users = json_of(app.get("/v1/users?page_size=100", Some(&admin)).await, 200).await;
    (
        orders,
        app.stock(product).await,
        users["items"].as_array().unwrap().len(),
    )
}

#[tokio::test]
async fn malformed_and_invalid_orders_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let product = app.product("Teapot", 3000, 2).await;
    let (token, _) = app.register("bad@example.com").await;
    let before = snapshot(&app, &token, &product).await;

    let raw = |body: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.client
                .post(app.url("/v1/orders"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // Malformed JSON.
    problem(raw("{\"items\": [").await, 400, None).await;
    problem(raw("not json").await, 400, None).await;
    // Wrong types and missing fields name the field.
    problem(raw("{\"items\": \"many\"}").await, 422, Some("items")).await;
    problem(raw("{}").await, 422, Some("items")).await;
    problem(
        raw("{\"items\": [{\"product_id\": 5, \"quantity\": 1}]}").await,
        422,
        Some("items[0].product_id"),
    )
    .await;
    problem(
        app.post(
            "/v1/orders",
            Some(&token),
            &json!({"items": [{"product_id": product, "quantity": "two"}]}),
        )
        .await,
        422,
        Some("items[0].quantity"),
    )
    .await;
    problem(
        app.post(
            "/v1/orders",
            Some(&token),
            &json!({"items": [{"product_id": product}]}),
        )
        .await,
        422,
        Some("items[0].quantity"),
    )
    .await;
    // Zero and negative quantities; no lines.
    for q in [0, -1, -1000] {
        problem(
            app.order(&token, &product, q).await,
            422,
            Some("items[0].quantity"),
        )
        .await;
    }
    problem(
        app.post("/v1/orders", Some(&token), &json!({"items": []}))
            .await,
        422,
        Some("items"),
    )
    .await;
    // Unknown product.
    let unknown = "01900000-0000-7000-8000-000000000000";
    problem(
        app.order(&token, unknown, 1).await,
        422,
        Some("items[0].product_id"),
    )
    .await;
    // More than this store can sell: 409 with both figures, and the valid first line is not
    // half-applied.
    let body = problem(
        app.post(
            "/v1/orders",
            Some(&token),
            &json!({"items": [{"product_id": product, "quantity": 1}, {"product_id": product, "quantity": 2}]}),
        )
        .await,
        409,
        None,
    )
    .await;
    assert_eq!(body["available_here"], 2);
    assert_eq!(body["global"], 2);
    assert_eq!(body["requested"], 3);
    // Wrong content type.
    let r = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(r, 415, None).await;
    // A body over 1 MiB.
    let huge = format!(
        "{{\"items\": [], \"pad\": \"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let r = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(r, 413, None).await;
    // A price sent by the customer is ignored: the catalog's price is charged.
    let order = json_of(
        app.post(
            "/v1/orders",
            Some(&token),
            &json!({"items": [{"product_id": product, "quantity": 1, "price": {"amount": 1, "currency": "USD"}}],
                    "total": {"amount": 1, "currency": "USD"}}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(order["total"]["amount"], 3000);
    let (orders, stock, users) = snapshot(&app, &token, &product).await;
    assert_eq!(
        orders.as_array().unwrap().len(),
        before.0.as_array().unwrap().len() + 1
    );
    assert_eq!(stock, (before.1.0 - 1, before.1.1 - 1));
    assert_eq!(users, before.2);
}

#[tokio::test]
async fn registration_rules() {
    let app = TestApp::spawn().await;
    app.register("dup@example.com").await;
    let app = &app;
    let reg = |body: Value| async move { app.post("/v1/users", None, &body).await };
    problem(
        reg(json!({"email": "DUP@example.com", "name": "X", "password": "another-pass-1"})).await,
        409,
        None,
    )
    .await;
    problem(
        reg(json!({"email": "weak@example.com", "name": "X", "password": "12345678"})).await,
        422,
        Some("password"),
    )
    .await;
    problem(
        reg(json!({"email": "weak@example.com", "name": "X", "password": "abc"})).await,
        422,
        Some("password"),
    )
    .await;
    problem(
        reg(json!({"email": "not-an-email", "name": "X", "password": "good-pass-123"})).await,
        422,
        Some("email"),
    )
    .await;
    problem(
        reg(json!({"email": "e@example.com", "name": "   ", "password": "good-pass-123"})).await,
        422,
        Some("name"),
    )
    .await;
    problem(
        reg(json!({"email": "e@example.com", "password": "good-pass-123"})).await,
        422,
        Some("name"),
    )
    .await;
    problem(
        reg(json!({"email": 7, "name": "X", "password": "good-pass-123"})).await,
        422,
        Some("email"),
    )
    .await;
    // A `role` in the registration body is ignored.
    let body = json_of(
        reg(json!({"email": "sneaky@example.com", "name": "S", "password": "good-pass-123", "role": "admin"})).await,
        201,
    )
    .await;
    assert_eq!(body["user"]["role"], "customer");
    let sneaky = body["token"].as_str().unwrap();
    problem(app.get("/v1/users", Some(sneaky)).await, 403, None).await;
    problem(
        app.post(
            "/v1/products",
            Some(sneaky),
            &json!({"name": "p", "price": {"amount": 1, "currency": "USD"}}),
        )
        .await,
        403,
        None,
    )
    .await;
}

#[tokio::test]
async fn sql_metacharacters_are_just_text() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let evil = "Robert'); DROP TABLE users; -- \" % _ \\ ;";
    let r = app
        .post(
            "/v1/users",
            None,
            &json!({"email": "bobby@example.com", "name": evil, "password": "good-pass-123"}),
        )
        .await;
    let body = json_of(r, 201).await;
    assert_eq!(body["user"]["name"], evil);
    let cat = json_of(
        app.post("/v1/categories", Some(&admin), &json!({"name": evil}))
            .await,
        201,
    )
    .await;
    assert_eq!(cat["name"], evil);
    let product = json_of(
        app.post(
            "/v1/products",
            Some(&admin),
            &json!({"name": evil, "description": "100% _real_", "price": {"amount": 5, "currency": "USD"}}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(product["name"], evil);
    app.product("Plain", 10, 1).await;

    // Search: metacharacters match literally, never widen the query.
    let q = |s: &str| {
        let url = format!("/v1/products?q={}", urlencode(s));
        let app = &app;
        async move {
            json_of(app.get(&url, None).await, 200).await["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(q("' OR 1=1 --").await, 0);
    assert_eq!(
        q("%").await,
        1,
        "only the product whose text contains a literal %"
    );
    assert_eq!(q("_").await, 1);
    assert_eq!(q("DROP TABLE").await, 1);
    assert_eq!(q("plain").await, 1);
    for bad in [
        "/v1/products?category=1%27%20OR%20%271%27%3D%271",
        "/v1/products?min_price=0%3B%20DROP%20TABLE%20products",
        "/v1/products?in_stock=yes%27--",
        "/v1/products?page_token=%27%3B%20DELETE%20FROM%20orders%3B--",
        "/v1/products?page_size=-1",
    ] {
        let body = problem(app.get(bad, None).await, 400, None).await;
        assert!(body["field"].is_string(), "names the parameter: {body}");
    }
    let r = app.get("/v1/products/1'%20OR%20'1'='1", None).await;
    problem(r, 400, Some("id")).await;
    // Everything is still there.
    let users = json_of(app.get("/v1/users", Some(&admin)).await, 200).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        json_of(app.get("/v1/products", None).await, 200).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
    iss: &'a str,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let app = TestApp::spawn().await;
    let (_, id) = app.register("tok@example.com").await;
    let claims = |exp: u64| Claims {
        sub: &id,
        role: "admin",
        iat: now() - 10,
        exp,
        iss: "edgecart-node",
    };
    let sign = |claims: &Claims, secret: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = sign(&claims(now() + 600), JWT_SECRET);
    json_of(app.get("/v1/users/me", Some(&good)).await, 200).await;

    let expired = sign(&claims(now() - 120), JWT_SECRET);
    let wrong_secret = sign(&claims(now() + 600), "some-other-secret-of-enough-length!!");
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims_json = json!({"sub": id, "role": "admin", "iat": now(), "exp": now() + 600, "iss": "edgecart-node"});
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims_json.clone())
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(now() + 600),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    for token in [
        expired.as_str(),
        wrong_secret.as_str(),
        alg_none.as_str(),
        hs512.as_str(),
        "garbage",
        "",
    ] {
        problem(app.get("/v1/users/me", Some(token)).await, 401, None).await;
    }
    problem(app.get("/v1/users/me", None).await, 401, None).await;
    let r = app
        .client
        .get(app.url("/v1/users/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await;
    problem(r.unwrap(), 401, None).await;
}

#[tokio::test]
async fn other_users_records_are_not_found() {
    let app = TestApp::spawn().await;
    let product = app.product("Cup", 700, 5).await;
    let (alice, alice_id) = app.register("alice@example.com").await;
    let (bob, bob_id) = app.register("bob@example.com").await;
    let order = json_of(app.order(&alice, &product, 1).await, 201).await;
    let order_id = order["id"].as_str().unwrap();
    let pay = json_of(app.pay_cash(&alice, order_id).await, 201).await;
    let pay_id = pay["id"].as_str().unwrap();

    problem(
        app.get(&format!("/v1/orders/{order_id}"), Some(&bob)).await,
        404,
        None,
    )
    .await;
    problem(
        app.get(&format!("/v1/payments/{pay_id}"), Some(&bob)).await,
        404,
        None,
    )
    .await;
    problem(
        app.get(&format!("/v1/users/{alice_id}"), Some(&bob)).await,
        404,
        None,
    )
    .await;
    problem(
        app.patch(
            &format!("/v1/users/{alice_id}"),
            Some(&bob),
            &json!({"name": "pwned"}),
        )
        .await,
        404,
        None,
    )
    .await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/users/{alice_id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    problem(r, 404, None).await;
    let r = app
        .post_empty(&format!("/v1/orders/{order_id}/cancel"), &bob)
        .await;
    problem(r, 404, None).await;
    problem(app.pay_cash(&bob, order_id).await, 404, None).await;
    let bobs = json_of(app.get("/v1/orders", Some(&bob)).await, 200).await;
    assert!(bobs["items"].as_array().unwrap().is_empty());
    assert!(
        json_of(app.get("/v1/notifications", Some(&bob)).await, 200).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| !n["body"].as_str().unwrap().contains(order_id))
    );
    // Alice's things are untouched; Bob still sees his own profile.
    let alice_order = json_of(
        app.get(&format!("/v1/orders/{order_id}"), Some(&alice))
            .await,
        200,
    )
    .await;
    assert_eq!(alice_order["status"], "paid");
    json_of(
        app.get(&format!("/v1/users/{bob_id}"), Some(&bob)).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn payment_and_catalog_validation() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Spoon", 300, 5).await;
    let (token, _) = app.register("pay@example.com").await;
    let order = json_of(app.order(&token, &product, 1).await, 201).await;
    let pay_path = format!("/v1/orders/{}/payments", order["id"].as_str().unwrap());
    problem(
        app.post(&pay_path, Some(&token), &json!({"method": "card"}))
            .await,
        422,
        Some("card_token"),
    )
    .await;
    problem(
        app.post(
            &pay_path,
            Some(&token),
            &json!({"method": "card", "card_token": "x".repeat(257)}),
        )
        .await,
        422,
        Some("card_token"),
    )
    .await;
    problem(
        app.post(&pay_path, Some(&token), &json!({"method": "bitcoin"}))
            .await,
        422,
        Some("method"),
    )
    .await;
    problem(
        app.post(
            "/v1/orders/01900000-0000-7000-8000-000000000000/payments",
            Some(&token),
            &json!({"method": "cash"}),
        )
        .await,
        404,
        None,
    )
    .await;
    let again = json_of(
        app.get(
            &format!("/v1/orders/{}", order["id"].as_str().unwrap()),
            Some(&token),
        )
        .await,
        200,
    )
    .await;
    assert!(
        again["payments"].as_array().unwrap().is_empty(),
        "nothing recorded"
    );

    let (app, admin) = (&app, &admin);
    let create = |body: Value| async move { app.post("/v1/products", Some(admin), &body).await };
    problem(
        create(json!({"name": "p", "price": {"amount": -1, "currency": "USD"}})).await,
        422,
        Some("price.amount"),
    )
    .await;
    problem(
        create(json!({"name": "p", "price": {"amount": 1, "currency": "EUR"}})).await,
        422,
        Some("price.currency"),
    )
    .await;
    problem(
        create(json!({"name": "", "price": {"amount": 1, "currency": "USD"}})).await,
        422,
        Some("name"),
    )
    .await;
    problem(
        create(
            json!({"name": "p", "price": {"amount": 1, "currency": "USD"},
                      "category_id": "01900000-0000-7000-8000-000000000000"}),
        )
        .await,
        422,
        Some("category_id"),
    )
    .await;
    let stock_path = format!("/v1/products/{product}/stock");
    let stock_path = &stock_path;
    let stock = |delta: Value| async move {
        app.post(stock_path, Some(admin), &json!({"delta": delta}))
            .await
    };
    problem(stock(json!(0)).await, 422, Some("delta")).await;
    problem(stock(json!(1.5)).await, 422, Some("delta")).await;
    problem(stock(json!(-100)).await, 409, None).await;
    problem(
        app.post(
            "/v1/products/01900000-0000-7000-8000-000000000000/stock",
            Some(admin),
            &json!({"delta": 1}),
        )
        .await,
        404,
        None,
    )
    .await;
    assert_eq!(app.stock(&product).await, (4, 4));
    // Unknown routes and methods are problem JSON too.
    problem(app.get("/v1/nothing-here", None).await, 404, None).await;
    let r = app
        .client
        .put(app.url("/v1/products"))
        .send()
        .await
        .unwrap();
    problem(r, 405, None).await;
}
