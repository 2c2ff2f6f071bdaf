//! The reliability suite: edgecart's promises under faults (docs/reliability.md). Each test is
//! one scenario: a hub and nodes as real processes, a fault-injecting proxy on every node's
//! link, a seeded workload of shoppers and staff, the faults, then — once faults stop and the
//! system converges — every check in `edgecart_e2e::chaos::check`. A failure prints the seed;
//! `CHAOS_SEED=<seed>` reruns the same choices.

use std::sync::atomic::Ordering;
use std::time::Duration;

use edgecart_e2e::chaos::check::{Expect, assert_promises};
use edgecart_e2e::chaos::hub_channel;
use edgecart_e2e::chaos::proxy::Fault;
use edgecart_e2e::chaos::workload::{History, OrderOp, Outcome, PaymentOp, Workload};
use edgecart_e2e::chaos::{Cluster, ClusterConfig, backup, fill_disk, seed};
use edgecart_e2e::{ADMIN_TOKEN, AdminToken, get_json_auth, wait_until};
use edgecart_proto::pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Outcomes still unknown when the faults end are retried for this long.
const SETTLE: Duration = Duration::from_secs(20);

// Faults are paced by business, not by the clock: `Workload::more_orders` waits (with a
// deadline) until that many more orders were confirmed — at a given store, or anywhere.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_and_restarted_under_load() {
    let mut c = Cluster::start(seed(), ClusterConfig::default()).await;
    let w = Workload::start(&c);
    w.more_orders(None, 20).await;
    c.hub.kill9();
    // The stores go on selling within their rights while the hub is down.
    w.more_orders(None, 15).await;
    c.hub.restart();
    w.more_orders(None, 15).await;
    c.hub.restart();
    w.more_orders(None, 20).await;
    let h = w.finish(SETTLE).await;
    assert_promises(&c, &h, Expect::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_order_stream_and_restarted() {
    let mut c = Cluster::start(seed(), ClusterConfig::default()).await;
    let w = Workload::start(&c);
    for orders in [15, 10, 15] {
        w.more_orders(Some(0), orders).await;
        // Its shoppers' requests in flight fail; they retry with the same keys.
        c.stores[0].node.kill9();
        c.stores[0].node.restart();
    }
    w.more_orders(Some(0), 15).await;
    let h = w.finish(SETTLE).await;
    assert_promises(
        &c,
        &h,
        Expect {
            redelivery: true,
            ..Expect::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_partitioned_for_a_while_then_healed() {
    let c = Cluster::start(seed(), ClusterConfig::default()).await;
    let w = Workload::start(&c);
    w.more_orders(None, 10).await;
    c.stores[1].proxy.set(Fault::Down);
    // Cut off, the store goes on selling within its rights.
    w.more_orders(Some(1), 8).await;
    w.more_orders(Some(0), 10).await;
    c.stores[1].proxy.set(Fault::None);
    w.more_orders(Some(1), 8).await;
    let h = w.finish(SETTLE).await;
    assert!(
        c.stores[1].proxy.stats.resets.load(Ordering::Relaxed) > 0,
        "the partition cut a live stream"
    );
    assert_promises(&c, &h, Expect::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_flapping() {
    let seed = seed();
    let c = Cluster::start(seed, ClusterConfig::default()).await;
    let w = Workload::start(&c);
    let mut rng = StdRng::seed_from_u64(seed);
    // Twenty flips of every link, each after a random handful of orders.
    for _ in 0..20 {
        for s in &c.stores {
            let f = if s.proxy.fault() == Fault::None {
                Fault::Down
            } else {
                Fault::None
            };
            s.proxy.set(f);
        }
        w.more_orders(None, rng.random_range(2..=6)).await;
    }
    c.heal();
    let h = w.finish(SETTLE).await;
    for s in &c.stores {
        assert!(
            s.proxy.stats.refused.load(Ordering::Relaxed)
                + s.proxy.stats.resets.load(Ordering::Relaxed)
                > 0
        );
    }
    assert_promises(&c, &h, Expect::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_lost_after_the_hub_commits() {
    let c = Cluster::start(seed(), ClusterConfig::default()).await;
    let w = Workload::start(&c);
    for s in &c.stores {
        s.proxy.set(Fault::LoseAcks(50));
    }
    // Until some acknowledgements were lost on every link, and business went on.
    for s in &c.stores {
        wait_until(
            Duration::from_secs(30),
            "acknowledgements lost on every link",
            || async { (s.proxy.stats.acks_lost.load(Ordering::Relaxed) >= 3).then_some(()) },
            || async { format!("seed {}", c.seed) },
        )
        .await;
    }
    w.more_orders(None, 40).await;
    c.heal();
    let h = w.finish(SETTLE).await;
    let lost: u64 = c
        .stores
        .iter()
        .map(|s| s.proxy.stats.acks_lost.load(Ordering::Relaxed))
        .sum();
    assert!(
        lost > 0,
        "no acknowledgement was lost: the fault did not run"
    );
    eprintln!("acknowledgements lost: {lost}");
    assert_promises(&c, &h, Expect::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_clocks_ten_minutes_off() {
    let config = ClusterConfig {
        clock_offsets_ms: vec![10 * 60_000, -10 * 60_000],
        ..ClusterConfig::default()
    };
    let c = Cluster::start(seed(), config).await;
    let w = Workload::start(&c);
    // Slow and stalled links on top, so edits cross in flight.
    c.stores[0]
        .proxy
        .set(Fault::Delay(Duration::from_millis(40)));
    w.more_orders(None, 20).await;
    c.stores[1].proxy.set(Fault::Stall);
    // The same product edited at the same moment at both stores and at the hub (besides the
    // workload's own edits): one version must win everywhere.
    let product = &c.products[0];
    let mut catalog = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
        hub_channel(&c.hub.url(), Duration::from_secs(5)),
        AdminToken(ADMIN_TOKEN),
    );
    let patch = |s: usize| {
        c.client
            .patch(c.stores[s].node.url(&format!("/v1/products/{product}")))
            .bearer_auth(&c.stores[s].admin_token)
            .json(&json!({"description": format!("crossing edit at store-{s}")}))
            .send()
    };
    let (a, b, hub) = tokio::join!(
        patch(0),
        patch(1),
        catalog.update_product(pb::UpdateProductRequest {
            id: product.clone(),
            description: Some("crossing edit at the hub".into()),
            ..Default::default()
        })
    );
    assert_eq!(a.expect("store-0 edit").status(), 200);
    assert_eq!(b.expect("store-1 edit").status(), 200);
    hub.expect("hub edit");
    w.more_orders(Some(1), 10).await;
    c.stores[1].proxy.set(Fault::None);
    w.more_orders(None, 20).await;
    let h = w.finish(SETTLE).await;
    assert_promises(&c, &h, Expect::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restored_from_an_older_copy_of_its_database() {
    let mut c = Cluster::start(seed(), ClusterConfig::default()).await;
    let w = Workload::start(&c);
    w.more_orders(None, 20).await;
    let copy = c.dir.path().join("store-0-backup.db");
    // Marked before the copy starts: what commits while it is taken may be missing from it.
    w.copied(0);
    backup(&c.stores[0].node.db_path(), &copy);
    w.more_orders(Some(0), 20).await;
    // The hub must have taken in more of this store's changes than the copy holds, or there is
    // nothing to detect (on a loaded machine it can lag): wait for that before the crash.
    let copy_seq: i64 = rusqlite::Connection::open(&copy)
        .expect("open the copy")
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
            [],
            |r| r.get(0),
        )
        .expect("the copy's change-log end");
    let status_url = c.stores[0].node.url("/v1/sync/status");
    let watermark = c.stores[0].node.dir.join("edgecart-node.seq");
    let admin = c.stores[0].admin_token.clone();
    wait_until(
        Duration::from_secs(30),
        "the hub (and the node's watermark) to be past what the copy holds",
        || async {
            let s = get_json_auth(&c.client, status_url.clone(), &admin).await;
            // ... and the node's own record beside its database, written about once a second.
            let recorded: i64 = std::fs::read_to_string(&watermark)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (s["acked_seq"].as_i64()? > copy_seq && recorded > copy_seq).then_some(())
        },
        || async { c.stores[0].node.proc.log() },
    )
    .await;
    let store = &mut c.stores[0].node;
    store.kill9();
    let db = store.db_path();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&copy, &db).expect("restore the copy");
    store.restart();
    w.restored(0);
    // The restored store sells again (once re-synced).
    w.more_orders(Some(0), 15).await;
    let h = w.finish(SETTLE).await;
    let node_log = c.stores[0].node.proc.log();
    assert!(
        node_log.contains("older than what this node had written"),
        "the node did not notice its database was replaced by an older copy"
    );
    assert!(
        c.hub.proc.log().contains("re-syncing it"),
        "the hub did not detect the restore"
    );
    assert_promises(
        &c,
        &h,
        Expect {
            redelivery: true,
            restored_node: Some(0),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_disk_full_for_a_moment() {
    let config = ClusterConfig {
        hub_tmpfs: Some(24 << 20),
        ..ClusterConfig::default()
    };
    let mut c = Cluster::start(seed(), config).await;
    let w = Workload::start(&c);
    w.more_orders(None, 20).await;
    let (ballast, size) = fill_disk(&c.hub.disk_path());
    eprintln!("hub disk filled with {size} bytes of ballast");
    // Full until the hub's writes have failed for a while (its WAL may first reuse space it
    // already has), then space comes back.
    wait_until(
        Duration::from_secs(30),
        "the hub to hit the full disk",
        || async {
            c.hub
                .proc
                .log()
                .contains("database or disk is full")
                .then_some(())
        },
        || async { c.hub.proc.log() },
    )
    .await;
    // The stores sell on while the hub cannot write.
    w.more_orders(None, 10).await;
    std::fs::remove_file(&ballast).expect("remove ballast");
    w.more_orders(None, 20).await;
    let h = w.finish(SETTLE).await;
    assert!(c.hub.proc.alive(), "the hub exited:\n{}", c.hub.proc.log());
    assert_promises(&c, &h, Expect::default()).await;
}

/// The seam of a charge in flight, made deterministic: the provider takes the money and holds
/// its answer, the hub is killed before the answer arrives, the customer cancels at the store
/// while the hub is away (the store voids the payment), and after the restart the provider
/// answers 503 until the void has reached the hub. A void of a charge that may have been taken
/// is "refund if charged": the hub keeps asking, finds the charge and refunds it in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_in_flight_across_a_hub_crash_and_a_cancel_is_refunded() {
    let mut c = Cluster::start(
        seed(),
        ClusterConfig {
            nodes: 1,
            shoppers_per_node: 1,
            ..ClusterConfig::default()
        },
    )
    .await;
    let client = c.client.clone();
    let (node_url, token) = (c.stores[0].node.base(), c.stores[0].shoppers[0].1.clone());
    let node = |path: &str| format!("{node_url}{path}");

    // 1. The charge reaches the provider, which takes the money and answers slowly.
    c.provider.hold_answers(true);
    let (status, order) =
        edgecart_e2e::order(&client, &c.stores[0].node, &token, &c.products[0], 2).await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().unwrap().to_string();
    let r = client
        .post(node(&format!("/v1/orders/{order_id}/payments")))
        .bearer_auth(&token)
        .header("Idempotency-Key", "seam-pay-1")
        .json(&json!({"method": "card", "card_token": "tok_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let payment_id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until(
        Duration::from_secs(20),
        "the provider holding a taken charge",
        || async {
            let s = c.provider.state();
            (s.charges.contains_key(&payment_id) && s.held_answers > 0).then_some(())
        },
        || async { c.hub.proc.log() },
    )
    .await;

    // 2. The hub dies before the answer arrives.
    c.hub.kill9();

    // 3. The customer cancels at the store while the hub is away: the store voids the payment.
    let r = client
        .post(node(&format!("/v1/orders/{order_id}/cancel")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cancelled: serde_json::Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payments"][0]["status"], "voided");

    // 4. The hub comes back; the provider answers 503 until the store's void has reached the
    //    hub and a retried charge has been refused at least once.
    c.provider.set_unavailable(true);
    c.provider.hold_answers(false);
    c.hub.restart();
    let payments = pb::payment_admin_client::PaymentAdminClient::with_interceptor(
        hub_channel(&c.hub.url(), Duration::from_secs(5)),
        AdminToken(ADMIN_TOKEN),
    );
    let before = c.provider.state().unavailable_answers;
    wait_until(
        Duration::from_secs(30),
        "the void at the hub, waiting on the provider",
        || {
            let mut payments = payments.clone();
            let (id, provider) = (payment_id.clone(), c.provider.clone());
            async move {
                let p = payments
                    .get_payment(pb::GetPaymentRequest { payment_id: id })
                    .await
                    .ok()?
                    .into_inner();
                (p.status == "voiding" && provider.state().unavailable_answers > before)
                    .then_some(())
            }
        },
        || async { c.hub.proc.log() },
    )
    .await;

    // 5. The provider answers again: the hub learns of the charge and refunds it in full.
    c.provider.set_unavailable(false);
    let settled = wait_until(
        Duration::from_secs(30),
        "the charge refunded at the hub",
        || {
            let mut payments = payments.clone();
            let id = payment_id.clone();
            async move {
                let p = payments
                    .get_payment(pb::GetPaymentRequest { payment_id: id })
                    .await
                    .ok()?
                    .into_inner();
                let refunded = p.refunds.iter().any(|r| r.status == "succeeded");
                (p.status == "captured" && refunded).then_some(p)
            }
        },
        || async { c.hub.proc.log() },
    )
    .await;
    let amount = settled.amount.as_ref().unwrap().amount;
    assert_eq!(settled.refunded.as_ref().unwrap().amount, amount);
    {
        let books = c.provider.state();
        let charged = books.charges[&payment_id]["amount"].as_i64().unwrap();
        let refunded: i64 = books
            .refunds
            .values()
            .filter(|r| r["charge"] == books.charges[&payment_id]["id"])
            .map(|r| r["amount"].as_i64().unwrap())
            .sum();
        assert_eq!(
            (charged, refunded),
            (amount, amount),
            "customer charged once, refunded in full"
        );
    }
    // The store hears of both and ends with the payment refunded.
    wait_until(
        Duration::from_secs(30),
        "the refund at the store",
        || async {
            let o = get_json_auth(&client, node(&format!("/v1/orders/{order_id}")), &token).await;
            (o["payments"][0]["status"] == "refunded").then_some(())
        },
        || async { c.stores[0].node.proc.log() },
    )
    .await;
    // Every other promise holds too, with this one order as the history.
    let history = History {
        orders: vec![OrderOp {
            store: 0,
            shopper: 0,
            key: "seam-order-1".into(),
            product: c.products[0].clone(),
            qty: 2,
            outcome: Outcome::Succeeded,
            order_id: Some(order_id),
            payment: Some(PaymentOp {
                method: "card",
                card_token: Some("tok_visa"),
                outcome: Outcome::Succeeded,
                payment_id: Some(payment_id),
            }),
            cancel: Some(Outcome::Succeeded),
            spans_restore: false,
            may_be_lost: false,
        }],
        ..History::default()
    };
    assert_promises(&c, &history, Expect::default()).await;
}
