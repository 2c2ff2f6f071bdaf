//! The oracle: what must hold once faults stop and the system has converged.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use edgecart_proto::pb;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::Cluster;
use super::workload::{History, Outcome};
use crate::{ADMIN_TOKEN, AdminToken, get_json};

/// What a scenario allows beyond the strict promises.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// A node was killed: a notification may reach the relay twice (at-least-once delivery;
    /// the relay drops the repeat by its idempotency key).
    pub redelivery: bool,
    /// A node was restored from an older copy of its database: the notifications and
    /// idempotency keys it saw after that copy are gone (its orders and payments come back from
    /// the hub).
    pub restored_node: Option<usize>,
}

/// Everything the checks look at, read from every side.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<pb::NodeInfo>,
    pub hub_products: HashMap<String, pb::Product>,
    pub hub_stock: HashMap<String, pb::StockLevel>,
    pub hub_orders: Vec<pb::Order>,
    pub payments: Vec<pb::Payment>,
    /// Per store: product id → the store's product JSON.
    pub store_products: Vec<HashMap<String, Value>>,
    /// Per store: its own orders (id → status), from its database.
    pub store_orders: Vec<HashMap<String, String>>,
    /// Per store: email notifications (id → status), from its database.
    pub store_emails: Vec<HashMap<String, String>>,
}

fn hub_channel(cluster: &Cluster) -> tonic::transport::Channel {
    super::hub_channel(&cluster.hub.url(), Duration::from_secs(5))
}

fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

