//! A standalone node compacts its change log to the newest entry per record (per cell for
//! stock): what a hub connected later needs, and bounded by the records, not the operations.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{TestApp, json_of};

type Key = (String, String, Option<String>, i64);

/// The log as (entity, entity id, stock cell, seq), and the newest entry of every key.
fn log(db: &rusqlite::Connection) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let all = db
        .prepare("SELECT entity, entity_id, json_extract(payload, '$.entry.key'), seq FROM changes")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<BTreeSet<Key>, _>>()
        .unwrap();
    let newest = db
        .prepare(
            "SELECT entity, entity_id, json_extract(payload, '$.entry.key') AS cell, max(seq)
             FROM changes GROUP BY entity, entity_id, cell",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<BTreeSet<Key>, _>>()
        .unwrap();
    (all, newest)
}

/// Polls until only the newest entry of each key is left; returns the log then.
async fn compacted(db: &rusqlite::Connection) -> BTreeSet<Key> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (all, newest) = log(db);
        if all == newest {
            return all;
        }
        assert!(Instant::now() < deadline, "never compacted: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stock_entries(log: &BTreeSet<Key>, product: &str) -> usize {
    log.iter()
        .filter(|(e, id, _, _)| e == "stock" && id == product)
        .count()
}

#[tokio::test]
async fn a_standalone_node_keeps_only_the_newest_entry_per_record() {
    let app = TestApp::spawn_with(&["--changelog-compact-secs", "1"]).await;
    let admin = app.admin_token().await;
    let product = app.product("Ledger", 700, 1).await;
    let stock_path = format!("/v1/products/{product}/stock");
    for _ in 0..10 {
        json_of(
            app.post(&stock_path, Some(&admin), &json!({"delta": 3}))
                .await,
            200,
        )
        .await;
    }
    for price in [800, 900, 1000] {
        json_of(
            app.patch(
                &format!("/v1/products/{product}"),
                Some(&admin),
                &json!({"price": {"amount": price, "currency": "USD"}}),
            )
            .await,
            200,
        )
        .await;
    }
    let (token, _) = app.register("log@example.com").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let o = json_of(app.order(&token, &product, 2).await, 201).await;
        orders.push(o["id"].as_str().unwrap().to_string());
    }
    json_of(
        app.post_empty(&format!("/v1/orders/{}/cancel", orders[0]), &token)
            .await,
        200,
    )
    .await;

    let db = rusqlite::Connection::open(app.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let kept = compacted(&db).await;
    // 10 receipts, a release and 3 sales leave one entry per cell: inc and dec.
    assert_eq!(stock_entries(&kept, &product), 2, "{kept:?}");
    let of = |entity: &str| kept.iter().filter(|k| k.0 == entity).count();
    assert_eq!(of("product"), 1, "three price changes, one entry");
    assert_eq!(
        of("order"),
        3,
        "one entry per order, the cancelled one included"
    );
    // The kept cells carry the final figures: received 1 + 30 + 2 released, sold 6.
    let cell = |kind: &str| -> i64 {
        db.query_row(
            "SELECT json_extract(payload, '$.entry.value') FROM changes
             WHERE entity = 'stock' AND entity_id = ?1
               AND json_extract(payload, '$.entry.key') LIKE ?2",
            rusqlite::params![product, format!("%{kind}%")],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(cell("Inc"), 33);
    assert_eq!(cell("Dec"), 6);
    assert_eq!(app.stock(&product).await.0, 33 - 6);
    let cancelled: String = db
        .query_row(
            "SELECT json_extract(payload, '$.status') FROM changes
             WHERE entity = 'order' AND entity_id = ?1",
            [&orders[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        cancelled, "cancelled",
        "the newest state of the order is kept"
    );

    // Later writes are compacted too, and the sequence carries on past the newest entry.
    let last = kept.iter().map(|k| k.3).max().unwrap();
    json_of(
        app.post(&stock_path, Some(&admin), &json!({"delta": 5}))
            .await,
        200,
    )
    .await;
    let kept = compacted(&db).await;
    assert_eq!(stock_entries(&kept, &product), 2);
    assert_eq!(cell("Inc"), 38);
    assert!(kept.iter().any(|k| k.3 > last));
}
