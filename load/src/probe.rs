//! Propagation probes: how long after a sale the other stores' global stock reflects it.
//!
//! One product (the probe product) is sold by nobody but the probes, one unit at a time, so a
//! store's view of its global stock says exactly which probe sales it has seen. Each round
//! reads the hub's merged figure `g`, arms the fleet's [`GlobalWatch`] with `g − 1`, sells one
//! unit — at a simulated store or, in turn, through a real node's REST API — and waits until
//! every observer shows `g − 1` or less: the other connected simulated stores (their
//! `stock_others`), and the real nodes other than the seller (`GET /v1/products/{id}`,
//! `stock.global`, polled). Rounds pause while the hub is down on purpose (`--kill-hub`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorCounts;
use crate::hub::Admin;
use crate::shopper::{NodeClient, ShopError};
use crate::sim::{Fleet, GlobalWatch};

/// A round's observers must all have seen the sale by then, or the rest count as timeouts.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between rounds.
const GAP: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(20);
/// Simulated sellers tried per round before giving up (one without rights declines).
const SELLER_TRIES: usize = 5;
/// Simulated stores watching one round at most (a random sample of the connected ones): enough
/// for a p99, and the samples of a long run with a thousand stores stay a few MiB.
const MAX_SIM_OBSERVERS: usize = 250;

/// Where a sale was made and where it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    SimToSim,
    SimToNode,
    NodeToSim,
    NodeToNode,
}

impl Path {
    pub fn label(self) -> &'static str {
        match self {
            Path::SimToSim => "sim_to_sim",
            Path::SimToNode => "sim_to_node",
            Path::NodeToSim => "node_to_sim",
            Path::NodeToNode => "node_to_node",
        }
    }
}

/// One observer seeing one probe sale.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When the sale was made, seconds since the run's epoch.
    pub at: f64,
    pub path: Path,
    /// Seconds from the sale until the observer showed it.
    pub secs: f64,
}

/// A real node a probe can sell through and watch: its storefront and a customer's token.
pub struct ProbeNode {
    pub client: NodeClient,
    pub email: String,
    pub token: String,
}

pub struct Probes {
    pub product: String,
    pub fleet: Arc<Fleet>,
    pub watch: Arc<GlobalWatch>,
    pub nodes: Vec<ProbeNode>,
    pub admin: Admin,
    pub errors: ErrorCounts,
    /// Set while the hub is down on purpose: no new rounds, and the one under way is dropped.
    pub paused: Arc<AtomicBool>,
    pub epoch: Instant,
}

enum Seller {
    Sim,
    Node(usize),
}

impl Probes {
    /// Runs rounds until `stop`; returns every sample.
    pub async fn run(mut self, stop: CancellationToken) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut round = 0usize;
        while !stop.is_cancelled() {
            if self.paused.load(Ordering::Acquire) {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
            // Alternate: a simulated store's sale, then one at each real node in turn.
            let seller = match (round % 2, self.nodes.len()) {
                (_, 0) | (0, _) => Seller::Sim,
                (_, n) => Seller::Node((round / 2) % n),
            };
            round += 1;
            if let Some(mut got) = self.round(seller, &stop).await {
                samples.append(&mut got);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(GAP) => {}
            }
        }
        samples
    }

