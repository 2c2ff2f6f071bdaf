//! A full shop day through the public API: catalog set-up, registration, search, orders paid in
//! cash and by card, cancellation, shipping, refunds and the notifications they produce.

use serde_json::json;

use crate::helpers::{TestApp, json_of, problem};

#[tokio::test]
async fn a_full_shop_day() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    // Catalog: a category and two products, stock received at this store.
    let cat = json_of(
        app.post(
            "/v1/categories",
            Some(&admin),
            &json!({"name": "Tea", "description": "Leaves"}),
        )
        .await,
        201,
    )
    .await;
    let cat_id = cat["id"].as_str().unwrap().to_string();
    let green = json_of(
        app.post(
            "/v1/products",
            Some(&admin),
            &json!({"name": "Green tea", "description": "Sencha from Shizuoka",
                    "price": {"amount": 1250, "currency": "USD"}, "category_id": cat_id}),
        )
        .await,
        201,
    )
    .await;
    let green_id = green["id"].as_str().unwrap().to_string();
    assert_eq!(green["price"], json!({"amount": 1250, "currency": "USD"}));
    assert_eq!(green["stock"], json!({"available_here": 0, "global": 0}));
    let stock = json_of(
        app.post(
            &format!("/v1/products/{green_id}/stock"),
            Some(&admin),
            &json!({"delta": 10}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(stock, json!({"available_here": 10, "global": 10}));
    let mug = app.product("Tea mug", 900, 0).await;

    // A customer registers and finds the tea by search.
    let (token, user_id) = app.register("mia@example.com").await;
    let found = json_of(app.get("/v1/products?q=SENCHA", None).await, 200).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["id"], green_id.as_str());
    let by_cat = json_of(
        app.get(&format!("/v1/products?category={cat_id}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(by_cat["items"].as_array().unwrap().len(), 1);
    let in_range = json_of(
        app.get("/v1/products?min_price=1000&max_price=1300", None)
            .await,
        200,
    )
    .await;
    assert_eq!(in_range["items"].as_array().unwrap().len(), 1);
    let in_stock = json_of(app.get("/v1/products?in_stock=true", None).await, 200).await;
    let ids: Vec<&str> = in_stock["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![green_id.as_str()], "the mug has no stock");
    let out_of_stock = json_of(app.get("/v1/products?in_stock=false", None).await, 200).await;
    assert_eq!(out_of_stock["items"][0]["id"], mug.as_str());

    // Order 1: three teas, paid in cash.
    let order1 = json_of(app.order(&token, &green_id, 3).await, 201).await;
    let order1_id = order1["id"].as_str().unwrap().to_string();
    assert_eq!(order1["status"], "pending_payment");
    assert_eq!(order1["total"], json!({"amount": 3750, "currency": "USD"}));
    assert_eq!(order1["items"][0]["product_name"], "Green tea");
    assert_eq!(order1["items"][0]["unit_price"]["amount"], 1250);
    assert_eq!(order1["items"][0]["quantity"], 3);
    assert_eq!(order1["user_id"], user_id.as_str());
    assert_eq!(app.stock(&green_id).await, (7, 7));

    let pay = json_of(app.pay_cash(&token, &order1_id).await, 201).await;
    assert_eq!(pay["status"], "captured");
    assert_eq!(pay["amount"]["amount"], 3750);
    let paid = json_of(
        app.get(&format!("/v1/orders/{order1_id}"), Some(&token))
            .await,
        200,
    )
    .await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["payments"][0]["id"], pay["id"]);
    let history: Vec<&str> = paid["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["pending_payment", "paid"]);
    // Paying twice is refused.
    problem(app.pay_cash(&token, &order1_id).await, 409, None).await;

    // Order 2: two teas by card — recorded pending, no fake success — then cancelled.
    let order2 = json_of(app.order(&token, &green_id, 2).await, 201).await;
    let order2_id = order2["id"].as_str().unwrap().to_string();
    let card = json_of(
        app.post(
            &format!("/v1/orders/{order2_id}/payments"),
            Some(&token),
            &json!({"method": "card", "card_token": "tok_visa"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(card["status"], "pending");
    assert!(
        card.get("card_token").is_none(),
        "the card token is never echoed"
    );
    let still = json_of(
        app.get(&format!("/v1/orders/{order2_id}"), Some(&token))
            .await,
        200,
    )
    .await;
    assert_eq!(still["status"], "pending_payment");
    assert_eq!(app.stock(&green_id).await, (5, 5));
    let cancelled = json_of(
        app.post_empty(&format!("/v1/orders/{order2_id}/cancel"), &token)
            .await,
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payments"][0]["status"], "voided");
    assert_eq!(
        app.stock(&green_id).await,
        (7, 7),
        "cancel releases the units"
    );
    // Cancelling again is an illegal transition.
    problem(
        app.post_empty(&format!("/v1/orders/{order2_id}/cancel"), &token)
            .await,
        409,
        None,
    )
    .await;

    // The shop ships and delivers order 1; going back is illegal.
    let shipped = json_of(
        app.post(
            &format!("/v1/orders/{order1_id}/status"),
            Some(&admin),
            &json!({"status": "shipped"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(shipped["status"], "shipped");
    problem(
        app.post(
            &format!("/v1/orders/{order1_id}/status"),
            Some(&token),
            &json!({"status": "delivered"}),
        )
        .await,
        403,
        None,
    )
    .await;
    json_of(
        app.post(
            &format!("/v1/orders/{order1_id}/status"),
            Some(&admin),
            &json!({"status": "delivered"}),
        )
        .await,
        200,
    )
    .await;
    problem(
        app.post(
            &format!("/v1/orders/{order1_id}/status"),
            Some(&admin),
            &json!({"status": "shipped"}),
        )
        .await,
        409,
        None,
    )
    .await;
    problem(
        app.post(
            &format!("/v1/orders/{order1_id}/status"),
            Some(&admin),
            &json!({"status": "paid"}),
        )
        .await,
        422,
        Some("status"),
    )
    .await;

    // The customer's notification history tells the story in order.
    let notes = json_of(
        app.get("/v1/notifications?page_size=100", Some(&token))
            .await,
        200,
    )
    .await;
    let events: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec![
            "UserRegistered",
            "OrderCreated",
            "PaymentCompleted",
            "OrderCreated",
            "OrderCancelled",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    assert!(
        notes["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["channel"] == "in_app")
    );

    // The customer sees their two orders; the list has the full detail.
    let orders = json_of(app.get("/v1/orders", Some(&token)).await, 200).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 2);
    assert!(orders["next_page_token"].is_null());
}

#[tokio::test]
async fn cancelling_a_paid_order_refunds_it_and_refunds_are_bounded() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let product = app.product("Kettle", 4000, 5).await;
    let (token, _) = app.register("leo@example.com").await;

    // Partial, then over-the-remainder, then full refunds of a cash payment.
    let order = json_of(app.order(&token, &product, 1).await, 201).await;
    let order_id = order["id"].as_str().unwrap();
    let pay = json_of(app.pay_cash(&token, order_id).await, 201).await;
    let pay_id = pay["id"].as_str().unwrap();
    problem(
        app.post(
            &format!("/v1/payments/{pay_id}/refunds"),
            Some(&token),
            &json!({"amount": 100}),
        )
        .await,
        403,
        None,
    )
    .await;
    let partial = json_of(
        app.post(
            &format!("/v1/payments/{pay_id}/refunds"),
            Some(&admin),
            &json!({"amount": 1500}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(partial["status"], "partially_refunded");
    assert_eq!(partial["refunded"]["amount"], 1500);
    problem(
        app.post(
            &format!("/v1/payments/{pay_id}/refunds"),
            Some(&admin),
            &json!({"amount": 2501}),
        )
        .await,
        422,
        Some("amount"),
    )
    .await;
    problem(
        app.post(
            &format!("/v1/payments/{pay_id}/refunds"),
            Some(&admin),
            &json!({"amount": 0}),
        )
        .await,
        422,
        Some("amount"),
    )
    .await;
    let full = json_of(
        app.post(
            &format!("/v1/payments/{pay_id}/refunds"),
            Some(&admin),
            &json!({"amount": 2500}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(full["status"], "refunded");
    assert_eq!(full["refunds"].as_array().unwrap().len(), 2);

    // A second paid order, cancelled by the customer: refunded in full, stock released.
    let order = json_of(app.order(&token, &product, 2).await, 201).await;
    let order_id = order["id"].as_str().unwrap();
    json_of(app.pay_cash(&token, order_id).await, 201).await;
    assert_eq!(app.stock(&product).await.0, 2);
    let cancelled = json_of(
        app.post_empty(&format!("/v1/orders/{order_id}/cancel"), &token)
            .await,
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payments"][0]["status"], "refunded");
    assert_eq!(cancelled["payments"][0]["refunded"]["amount"], 8000);
    assert_eq!(app.stock(&product).await.0, 4);

    // The customer can read their payment; the refund of a voided card payment is refused.
    json_of(
        app.get(&format!("/v1/payments/{pay_id}"), Some(&token))
            .await,
        200,
    )
    .await;
    let order = json_of(app.order(&token, &product, 1).await, 201).await;
    let order_id = order["id"].as_str().unwrap();
    let card = json_of(
        app.post(
            &format!("/v1/orders/{order_id}/payments"),
            Some(&token),
            &json!({"method": "card", "card_token": "tok_visa"}),
        )
        .await,
        201,
    )
    .await;
    problem(
        app.post(
            &format!("/v1/payments/{}/refunds", card["id"].as_str().unwrap()),
            Some(&admin),
            &json!({"amount": 100}),
        )
        .await,
        409,
        None,
    )
    .await;
}

#[tokio::test]
async fn low_stock_notifies_the_admins_once_when_crossing_the_threshold() {
    let app = TestApp::spawn_with(&["--low-stock-threshold", "3"]).await;
    let admin = app.admin_token().await;
    let product = app.product("Rare tea", 500, 4).await;
    let (token, _) = app.register("ivy@example.com").await;
    json_of(app.order(&token, &product, 1).await, 201).await; // 3 left: not below 3
    let low = |notes: serde_json::Value| {
        notes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["event"] == "LowStock")
            .count()
    };
    assert_eq!(
        low(json_of(app.get("/v1/notifications", Some(&admin)).await, 200).await),
        0
    );
    json_of(app.order(&token, &product, 1).await, 201).await; // 2 left: crossed
    json_of(app.order(&token, &product, 1).await, 201).await; // 1 left: already low
    let notes = json_of(app.get("/v1/notifications", Some(&admin)).await, 200).await;
    assert_eq!(low(notes.clone()), 1);
    let alert = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "LowStock")
        .unwrap();
    assert!(
        alert["subject"].as_str().unwrap().contains("Rare tea"),
        "{alert}"
    );
    assert!(
        alert["body"].as_str().unwrap().contains("Only 2 units"),
        "{alert}"
    );
    // Customers never see operational notifications.
    assert_eq!(
        low(json_of(app.get("/v1/notifications", Some(&token)).await, 200).await),
        0
    );
}
