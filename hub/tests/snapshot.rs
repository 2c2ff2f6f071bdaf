//! A new store after compaction gets a snapshot bigger than one page, in pages, and converges.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::EntryKey;
use edgecart_proto::sync::{MAX_BATCH, StockOthersPayload, StockPayload, entity};
use support::{FakeNode, TestHub, eventually};

const PRODUCTS: usize = 3 * MAX_BATCH + 17;
const STOCKED: usize = 130;

/// What a store holds after applying `batches` in order: products, its rights per product (its
/// only cells are transfers from the hub here) and the others' net stock per product.
#[derive(Default, Debug)]
struct View {
    products: BTreeSet<String>,
    rights: BTreeMap<String, u64>,
    others: BTreeMap<String, i64>,
}

fn view(batches: &[pb::ChangeBatch], node: &str) -> View {
    let mut v = View::default();
    for c in batches.iter().flat_map(|b| &b.changes) {
        match c.entity.as_str() {
            entity::PRODUCT => {
                v.products.insert(c.entity_id.clone());
            }
            entity::STOCK => {
                let s: StockPayload = serde_json::from_str(&c.payload_json).unwrap();
                if let EntryKey::Xfer { from, to } = &s.entry.key
                    && *from == ActorId::hub()
                    && to.as_str() == node
                {
                    let cell = v.rights.entry(s.product_id).or_default();
                    *cell = (*cell).max(s.entry.value);
                }
            }
            entity::STOCK_OTHERS => {
                let s: StockOthersPayload = serde_json::from_str(&c.payload_json).unwrap();
                v.others.insert(s.product_id, s.others_net);
            }
            _ => {}
        }
    }
    v
}

#[tokio::test]
async fn a_new_store_after_compaction_converges_from_a_paged_snapshot() {
    let hub = TestHub::start().await;
    let mut ids = Vec::new();
    for i in 0..PRODUCTS {
        ids.push(hub.product(&format!("Product {i:04}")).await);
    }
    let mut a = FakeNode::connect(&hub, "store-a", 0, 0).await.unwrap();
    for id in &ids[..STOCKED] {
        hub.receive(id, 50).await;
    }

    // store-a reads and acknowledges everything, so the hub compacts its whole log.
    let seen = a
        .read_until(|got| {
            let v = view(got, "store-a");
            v.products.len() == PRODUCTS && v.rights.len() == STOCKED
        })
        .await;
    let acked = seen
        .iter()
        .flat_map(|b| &b.changes)
        .map(|c| c.seq)
        .max()
        .unwrap();
    a.ack_and_heartbeat(acked, 0).await;
    eventually("the log compacted", || {
        let through: Option<String> = hub
            .sql()
            .query_row(
                "SELECT value FROM meta WHERE key = 'compacted_through'",
                [],
                |r| r.get(0),
            )
            .ok();
        through
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|t| *t >= acked)
    })
    .await;

    // store-b is new and its cursor is below the compacted log: it needs the snapshot.
    let mut b = FakeNode::connect(&hub, "store-b", 0, 0).await.unwrap();
    let mut expected = BTreeMap::new();
    let mut expected_others = BTreeMap::new();
    for id in &ids[..STOCKED] {
        let level = hub.stock(id).await;
        let mine = level.nodes.iter().find(|n| n.node_id == "store-b").unwrap();
        expected.insert(id.clone(), u64::try_from(mine.rights).unwrap());
        expected_others.insert(id.clone(), level.global_stock - (mine.received - mine.sold));
    }
    assert!(expected.values().all(|r| *r > 0), "store-b got its floors");
    let got = b
        .read_until(|got| {
            let v = view(got, "store-b");
            v.products.len() == PRODUCTS && v.rights == expected && v.others == expected_others
        })
        .await;

    // It came in pages: several snapshot messages (sequence 0, the store's cursor), none larger
    // than a batch, and every product exactly once.
    let snapshot: Vec<&pb::ChangeBatch> = got
        .iter()
        .filter(|b| b.changes.iter().all(|c| c.seq == 0))
        .collect();
    let snapshot_changes: usize = snapshot.iter().map(|b| b.changes.len()).sum();
    assert!(snapshot.len() > 3, "{} snapshot messages", snapshot.len());
    assert!(snapshot_changes > PRODUCTS + STOCKED);
    assert!(got.iter().all(|b| b.changes.len() <= MAX_BATCH));
    let product_changes = snapshot
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| c.entity == entity::PRODUCT)
        .count();
    assert_eq!(product_changes, PRODUCTS, "each product once");
}
