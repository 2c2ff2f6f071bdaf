//! Concurrent customers racing for the last units: never oversold.

use crate::helpers::{TestApp, json_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_orders_never_oversell() {
    let app = TestApp::spawn().await;
    let product = app.product("Last units", 999, 7).await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(app.register(&format!("racer{i}@example.com")).await.0);
    }
    // Every customer asks for 2 units at once, several times over: 48 requests for 7 units.
    let requests = tokens
        .iter()
        .flat_map(|t| (0..4).map(move |_| t))
        .map(|t| app.order(t, &product, 2));
    let responses = futures::future::join_all(requests).await;
    let mut created = 0;
    let mut refused = 0;
    for r in responses {
        match r.status().as_u16() {
            201 => created += 1,
            409 => {
                let body = json_of(r, 409).await;
                assert!(body["available_here"].as_i64().unwrap() < 2);
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 3, "7 units sell as three orders of 2");
    assert_eq!(refused, 45);
    assert_eq!(app.stock(&product).await, (1, 1));
    let admin = app.admin_token().await;
    let all = json_of(app.get("/v1/orders?page_size=100", Some(&admin)).await, 200).await;
    let sold: i64 = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["items"][0]["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(sold, 6);
}