fn query_map(path: &Path, sql: &str, arg: &str) -> Result<HashMap<String, String>, String> {
    let c = open_ro(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stmt = c.prepare(sql).map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([arg], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// `PRAGMA integrity_check` on one database file.
pub fn integrity(path: &Path) -> Result<(), String> {
    let c = open_ro(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_integrity(&c, path)
}

fn check_integrity(c: &Connection, path: &Path) -> Result<(), String> {
    let result: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if result == "ok" {
        Ok(())
    } else {
        Err(format!("{}: integrity_check: {result}", path.display()))
    }
}

/// The hub's database checked as a crash at this moment would leave it: the hub is paused
/// (SIGSTOP), its database and WAL copied, and it is resumed; the copy is checked. (Its data
/// dir may be a tmpfs in a mount namespace of its own, which SQLite cannot open by path from
/// outside: it resolves `/proc/<pid>/root` to this namespace's root.)
fn hub_integrity(cluster: &Cluster) -> Result<(), String> {
    let pid = cluster.hub.proc.pid().to_string();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .map_err(|e| format!("kill {sig}: {e}"))
    };
    let copy = cluster.dir.path().join("hub-integrity");
    std::fs::create_dir_all(&copy).map_err(|e| e.to_string())?;
    let db = cluster.hub.db_path();
    signal("-STOP")?;
    let copied = ["", "-wal"].iter().try_for_each(|suffix| {
        let from = format!("{}{suffix}", db.display());
        match std::fs::copy(&from, copy.join(format!("hub.db{suffix}"))) {
            Ok(_) => Ok(()),
            Err(e) if suffix.is_empty() => Err(format!("copying {from}: {e}")),
            Err(_) => Ok(()),
        }
    });
    signal("-CONT")?;
    copied?;
    // The copy is ours: open it read-write so SQLite can recover its WAL.
    let path = copy.join("hub.db");
    let c = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_integrity(&c, &db)
}

impl Snapshot {
    /// Reads every side. A side that cannot be read leaves its part empty (and the
    /// convergence test fails on it).
    pub async fn take(cluster: &Cluster) -> Result<Snapshot, String> {
        let ch = hub_channel(cluster);
        let token = AdminToken(ADMIN_TOKEN);
        let mut snap = Snapshot {
            nodes: pb::node_admin_client::NodeAdminClient::with_interceptor(
                ch.clone(),
                token.clone(),
            )
            .list_nodes(pb::ListNodesRequest {})
            .await
            .map_err(|e| format!("hub ListNodes: {e}"))?
            .into_inner()
            .nodes,
            ..Default::default()
        };
        let mut catalog = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            ch.clone(),
            token.clone(),
        );
        let mut inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            ch.clone(),
            token.clone(),
        );
        for id in &cluster.products {
            let p = catalog
                .get_product(pb::GetProductRequest { id: id.clone() })
                .await
                .map_err(|e| format!("hub GetProduct: {e}"))?
                .into_inner();
            snap.hub_products.insert(id.clone(), p);
            let s = inventory
                .get_stock(pb::GetStockRequest {
                    product_id: id.clone(),
                })
                .await
                .map_err(|e| format!("hub GetStock: {e}"))?
                .into_inner();
            snap.hub_stock.insert(id.clone(), s);
        }
        let mut orders =
            pb::order_admin_client::OrderAdminClient::with_interceptor(ch.clone(), token.clone());
        let mut page_token = String::new();
        loop {
            let page = orders
                .list_orders(pb::ListOrdersRequest {
                    node_id: String::new(),
                    page_size: 500,
                    page_token,
                })
                .await
                .map_err(|e| format!("hub ListOrders: {e}"))?
                .into_inner();
            snap.hub_orders.extend(page.orders);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let mut payments =
            pb::payment_admin_client::PaymentAdminClient::with_interceptor(ch, token);
        let mut page_token = String::new();
        loop {
            let page = payments
                .list_payments(pb::ListPaymentsRequest {
                    node_id: String::new(),
                    page_size: 500,
                    page_token,
                })
                .await
                .map_err(|e| format!("hub ListPayments: {e}"))?
                .into_inner();
            snap.payments.extend(page.payments);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        for store in &cluster.stores {
            let mut products = HashMap::new();
            for id in &cluster.products {
                if let Some(p) = get_json(
                    &cluster.client,
                    store.node.url(&format!("/v1/products/{id}")),
                )
                .await
                {
                    products.insert(id.clone(), p);
                }
            }
            snap.store_products.push(products);
            let db = store.node.db_path();
            snap.store_orders.push(query_map(
                &db,
                "SELECT id, status FROM orders WHERE node_id = ?1",
                &store.node.id,
            )?);
            snap.store_emails.push(query_map(
                &db,
                "SELECT id, status FROM notifications WHERE channel = ?1",
                "email",
            )?);
        }
        Ok(snap)
    }

    /// `None` when every side agrees and nothing is in flight; else what is still different.
    pub fn unsettled(&self, cluster: &Cluster) -> Option<String> {
        let mut why = Vec::new();
        for store in &cluster.stores {
            match self.nodes.iter().find(|n| n.node_id == store.node.id) {
                None => why.push(format!("{} unknown to the hub", store.node.id)),
                Some(n) if !n.connected || n.pending_changes != 0 || n.hub_changes_pending != 0 => {
                    why.push(format!(
                        "{}: connected={} pending={} hub_pending={}",
                        n.node_id, n.connected, n.pending_changes, n.hub_changes_pending
                    ))
                }
                Some(_) => {}
            }
        }
        for p in &self.payments {
            let settled = p
                .status
                .parse::<edgecart_proto::LedgerStatus>()
                .is_ok_and(|s| s.is_final());
            if !settled || p.refunds.iter().any(|r| r.status == "pending") {
                why.push(format!("payment {} {} (refunds pending?)", p.id, p.status));
            }
        }
        for (s, store) in cluster.stores.iter().enumerate() {
            for id in &cluster.products {
                let (Some(hp), Some(hs)) = (self.hub_products.get(id), self.hub_stock.get(id))
                else {
                    continue;
                };
                let Some(sp) = self.store_products[s].get(id) else {
                    why.push(format!("{}: product {id} unreadable", store.node.id));
                    continue;
                };
                let rights = hs
                    .nodes
                    .iter()
                    .find(|n| n.node_id == store.node.id)
                    .map_or(0, |n| n.rights);
                let here = (
                    sp["name"].as_str().unwrap_or(""),
                    sp["description"].as_str().unwrap_or(""),
                    sp["price"]["amount"].as_i64().unwrap_or(-1),
                    sp["stock"]["global"].as_i64().unwrap_or(-1),
                    sp["stock"]["available_here"].as_i64().unwrap_or(-1),
                );
                let hub = (
                    hp.name.as_str(),
                    hp.description.as_str(),
                    hp.price.as_ref().map_or(-1, |m| m.amount),
                    hs.global_stock,
                    rights,
                );
                if here != hub {
                    why.push(format!(
                        "{} {id}: store (name, description, price, global, rights) {here:?} vs hub {hub:?}",
                        store.node.id
                    ));
                }
            }
            let hub_orders: HashMap<&str, &str> = self
                .hub_orders
                .iter()
                .filter(|o| o.node_id == store.node.id)
                .map(|o| (o.id.as_str(), o.status.as_str()))
                .collect();
            let mut differ = 0;
            for (id, status) in &self.store_orders[s] {
                if hub_orders.get(id.as_str()) != Some(&status.as_str()) {
                    differ += 1;
                }
            }
            if differ > 0 || hub_orders.len() != self.store_orders[s].len() {
                why.push(format!(
                    "{}: {} orders here, {} at the hub, {differ} differ",
                    store.node.id,
                    self.store_orders[s].len(),
                    hub_orders.len()
                ));
            }
            let queued = self.store_emails[s]
                .values()
                .filter(|s| *s == "queued")
                .count();
            if queued > 0 {
                why.push(format!("{}: {queued} emails queued", store.node.id));
            }
        }
        if why.is_empty() {
            None
        } else {
            Some(why.join("\n"))
        }
    }
}

/// Waits (bounded) until every side agrees; returns the snapshot and how long it took, or
/// panics with every side's state and the seed.
pub async fn converge(cluster: &Cluster, timeout: Duration) -> (Snapshot, Duration) {
    let start = Instant::now();
    let mut last: String;
    // CHAOS_VERBOSE=1 prints what still differs, every second.
    let verbose = std::env::var_os("CHAOS_VERBOSE").is_some();
    let mut next_report = Duration::from_secs(1);
    loop {
        match Snapshot::take(cluster).await {
            Ok(snap) => match snap.unsettled(cluster) {
                None => return (snap, start.elapsed()),
                Some(why) => last = why,
            },
            Err(e) => last = e,
        }
        if verbose && start.elapsed() >= next_report {
            eprintln!("[{:.1?}] not yet converged:\n{last}", start.elapsed());
            next_report += Duration::from_secs(1);
        }
        if start.elapsed() > timeout {
            let mut logs = String::new();
            for s in &cluster.stores {
                let log = s.node.proc.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                logs.push_str(&format!(
                    "--- {} log (last lines, newest first)\n{}\n",
                    s.node.id,
                    tail.join("\n")
                ));
            }
            let log = cluster.hub.proc.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            panic!(
                "seed {}: no convergence after {timeout:?}; still different:\n{last}\n{logs}--- hub log (newest first)\n{}",
                cluster.seed,
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every promise, checked against the converged snapshot and the history. Returns the
/// violations (empty when all hold).
pub async fn violations(
    cluster: &Cluster,
    snap: &Snapshot,
    h: &History,
    expect: Expect,
) -> Vec<String> {
    let mut v = Vec::new();

    // Stock: never negative anywhere, at any time we looked.
    v.extend(
        h.negative
            .iter()
            .map(|n| format!("negative stock seen: {n}")),
    );

    // Stock arithmetic: global = initial + received − units in orders that stand.
    for id in &cluster.products {
        let level = &snap.hub_stock[id];
        let received = |o: &Outcome, lost: bool| -> i64 {
            h.receipts
                .iter()
                .filter(|r| &r.product == id && &r.outcome == o && r.may_be_lost == lost)
                .map(|r| r.qty)
                .sum()
        };
        let sold: i64 = snap
            .hub_orders
            .iter()
            .filter(|o| o.status != "cancelled")
            .flat_map(|o| &o.items)
            .filter(|i| &i.product_id == id)
            .map(|i| i.quantity)
            .sum();
        // An order lost with a restore may leave its stock decrement behind: the store's
        // transaction reached the hub in two batches and only the first made it before the
        // crash (stock under-counted, never oversold: docs/reliability.md, Limits).
        let lost_sales: i64 = h
            .orders
            .iter()
            .filter(|o| &o.product == id && o.may_be_lost && o.outcome == Outcome::Succeeded)
            .map(|o| o.qty)
            .sum();
        let low =
            cluster.config.initial_stock + received(&Outcome::Succeeded, false) - sold - lost_sales;
        // A receipt retried across a restore may have been applied twice (its key forgotten).
        let twice: i64 = h
            .receipts
            .iter()
            .filter(|r| &r.product == id && r.spans_restore)
            .map(|r| r.qty)
            .sum();
        let high = low
            + lost_sales
            + received(&Outcome::Unknown, false)
            + received(&Outcome::Unknown, true)
            + received(&Outcome::Succeeded, true)
            + twice;
        if level.global_stock < low || level.global_stock > high {
            v.push(format!(
                "{id}: global stock {} not within [{low}, {high}] (initial {} + received − {sold} in standing orders)",
                level.global_stock, cluster.config.initial_stock
            ));
        }
        if level.global_stock < 0 {
            v.push(format!("{id}: global stock {} < 0", level.global_stock));
        }
    }

    // Orders: each 201 exists at its node and at the hub, once; no more than were attempted.
    let mut seen = HashSet::new();
    for o in &snap.hub_orders {
        if !seen.insert(o.id.as_str()) {
            v.push(format!("order {} listed twice at the hub", o.id));
        }
    }
    let hub_orders: HashMap<&str, &pb::Order> =
        snap.hub_orders.iter().map(|o| (o.id.as_str(), o)).collect();
    for (s, store) in cluster.stores.iter().enumerate() {
        let ok = h.count(|o| o.store == s && o.outcome == Outcome::Succeeded && !o.may_be_lost);
        let maybe = h.count(|o| o.store == s && o.outcome == Outcome::Succeeded && o.may_be_lost);
        let unknown = h.count(|o| o.store == s && o.outcome == Outcome::Unknown);
        let at_hub = snap
            .hub_orders
            .iter()
            .filter(|o| o.node_id == store.node.id)
            .count();
        // A restored node forgot the idempotency keys it saw after the copy was taken: a retry
        // of a request that was in flight when it was killed makes a second order.
        let forgotten = h.count(|o| o.store == s && o.spans_restore);
        if at_hub < ok || at_hub > ok + maybe + unknown + forgotten {
            v.push(format!(
                "{}: {at_hub} orders at the hub, but {ok} were confirmed and {unknown} unknown",
                store.node.id
            ));
        }
    }
    // What a restore may have lost, or made twice, is left to the count bounds above.
    for op in h
        .orders
        .iter()
        .filter(|o| !o.may_be_lost && !o.spans_restore)
    {
        let store = &cluster.stores[op.store].node.id;
        let Some(id) = op.order_id.as_deref() else {
            continue;
        };
        let Some(order) = hub_orders.get(id) else {
            v.push(format!("confirmed order {id} ({store}) missing at the hub"));
            continue;
        };
        if &order.node_id != store {
            v.push(format!(
                "order {id} from {store} owned by {} at the hub",
                order.node_id
            ));
        }
        if !snap.store_orders[op.store].contains_key(id) {
            v.push(format!("confirmed order {id} missing at {store}"));
        }
        if op.cancel == Some(Outcome::Succeeded) && order.status != "cancelled" {
            v.push(format!(
                "order {id} was cancelled (200) but is {} at the hub",
                order.status
            ));
        }
        if let Some(pay) = &op.payment
            && pay.outcome == Outcome::Succeeded
        {
            let expected = match (pay.card_token, &op.cancel) {
                (Some("tok_decline"), _) | (_, Some(Outcome::Succeeded)) => "cancelled",
                _ => "paid",
            };
            if expected == "cancelled" && order.status != "cancelled"
                || expected == "paid" && order.status != "paid" && order.status != "cancelled"
            {
                v.push(format!(
                    "order {id} paid by {} {:?}: status {} (expected {expected})",
                    pay.method, pay.card_token, order.status
                ));
            }
            if let Some(pid) = &pay.payment_id
                && !snap.payments.iter().any(|p| &p.id == pid)
            {
                v.push(format!(
                    "accepted payment {pid} of order {id} unknown to the hub"
                ));
            }
        }
    }

    // Payments: each captured card payment charged once (one key); none for the others;
    // refunds likewise; the books balance.
    {
        let provider = cluster.provider.state();
        let mut captured_keys = HashSet::new();
        let mut refund_keys = HashSet::new();
        for p in &snap.payments {
            let order = hub_orders.get(p.order_id.as_str());
            let amount = p.amount.as_ref().map_or(0, |m| m.amount);
            let refunded = p.refunded.as_ref().map_or(0, |m| m.amount);
            match (p.method.as_str(), p.status.as_str()) {
                ("card", "captured") => {
                    captured_keys.insert(p.id.as_str());
                    match provider.charges.get(&p.id) {
                        None => v.push(format!(
                            "captured payment {} never charged at the provider",
                            p.id
                        )),
                        Some(c) => {
                            if c["id"].as_str() != Some(p.provider_charge_id.as_str()) {
                                v.push(format!(
                                    "payment {}: charge id {} at the hub, {} at the provider",
                                    p.id, p.provider_charge_id, c["id"]
                                ));
                            }
                            if c["amount"].as_i64() != Some(amount) {
                                v.push(format!(
                                    "payment {}: charged {} for {amount}",
                                    p.id, c["amount"]
                                ));
                            }
                        }
                    }
                    if order.is_some_and(|o| o.status == "cancelled") && refunded != amount {
                        v.push(format!(
                            "payment {} of cancelled order {}: refunded {refunded} of {amount}",
                            p.id, p.order_id
                        ));
                    }
                }
                (_, status) => {
                    if provider.charges.contains_key(&p.id) {
                        v.push(format!(
                            "{} payment {} ({status}) charged at the provider",
                            p.method, p.id
                        ));
                    }
                }
            }
            if refunded > amount {
                v.push(format!("payment {}: refunded {refunded} > {amount}", p.id));
            }
            for r in &p.refunds {
                if r.status == "succeeded" {
                    refund_keys.insert(r.id.as_str());
                    if !provider.refunds.contains_key(&r.id) {
                        v.push(format!(
                            "refund {} succeeded at the hub, unknown to the provider",
                            r.id
                        ));
                    }
                }
            }
        }
        // Refunds staff confirmed (201) are at the hub, settled, and add up.
        for r in h
            .refunds
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded && !r.may_be_lost)
        {
            match snap.payments.iter().find(|p| p.id == r.payment_id) {
                None => v.push(format!(
                    "refunded payment {} unknown to the hub",
                    r.payment_id
                )),
                Some(p) => {
                    let settled: i64 = p
                        .refunds
                        .iter()
                        .filter(|x| x.status == "succeeded")
                        .filter_map(|x| x.amount.as_ref().map(|m| m.amount))
                        .sum();
                    let asked: i64 = h
                        .refunds
                        .iter()
                        .filter(|x| {
                            x.payment_id == p.id
                                && x.outcome == Outcome::Succeeded
                                && !x.may_be_lost
                        })
                        .map(|x| x.amount)
                        .sum();
                    if settled < asked {
                        v.push(format!(
                            "payment {}: {asked} refunded at the store, {settled} settled at the hub",
                            p.id
                        ));
                    }
                    if p.refunded.as_ref().map_or(0, |m| m.amount) != settled {
                        v.push(format!(
                            "payment {}: refunded {:?} but its settled refunds add up to {settled}",
                            p.id, p.refunded
                        ));
                    }
                }
            }
        }
        for k in provider.charges.keys() {
            if !captured_keys.contains(k.as_str()) {
                v.push(format!(
                    "provider charge {k} is no captured payment at the hub"
                ));
            }
        }
        for k in provider.refunds.keys() {
            if !refund_keys.contains(k.as_str()) {
                v.push(format!(
                    "provider refund {k} is no succeeded refund at the hub"
                ));
            }
        }
    }
    let mut payments = pb::payment_admin_client::PaymentAdminClient::with_interceptor(
        hub_channel(cluster),
        AdminToken(ADMIN_TOKEN),
    );
    match payments
        .get_reconciliation_report(pb::ReconciliationRequest {
            offline_threshold_ms: 3_600_000,
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            if !r.clean {
                v.extend(r.issues.iter().map(|i| {
                    format!(
                        "reconciliation: {} node={} order={} payment={} {}",
                        i.kind, i.node_id, i.order_id, i.payment_id, i.detail
                    )
                }));
            }
        }
        Err(e) => v.push(format!("reconciliation report: {e}")),
    }

    // Notifications: every email delivered, each key accepted once, nothing else.
    {
        let sink = cluster.sink.state();
        let mut ids = HashSet::new();
        for (s, emails) in snap.store_emails.iter().enumerate() {
            for (id, status) in emails {
                ids.insert(id.as_str());
                if status != "delivered" {
                    v.push(format!(
                        "{}: email {id} is {status}",
                        cluster.stores[s].node.id
                    ));
                } else if !sink.accepted.contains_key(id) {
                    v.push(format!(
                        "email {id} marked delivered but never reached the relay"
                    ));
                }
            }
        }
        for (k, n) in &sink.deliveries {
            // A restored node lost the notifications it raised after the copy was taken (the
            // relay got them; the node no longer has them).
            if !ids.contains(k.as_str()) && expect.restored_node.is_none() {
                v.push(format!("relay got email {k} that no store has"));
            }
            if *n > 1 && !expect.redelivery {
                v.push(format!("email {k} delivered {n} times without a crash"));
            }
        }
        v.extend(
            sink.conflicting
                .iter()
                .map(|k| format!("email {k} redelivered with a different body")),
        );
    }

    // Every database is intact.
    for store in &cluster.stores {
        if let Err(e) = integrity(&store.node.db_path()) {
            v.push(e);
        }
    }
    if let Err(e) = hub_integrity(cluster) {
        v.push(e);
    }
    v
}

/// Heals every link, waits for convergence and checks every promise; panics with the seed and
/// every violation.
pub async fn assert_promises(cluster: &Cluster, h: &History, expect: Expect) -> Duration {
    cluster.heal();
    let (snap, took) = converge(cluster, Duration::from_secs(60)).await;
    let v = violations(cluster, &snap, h, expect).await;
    let ok = h.count(|o| o.outcome == Outcome::Succeeded);
    let unknown = h.count(|o| o.outcome == Outcome::Unknown);
    eprintln!(
        "seed {}: {} orders tried ({ok} confirmed, {unknown} unknown), {} receipts, {} refunds ({} accepted), {} edits, {} stock samples; converged in {took:?}",
        cluster.seed,
        h.orders.len(),
        h.receipts.len(),
        h.refunds.len(),
        h.refunds
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .count(),
        h.edits.len(),
        h.samples
    );
    assert!(
        v.is_empty(),
        "seed {} (rerun with CHAOS_SEED={}): {} promise(s) broken:\n{}",
        cluster.seed,
        cluster.seed,
        v.len(),
        v.join("\n")
    );
    took
}
