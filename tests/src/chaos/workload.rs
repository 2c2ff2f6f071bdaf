//! The workload: shoppers at every store ordering, paying by card or cash and cancelling; staff
//! receiving stock and editing the catalog at the stores and at the hub; a monitor sampling
//! stock everywhere. Every operation's outcome is recorded: succeeded, failed (a definite
//! refusal) or unknown (no answer). An unknown outcome is retried with the same
//! `Idempotency-Key` until it is known or the run's settle deadline passes, as a real client
//! would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgecart_proto::pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::{ADMIN_TOKEN, AdminToken};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    /// A definite refusal with this HTTP status (or gRPC code).
    Failed(u16),
    /// No answer, or an answer that does not say (5xx): it may or may not have happened.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct OrderOp {
    pub store: usize,
    pub shopper: usize,
    pub key: String,
    pub product: String,
    pub qty: i64,
    pub outcome: Outcome,
    pub order_id: Option<String>,
    pub payment: Option<PaymentOp>,
    pub cancel: Option<Outcome>,
    /// The request was being retried across a restore of its store from an older copy: the
    /// store forgot its idempotency key, so it may have been applied twice.
    pub spans_restore: bool,
    /// Confirmed after a copy of its store's database was taken and before the store was
    /// restored from it: if the hub had not received it by the crash, it is lost (a restore
    /// loses what was done after the copy and never synced).
    pub may_be_lost: bool,
}

#[derive(Debug, Clone)]
pub struct PaymentOp {
    pub method: &'static str,
    pub card_token: Option<&'static str>,
    pub outcome: Outcome,
    pub payment_id: Option<String>,
}

/// Units received (at a store, or at the hub when `store` is `None`).
#[derive(Debug, Clone)]
pub struct ReceiptOp {
    pub store: Option<usize>,
    pub product: String,
    pub qty: i64,
    pub outcome: Outcome,
    /// See [`OrderOp::spans_restore`].
    pub spans_restore: bool,
    /// See [`OrderOp::may_be_lost`].
    pub may_be_lost: bool,
}

/// A partial refund staff asked for at a store.
#[derive(Debug, Clone)]
pub struct RefundOp {
    pub store: usize,
    pub payment_id: String,
    pub amount: i64,
    pub outcome: Outcome,
    /// See [`OrderOp::may_be_lost`].
    pub may_be_lost: bool,
}

/// Everything the workload did, and what the monitor saw.
#[derive(Debug, Default)]
pub struct History {
    pub orders: Vec<OrderOp>,
    pub receipts: Vec<ReceiptOp>,
    pub refunds: Vec<RefundOp>,
    /// Catalog edits (where, outcome).
    pub edits: Vec<(Option<usize>, Outcome)>,
    /// Negative stock figures seen anywhere at any time (where, product, figure).
    pub negative: Vec<String>,
    /// Stock samples taken.
    pub samples: u64,
}

impl History {
    /// Adds another run's operations (the soak checks each round against everything so far).
    pub fn extend(&mut self, other: History) {
        self.orders.extend(other.orders);
        self.receipts.extend(other.receipts);
        self.refunds.extend(other.refunds);
        self.edits.extend(other.edits);
        self.negative.extend(other.negative);
        self.samples += other.samples;
    }

    pub fn count(&self, pred: impl Fn(&OrderOp) -> bool) -> usize {
        self.orders.iter().filter(|o| pred(o)).count()
    }
}

/// A running workload; [`Workload::finish`] stops new operations, lets unknown outcomes be
/// retried until `settle` has passed, and returns the history.
pub struct Workload {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    history: Arc<Mutex<History>>,
    give_up: Arc<Mutex<Option<Instant>>>,
    restored_at: Arc<Mutex<Vec<Option<Instant>>>>,
    copied: Arc<Mutex<Vec<bool>>>,
    confirmed: Arc<Vec<AtomicU64>>,
    seed: u64,
    pub started: Instant,
}