    /// One round; `None` when it could not be made or was dropped.
    async fn round(&mut self, seller: Seller, stop: &CancellationToken) -> Option<Vec<Sample>> {
        let base = match self.admin.global_stock(&self.product).await {
            Ok(g) => g,
            Err(_) => {
                if !self.paused.load(Ordering::Acquire) {
                    self.errors.add("probe_hub_unreadable");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                return None;
            }
        };
        if base <= 0 {
            self.errors.add("probe_out_of_stock");
            return None;
        }
        let target = base - 1;
        let mut connected = self.fleet.connected_indexes();
        if connected.len() > MAX_SIM_OBSERVERS + 1 {
            use rand::seq::SliceRandom as _;
            connected.shuffle(&mut rand::rng());
            connected.truncate(MAX_SIM_OBSERVERS + 1);
        }
        let (sale, from_sim, node_seller) = match seller {
            Seller::Sim => {
                let mut made = None;
                for _ in 0..SELLER_TRIES {
                    let idx = *connected.choose(&mut rand::rng())?;
                    let observers: Vec<usize> =
                        connected.iter().copied().filter(|i| *i != idx).collect();
                    self.watch.arm(target, self.fleet.len(), &observers);
                    let product = self.product.clone();
                    if let Some(at) = self.fleet.sell(idx, &product, Duration::from_secs(2)).await {
                        made = Some((at, idx));
                        break;
                    }
                    self.watch.disarm(Instant::now());
                }
                let Some((at, _seller)) = made else {
                    self.errors.add("probe_no_rights");
                    return None;
                };
                (at, true, None)
            }
            Seller::Node(i) => {
                self.watch.arm(target, self.fleet.len(), &connected);
                let at = Instant::now();
                if let Err(e) = self.node_sale(i).await {
                    self.watch.disarm(at);
                    self.errors.add(format!("probe_{}", e.kind()));
                    return None;
                }
                (at, false, Some(i))
            }
        };
        // Real nodes other than the seller, until each shows the target.
        let mut node_seen: Vec<Option<Option<Instant>>> = (0..self.nodes.len())
            .map(|i| (Some(i) != node_seller).then_some(None))
            .collect();
        let deadline = sale + ROUND_TIMEOUT;
        loop {
            if stop.is_cancelled() || self.paused.load(Ordering::Acquire) {
                self.watch.disarm(sale);
                return None;
            }
            let polls = node_seen.iter().enumerate().filter_map(|(i, s)| match s {
                Some(None) => Some(i),
                _ => None,
            });
            let polls: Vec<usize> = polls.collect();
            let answers = futures::future::join_all(
                polls
                    .iter()
                    .map(|&i| self.nodes[i].client.stock(&self.product)),
            )
            .await;
            let now = Instant::now();
            for (&i, a) in polls.iter().zip(answers) {
                if let Ok(Some((_, global))) = a
                    && global <= target
                {
                    node_seen[i] = Some(Some(now));
                }
            }
            let nodes_done = node_seen.iter().all(|s| !matches!(s, Some(None)));
            if (nodes_done && self.watch.remaining() == 0) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let at = sale.saturating_duration_since(self.epoch).as_secs_f64();
        let mut out = Vec::new();
        let mut timeouts = 0u64;
        let (to_sim, to_node) = if from_sim {
            (Path::SimToSim, Path::SimToNode)
        } else {
            (Path::NodeToSim, Path::NodeToNode)
        };
        for (_, seen) in self.watch.disarm(sale) {
            match seen {
                Some(d) => out.push(Sample {
                    at,
                    path: to_sim,
                    secs: d.as_secs_f64(),
                }),
                None => timeouts += 1,
            }
        }
        for seen in node_seen.into_iter().flatten() {
            match seen {
                Some(t) => out.push(Sample {
                    at,
                    path: to_node,
                    secs: t.saturating_duration_since(sale).as_secs_f64(),
                }),
                None => timeouts += 1,
            }
        }
        for _ in 0..timeouts {
            self.errors.add("propagation_timeout");
        }
        Some(out)
    }

    /// One unit of the probe product at real node `i`, paid in cash (captured at the node at
    /// once: a card payment that failed later would cancel the order and put the unit back).
    async fn node_sale(&mut self, i: usize) -> Result<(), ShopError> {
        let node = &mut self.nodes[i];
        let order = match node.client.order(&node.token, &self.product).await {
            Err(ShopError::Status { status: 401, .. }) => {
                // The customer's token expired on a long run: a new customer.
                node.email = format!("probe-{}@load.example", uuid::Uuid::now_v7().simple());
                node.token = node.client.register(&node.email).await?;
                node.client.order(&node.token, &self.product).await?
            }
            other => other?,
        };
        let (client, token) = (node.client.clone(), node.token.clone());
        let errors = self.errors.clone();
        // The payment does not touch stock: the round's polling need not wait for it.
        tokio::spawn(async move {
            if let Err(e) = client.pay_cash(&token, &order).await {
                errors.add(format!("probe_{}", e.kind()));
            }
        });
        Ok(())
    }
}
