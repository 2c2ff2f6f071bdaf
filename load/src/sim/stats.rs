//! What each simulated store counts (lock-free: the store's task writes, anyone reads), and
//! snapshots of the whole fleet from which rates per second follow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The `Change.entity` names the hub sends, in a fixed order; anything else counts as `other`.
pub const ENTITIES: [&str; 11] = [
    "user",
    "category",
    "product",
    "stock",
    "stock_others",
    "order",
    "payment",
    "command",
    "payment_outcome",
    "refund_outcome",
    "other",
];

fn entity_index(entity: &str) -> usize {
    ENTITIES
        .iter()
        .position(|e| *e == entity)
        .unwrap_or(ENTITIES.len() - 1)
}

/// One store's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: [AtomicU64; ENTITIES.len()],
    /// Change entries sent to the hub (sales, hand-backs).
    pub sent: AtomicU64,
    /// Units sold (`dec[self]` raised).
    pub sales: AtomicU64,
    /// Sale attempts without rights for any product.
    pub no_rights: AtomicU64,
    pub top_ups: AtomicU64,
    /// Sessions that got as far as `Welcome`.
    pub sessions: AtomicU64,
    pub connected: AtomicBool,
    /// When the latest session got its `Welcome`: µs since the fleet's epoch, plus one (0: never).
    pub welcome_us: AtomicU64,
}

impl Counters {
    pub fn received(&self, entity: &str, n: u64) {
        self.received[entity_index(entity)].fetch_add(n, Ordering::Relaxed);
    }

    fn received_counts(&self) -> EntityCounts {
        EntityCounts(std::array::from_fn(|i| {
            self.received[i].load(Ordering::Relaxed)
        }))
    }

    pub fn snapshot(&self, id: &str, epoch: Instant) -> StoreSnapshot {
        let welcome = self.welcome_us.load(Ordering::Acquire);
        StoreSnapshot {
            id: id.to_string(),
            connected: self.connected.load(Ordering::Acquire),
            sessions: self.sessions.load(Ordering::Acquire),
            last_welcome: (welcome > 0).then(|| epoch + Duration::from_micros(welcome - 1)),
            received: self.received_counts(),
            sent: self.sent.load(Ordering::Relaxed),
            sales: self.sales.load(Ordering::Relaxed),
            no_rights: self.no_rights.load(Ordering::Relaxed),
            top_ups: self.top_ups.load(Ordering::Relaxed),
        }
    }
}

/// Entries received, by entity (in [`ENTITIES`] order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityCounts(pub [u64; ENTITIES.len()]);

impl EntityCounts {
    pub fn get(&self, entity: &str) -> u64 {
        self.0[entity_index(entity)]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Only the entities seen at all, by name.
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        ENTITIES
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(e, n)| (*e, n))
            .collect()
    }
}

/// One store at one moment.
#[derive(Clone, Debug)]
pub struct StoreSnapshot {
    pub id: String,
    pub connected: bool,
    pub sessions: u64,
    pub last_welcome: Option<Instant>,
    pub received: EntityCounts,
    pub sent: u64,
    pub sales: u64,
    pub no_rights: u64,
    pub top_ups: u64,
}

/// Every store at one moment.
#[derive(Clone, Debug)]
pub struct FleetSnapshot {
    pub at: Instant,
    pub stores: Vec<StoreSnapshot>,
}

/// What one store received and sent per second between two snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct StoreRates {
    pub id: String,
    /// Entries received per second, by entity (only entities seen).
    pub received_per_sec: BTreeMap<&'static str, f64>,
    pub received_total_per_sec: f64,
    pub sent_per_sec: f64,
}

impl FleetSnapshot {
    pub fn connected(&self) -> usize {
        self.stores.iter().filter(|s| s.connected).count()
    }

    pub fn received(&self) -> EntityCounts {
        let mut sum = EntityCounts::default();
        for s in &self.stores {
            for (a, b) in sum.0.iter_mut().zip(s.received.0) {
                *a += b;
            }
        }
        sum
    }

    pub fn sent(&self) -> u64 {
        self.stores.iter().map(|s| s.sent).sum()
    }

    pub fn sales(&self) -> u64 {
        self.stores.iter().map(|s| s.sales).sum()
    }

    /// Per store (matched by id), the rates from `earlier` to this snapshot.
    pub fn rates_since(&self, earlier: &FleetSnapshot) -> Vec<StoreRates> {
        let secs = self
            .at
            .saturating_duration_since(earlier.at)
            .as_secs_f64()
            .max(1e-9);
        let before: BTreeMap<&str, &StoreSnapshot> =
            earlier.stores.iter().map(|s| (s.id.as_str(), s)).collect();
        self.stores
            .iter()
            .map(|now| {
                let then = before.get(now.id.as_str());
                let mut per = BTreeMap::new();
                let mut total = 0u64;
                for (i, entity) in ENTITIES.iter().enumerate() {
                    let d = now.received.0[i] - then.map_or(0, |t| t.received.0[i]);
                    total += d;
                    if d > 0 {
                        per.insert(*entity, d as f64 / secs);
                    }
                }
                StoreRates {
                    id: now.id.clone(),
                    received_per_sec: per,
                    received_total_per_sec: total as f64 / secs,
                    sent_per_sec: (now.sent - then.map_or(0, |t| t.sent)) as f64 / secs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_store_and_entity() {
        let epoch = Instant::now();
        let c = Counters::default();
        let a = FleetSnapshot {
            at: epoch,
            stores: vec![c.snapshot("s1", epoch)],
        };
        c.received("stock_others", 20);
        c.received("stock", 2);
        c.received("something_new", 1);
        c.sent.fetch_add(4, Ordering::Relaxed);
        let b = FleetSnapshot {
            at: epoch + Duration::from_secs(2),
            stores: vec![c.snapshot("s1", epoch)],
        };
        let r = &b.rates_since(&a)[0];
        assert_eq!(r.received_per_sec["stock_others"], 10.0);
        assert_eq!(r.received_per_sec["stock"], 1.0);
        assert_eq!(r.received_per_sec["other"], 0.5);
        assert_eq!(r.received_total_per_sec, 11.5);
        assert_eq!(r.sent_per_sec, 2.0);
        assert_eq!(b.received().get("stock_others"), 20);
    }
}
