//! kill -9 in the middle of a stream of orders loses nothing that was acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use tokio::sync::Mutex;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestNode, create_product, json_of, login, register, wait_healthy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let client = Client::new();
    let base = node.base();
    wait_healthy(&client, &format!("{base}/readyz")).await;
    let admin = login(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    const RECEIVED: i64 = 100_000;
    let product = create_product(&client, &base, &admin, "Crash test", 100, RECEIVED).await;
    let mut customers = Vec::new();
    for i in 0..4 {
        customers.push(
            register(&client, &base, &format!("crash{i}@example.com"))
                .await
                .0,
        );
    }

    // Eight writers place orders as fast as they can; every 201 is remembered.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, product) = (client.clone(), base.clone(), product.clone());
        let token = customers[w % customers.len()].clone();
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) && n < 5_000 {
                n += 1;
                let quantity = 1 + (n % 3);
                let sent = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .json(&json!({"items": [{"product_id": product, "quantity": quantity}]}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        if let Ok(body) = r.json::<serde_json::Value>().await
                            && let Some(id) = body["id"].as_str()
                        {
                            acked.lock().await.push((id.to_string(), quantity));
                        }
                    }
                    // The process is gone: stop.
                    _ => break,
                }
            }
        }));
    }
    // Let a good stream build up, then kill -9 while orders are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().await.len() < 150 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 150,
        "only {} orders before the kill",
        acked.len()
    );

    // Restart on the same data directory.
    let node = TestNode::start(dir.path());
    let base = node.base();
    wait_healthy(&client, &format!("{base}/readyz")).await;
    let admin = login(&client, &base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut stored = HashSet::new();
    let mut sold = 0i64;
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{base}/v1/orders?page_size=100&page_token={t}"),
            None => format!("{base}/v1/orders?page_size=100"),
        };
        let page = json_of(
            client.get(url).bearer_auth(&admin).send().await.unwrap(),
            200,
        )
        .await;
        for o in page["items"].as_array().unwrap() {
            stored.insert(o["id"].as_str().unwrap().to_string());
            sold += o["items"][0]["quantity"].as_i64().unwrap();
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    for (id, _) in &acked {
        assert!(stored.contains(id), "acknowledged order {id} was lost");
    }
    // Orders committed whose 201 never reached us may exist too, but nothing else.
    assert!(stored.len() >= acked.len());
    let p = json_of(
        client
            .get(format!("{base}/v1/products/{product}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(
        p["stock"]["available_here"].as_i64().unwrap(),
        RECEIVED - sold,
        "stock = received - sold"
    );
    assert_eq!(p["stock"]["global"].as_i64().unwrap(), RECEIVED - sold);
}