/// The shared bits every task needs.
#[derive(Clone)]
struct Ctx {
    client: Client,
    stop: CancellationToken,
    history: Arc<Mutex<History>>,
    give_up: Arc<Mutex<Option<Instant>>>,
    products: Arc<Vec<String>>,
    /// When each store was last restored from an older copy (see [`Workload::restored`]).
    restored_at: Arc<Mutex<Vec<Option<Instant>>>>,
    /// Stores whose database was copied (to be restored from later).
    copied: Arc<Mutex<Vec<bool>>>,
    /// Orders confirmed (201) so far at each store: the scenarios pace their faults by it.
    confirmed: Arc<Vec<AtomicU64>>,
    /// Card payments accepted at each store, for staff to refund part of.
    card_payments: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Ctx {
    /// Whether what `store` confirms now may be lost by a coming restore (see
    /// [`OrderOp::may_be_lost`]).
    fn may_be_lost(&self, store: usize) -> bool {
        self.copied.lock().unwrap_or_else(|p| p.into_inner())[store]
            && self.restored_at.lock().unwrap_or_else(|p| p.into_inner())[store].is_none()
    }

    /// Whether `store` was restored while a request that started at `since` was retried.
    fn spans_restore(&self, store: usize, since: Instant) -> bool {
        self.restored_at.lock().unwrap_or_else(|p| p.into_inner())[store].is_some_and(|t| t > since)
    }

    fn record(&self, f: impl FnOnce(&mut History)) {
        f(&mut self.history.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether an unknown outcome may still be retried.
    fn may_retry(&self) -> bool {
        match *self.give_up.lock().unwrap_or_else(|p| p.into_inner()) {
            None => true,
            Some(t) => Instant::now() < t,
        }
    }

    /// Sends until the outcome is known or retrying is over. `build` makes the same request
    /// (same idempotency key) each time.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> (Outcome, Value) {
        loop {
            match build().send().await {
                Ok(r) if r.status().is_success() => {
                    return (Outcome::Succeeded, r.json().await.unwrap_or(Value::Null));
                }
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status().as_u16();
                    return (
                        Outcome::Failed(status),
                        r.json().await.unwrap_or(Value::Null),
                    );
                }
                _ => {}
            }
            if !self.may_retry() {
                return (Outcome::Unknown, Value::Null);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn key(rng: &mut StdRng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

impl Workload {
    /// Starts shoppers at every store, staff at every store and at the hub, and the stock
    /// monitor.
    pub fn start(cluster: &Cluster) -> Workload {
        Self::start_round(cluster, 0)
    }

    /// Like [`Workload::start`], for the `round`-th workload on the same cluster (the soak):
    /// each round draws fresh choices and idempotency keys from the seed.
    pub fn start_round(cluster: &Cluster, round: u64) -> Workload {
        let seed = cluster.seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let stop = CancellationToken::new();
        let history = Arc::new(Mutex::new(History::default()));
        let give_up = Arc::new(Mutex::new(None));
        let ctx = Ctx {
            client: cluster.client.clone(),
            stop: stop.clone(),
            history: history.clone(),
            give_up: give_up.clone(),
            products: Arc::new(cluster.products.clone()),
            restored_at: Arc::new(Mutex::new(vec![None; cluster.stores.len()])),
            card_payments: Arc::new(Mutex::new(vec![Vec::new(); cluster.stores.len()])),
            copied: Arc::new(Mutex::new(vec![false; cluster.stores.len()])),
            confirmed: Arc::new(
                (0..cluster.stores.len())
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            ),
        };
        let copied = ctx.copied.clone();
        let confirmed = ctx.confirmed.clone();
        let restored_at = ctx.restored_at.clone();
        let mut tasks = JoinSet::new();
        for (s, store) in cluster.stores.iter().enumerate() {
            let base = store.node.base();
            for (k, (_, token)) in store.shoppers.iter().enumerate() {
                let rng = StdRng::seed_from_u64(seed ^ ((s as u64) << 32 | k as u64));
                tasks.spawn(shopper(ctx.clone(), rng, s, k, base.clone(), token.clone()));
            }
            let rng = StdRng::seed_from_u64(seed ^ (0xA11 << 40 | s as u64));
            tasks.spawn(store_staff(
                ctx.clone(),
                rng,
                s,
                base.clone(),
                store.admin_token.clone(),
            ));
        }
        let rng = StdRng::seed_from_u64(seed ^ 0xB0B);
        tasks.spawn(hub_staff(ctx.clone(), rng, cluster.hub.url()));
        let bases: Vec<String> = cluster.stores.iter().map(|s| s.node.base()).collect();
        tasks.spawn(monitor(ctx, bases, cluster.hub.url()));
        Workload {
            stop,
            tasks,
            history,
            give_up,
            restored_at,
            copied,
            confirmed,
            seed: cluster.seed,
            started: Instant::now(),
        }
    }

    /// Tells the history that `store` has just been restored from an older copy of its
    /// database (requests in flight now may be applied twice: their keys are forgotten).
    /// Orders confirmed so far at `store`, or at every store.
    pub fn confirmed(&self, store: Option<usize>) -> u64 {
        match store {
            Some(s) => self.confirmed[s].load(Ordering::Relaxed),
            None => self
                .confirmed
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Waits until `n` more orders have been confirmed at `store` (or anywhere): the scenarios
    /// hold a fault, or let a phase run, for an amount of business rather than a time. Panics
    /// (with the seed) if that does not happen within 30 s.
    pub async fn more_orders(&self, store: Option<usize>, n: u64) {
        let target = self.confirmed(store) + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.confirmed(store) < target {
            assert!(
                Instant::now() < deadline,
                "seed {}: {n} more orders at {store:?} not confirmed within 30 s (at {} of {target})",
                self.seed,
                self.confirmed(store)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells the history that a copy of `store`'s database has just been taken (to restore it
    /// from later).
    pub fn copied(&self, store: usize) {
        self.copied.lock().unwrap_or_else(|p| p.into_inner())[store] = true;
    }

    pub fn restored(&self, store: usize) {
        self.restored_at.lock().unwrap_or_else(|p| p.into_inner())[store] = Some(Instant::now());
    }

    /// Stops new operations; outcomes still unknown are retried for up to `settle`.
    pub async fn finish(mut self, settle: Duration) -> History {
        *self.give_up.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + settle);
        self.stop.cancel();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        std::mem::take(&mut *self.history.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Waits a random pause, or returns false once the run is stopping.
async fn pause(ctx: &Ctx, rng: &mut StdRng, min_ms: u64, max_ms: u64) -> bool {
    let d = Duration::from_millis(rng.random_range(min_ms..=max_ms));
    tokio::select! {
        _ = ctx.stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn shopper(
    ctx: Ctx,
    mut rng: StdRng,
    store: usize,
    shopper: usize,
    base: String,
    token: String,
) {
    while pause(&ctx, &mut rng, 20, 150).await {
        let product = ctx.products[rng.random_range(0..ctx.products.len())].clone();
        let qty = rng.random_range(1..=2);
        let order_key = key(&mut rng);
        let since = Instant::now();
        let body = json!({"items": [{"product_id": product, "quantity": qty}]});
        let (outcome, order) = ctx
            .send(|| {
                ctx.client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", &order_key)
                    .json(&body)
            })
            .await;
        let mut op = OrderOp {
            store,
            shopper,
            key: order_key,
            product,
            qty,
            order_id: order["id"].as_str().map(str::to_string),
            outcome,
            payment: None,
            cancel: None,
            spans_restore: false,
            may_be_lost: false,
        };
        if let Some(id) = op.order_id.clone() {
            // Pay: mostly by card (now and then a card that is declined), else cash.
            let roll = rng.random_range(0..100);
            let (method, card_token) = match roll {
                0..=59 => ("card", Some("tok_visa")),
                60..=64 => ("card", Some("tok_decline")),
                _ => ("cash", None),
            };
            let pay_key = key(&mut rng);
            let body = match card_token {
                Some(t) => json!({"method": method, "card_token": t}),
                None => json!({"method": method}),
            };
            let (outcome, payment) = ctx
                .send(|| {
                    ctx.client
                        .post(format!("{base}/v1/orders/{id}/payments"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &pay_key)
                        .json(&body)
                })
                .await;
            if let (Outcome::Succeeded, Some("tok_visa"), Some(pid)) =
                (&outcome, card_token, payment["id"].as_str())
            {
                ctx.card_payments.lock().unwrap_or_else(|p| p.into_inner())[store]
                    .push(pid.to_string());
            }
            op.payment = Some(PaymentOp {
                method,
                card_token,
                payment_id: payment["id"].as_str().map(str::to_string),
                outcome,
            });
            // Some customers change their mind.
            if rng.random_range(0..100) < 15 {
                let (outcome, _) = ctx
                    .send(|| {
                        ctx.client
                            .post(format!("{base}/v1/orders/{id}/cancel"))
                            .bearer_auth(&token)
                    })
                    .await;
                op.cancel = Some(outcome);
            }
        }
        // Judged when the whole operation (order, payment, cancel) is done: any part of it may
        // have been retried across a restore, or confirmed before one.
        op.spans_restore = ctx.spans_restore(store, since);
        op.may_be_lost = ctx.may_be_lost(store);
        if op.outcome == Outcome::Succeeded {
            ctx.confirmed[store].fetch_add(1, Ordering::Relaxed);
        }
        ctx.record(|h| h.orders.push(op));
    }
}

async fn store_staff(ctx: Ctx, mut rng: StdRng, store: usize, base: String, token: String) {
    let mut n = 0;
    while pause(&ctx, &mut rng, 250, 700).await {
        n += 1;
        let product = ctx.products[rng.random_range(0..ctx.products.len())].clone();
        let roll = rng.random_range(0..100);
        let refundable = {
            let paid = ctx.card_payments.lock().unwrap_or_else(|p| p.into_inner());
            (!paid[store].is_empty())
                .then(|| paid[store][rng.random_range(0..paid[store].len())].clone())
        };
        if let (true, Some(payment_id)) = (roll < 15, refundable) {
            // A partial refund (every price is above 1.00); refused (409) while the charge is
            // pending or when little is left.
            let refund_key = key(&mut rng);
            let (outcome, _) = ctx
                .send(|| {
                    ctx.client
                        .post(format!("{base}/v1/payments/{payment_id}/refunds"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &refund_key)
                        .json(&json!({"amount": 100, "reason": "goodwill"}))
                })
                .await;
            ctx.record(|h| {
                h.refunds.push(RefundOp {
                    store,
                    payment_id,
                    amount: 100,
                    outcome,
                    may_be_lost: ctx.may_be_lost(store),
                })
            });
        } else if roll < 65 {
            let qty = rng.random_range(1..=3);
            let receipt_key = key(&mut rng);
            let since = Instant::now();
            let (outcome, _) = ctx
                .send(|| {
                    ctx.client
                        .post(format!("{base}/v1/products/{product}/stock"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &receipt_key)
                        .json(&json!({"delta": qty}))
                })
                .await;
            ctx.record(|h| {
                h.receipts.push(ReceiptOp {
                    store: Some(store),
                    product,
                    qty,
                    outcome,
                    spans_restore: ctx.spans_restore(store, since),
                    may_be_lost: ctx.may_be_lost(store),
                })
            });
        } else {
            // Setting fields is idempotent by nature: a retry sets the same values.
            let body = json!({
                "description": format!("edited at store-{store} #{n}"),
                "price": {"amount": rng.random_range(400..900), "currency": "USD"},
            });
            let (outcome, _) = ctx
                .send(|| {
                    ctx.client
                        .patch(format!("{base}/v1/products/{product}"))
                        .bearer_auth(&token)
                        .json(&body)
                })
                .await;
            ctx.record(|h| h.edits.push((Some(store), outcome)));
        }
    }
}

fn grpc_outcome<T>(r: &Result<T, tonic::Status>) -> Outcome {
    match r {
        Ok(_) => Outcome::Succeeded,
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::NotFound
            ) =>
        {
            Outcome::Failed(s.code() as u16)
        }
        // Unavailable and friends: the request may or may not have been applied.
        Err(_) => Outcome::Unknown,
    }
}

async fn hub_staff(ctx: Ctx, mut rng: StdRng, hub_url: String) {
    let channel = super::hub_channel(&hub_url, Duration::from_secs(3));
    let mut inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        channel.clone(),
        AdminToken(ADMIN_TOKEN),
    );
    let mut catalog = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
        channel,
        AdminToken(ADMIN_TOKEN),
    );
    let mut n = 0;
    while pause(&ctx, &mut rng, 400, 1000).await {
        n += 1;
        let product = ctx.products[rng.random_range(0..ctx.products.len())].clone();
        if rng.random_range(0..100) < 60 {
            let qty = rng.random_range(2..=6);
            let r = inventory
                .receive_stock(pb::ReceiveStockRequest {
                    product_id: product.clone(),
                    quantity: qty,
                })
                .await;
            let outcome = grpc_outcome(&r);
            ctx.record(|h| {
                h.receipts.push(ReceiptOp {
                    store: None,
                    product,
                    qty,
                    outcome,
                    spans_restore: false,
                    may_be_lost: false,
                })
            });
        } else {
            let r = catalog
                .update_product(pb::UpdateProductRequest {
                    id: product,
                    name: Some(format!("Chaos item (hub edit #{n})")),
                    description: Some(format!("edited at the hub #{n}")),
                    ..Default::default()
                })
                .await;
            let outcome = grpc_outcome(&r);
            ctx.record(|h| h.edits.push((None, outcome)));
        }
    }
}

/// Samples every product's stock at every store and at the hub until stopped; any negative
/// figure is recorded.
async fn monitor(ctx: Ctx, bases: Vec<String>, hub_url: String) {
    let channel = super::hub_channel(&hub_url, Duration::from_secs(2));
    let mut inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        channel,
        AdminToken(ADMIN_TOKEN),
    );
    let mut rng = StdRng::seed_from_u64(0);
    while pause(&ctx, &mut rng, 150, 250).await {
        let mut negative = Vec::new();
        for product in ctx.products.iter() {
            for (s, base) in bases.iter().enumerate() {
                let Ok(r) = ctx
                    .client
                    .get(format!("{base}/v1/products/{product}"))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(p) = r.json::<Value>().await else {
                    continue;
                };
                for field in ["available_here", "global"] {
                    if let Some(v) = p["stock"][field].as_i64()
                        && v < 0
                    {
                        negative.push(format!("store-{s} {product} {field}={v}"));
                    }
                }
            }
            if let Ok(level) = inventory
                .get_stock(pb::GetStockRequest {
                    product_id: product.clone(),
                })
                .await
            {
                let level = level.into_inner();
                if level.global_stock < 0 || level.hub_rights < 0 {
                    negative.push(format!(
                        "hub {product} global={} hub_rights={}",
                        level.global_stock, level.hub_rights
                    ));
                }
                for n in &level.nodes {
                    if n.rights < 0 {
                        negative.push(format!(
                            "hub's view of {} {product} rights={}",
                            n.node_id, n.rights
                        ));
                    }
                }
            }
        }
        ctx.record(|h| {
            h.samples += 1;
            h.negative.extend(negative);
        });
    }
}
