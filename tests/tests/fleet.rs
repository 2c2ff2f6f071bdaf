//! A hub with a few hundred simulated stores (the load tool's `edgecart_load::sim`, real
//! `Sync/Stream` sessions): what the hub sends each store stays bounded by what changed, not by
//! how many stores sell (issue 14), and a reconnect storm after `kill -9` is absorbed.

use std::time::{Duration, Instant};

use edgecart_e2e::{ADMIN_TOKEN, TestHub, wait_until};
use edgecart_load::hub::{Admin, HubTarget, Secret};
use edgecart_load::sim::{Fleet, FleetSnapshot, SimConfig};

/// Products on sale (every one of them changes in every digest period while 50+ stores sell).
const PRODUCTS: usize = 6;
const WINDOW: Duration = Duration::from_secs(6);

async fn enrolled_fleet(hub: &TestHub, prefix: &str, n: usize) -> Fleet {
    let target = HubTarget::new(&hub.url(), None).unwrap();
    let admin = Admin::connect(&target, &Secret::new(ADMIN_TOKEN))
        .await
        .unwrap();
    let ids: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i:04}")).collect();
    let enrolled = admin.enroll_all(&ids, 8, |_| {}).await.unwrap();
    let mut config = SimConfig::new(target);
    config.sale_every = Some(Duration::from_millis(1500));
    let fleet = Fleet::start(config, enrolled).unwrap();
    fleet
        .wait_connected(Duration::from_secs(120), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{n} stores connecting: {e}\nhub:\n{}", hub.proc.log()));
    fleet
}

/// Per store, `stock_others` entries per second over `WINDOW`: (median, max).
async fn others_rates(fleets: &[&Fleet]) -> (f64, f64, f64) {
    let before: Vec<FleetSnapshot> = fleets.iter().map(|f| f.snapshot()).collect();
    tokio::time::sleep(WINDOW).await;
    let mut rates = Vec::new();
    let mut sales = 0u64;
    for (fleet, before) in fleets.iter().zip(&before) {
        let now = fleet.snapshot();
        sales += now.sales() - before.sales();
        rates.extend(now.rates_since(before).iter().map(|r| {
            r.received_per_sec
                .get("stock_others")
                .copied()
                .unwrap_or(0.0)
        }));
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let max = *rates.last().unwrap();
    (median, max, sales as f64 / WINDOW.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_per_store_stays_flat_as_stores_are_added_and_a_reconnect_storm_is_absorbed() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(&dir.path().join("hub"));
    for i in 0..PRODUCTS {
        hub.stocked_product(&format!("Fleet item {i}"), 300, 100_000)
            .await;
    }

    // 50 stores selling, then 250 more: 300 stores selling six times as much in total.
    let first = enrolled_fleet(&hub, "few", 50).await;
    let (few_median, few_max, few_sales) = others_rates(&[&first]).await;
    let second = enrolled_fleet(&hub, "many", 250).await;
    let (many_median, many_max, many_sales) = others_rates(&[&first, &second]).await;
    eprintln!(
        "stock_others per store per second: 50 stores median {few_median:.2} max {few_max:.2} \
         ({few_sales:.0} sales/s); 300 stores median {many_median:.2} max {many_max:.2} \
         ({many_sales:.0} sales/s)"
    );
    assert!(
        many_sales > 3.0 * few_sales,
        "the larger fleet sells more: {few_sales} vs {many_sales} sales/s"
    );
    // Bounded by what changed: one figure per changed product per digest, the digest period
    // growing with the fleet (docs/sync-protocol.md): 0.1 s for 50 stores, 0.3 s for 300.
    for (stores, max) in [(50, few_max), (300, many_max)] {
        let period = edgecart_hub::figures::period(stores).as_secs_f64();
        let bound = PRODUCTS as f64 / period * 1.25;
        assert!(
            max <= bound,
            "{stores} stores: a store got {max} global figures per second, more than one per \
             product per {period} s digest (bound {bound})"
        );
    }
    // Flat: six times the sales do not multiply what each store receives.
    assert!(
        many_median <= few_median * 1.5 + 0.5,
        "per-store fan-out grew with the fleet: {few_median} -> {many_median}"
    );

    // The reconnect storm: the hub is killed and restarted; every store comes back.
    hub.kill9();
    let restarted = Instant::now();
    hub.restart();
    for fleet in [&first, &second] {
        fleet
            .wait_reconnected(restarted, Duration::from_secs(60), |_| {})
            .await
            .unwrap_or_else(|e| panic!("after the restart: {e}\nhub:\n{}", hub.proc.log()));
    }
    eprintln!(
        "all 300 stores back {:?} after the restart",
        restarted.elapsed()
    );
    // The stores go on selling on their new sessions.
    let before = first.snapshot().sales();
    wait_until(
        Duration::from_secs(30),
        "the stores to sell again after the restart",
        || async { (first.snapshot().sales() > before).then_some(()) },
        || async { hub.proc.log() },
    )
    .await;
    assert_eq!(first.connected() + second.connected(), 300);
    first.stop().await;
    second.stop().await;
}
