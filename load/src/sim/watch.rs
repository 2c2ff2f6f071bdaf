//! Watching one product's global stock across the fleet: how long after a sale each store's
//! view (its own net plus the `stock_others` the hub sent it) reflects the sale.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Armed with a target: every store asked to watch notes when it first sees the product's
/// global stock at or below it. Stores call [`GlobalWatch::observe`] on every update of that
/// product, which costs one atomic load while the view is above the target.
#[derive(Debug)]
pub struct GlobalWatch {
    product: String,
    /// `i64::MIN` while disarmed.
    target: AtomicI64,
    round: Mutex<Round>,
}

#[derive(Debug, Default)]
struct Round {
    /// Per store index: whether it watches this round, and when it saw the target.
    watching: Vec<bool>,
    seen: Vec<Option<Instant>>,
    remaining: usize,
}

impl GlobalWatch {
    pub fn new(product: impl Into<String>) -> GlobalWatch {
        GlobalWatch {
            product: product.into(),
            target: AtomicI64::new(i64::MIN),
            round: Mutex::new(Round::default()),
        }
    }

    pub fn product(&self) -> &str {
        &self.product
    }

    /// Starts a round: each store in `observers` (fleet indexes) is to see a global ≤ `target`.
    /// Arm before the sale, so no early sighting is missed.
    pub fn arm(&self, target: i64, stores: usize, observers: &[usize]) {
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        round.watching = vec![false; stores];
        round.seen = vec![None; stores];
        round.remaining = 0;
        for &i in observers {
            if i < stores && !round.watching[i] {
                round.watching[i] = true;
                round.remaining += 1;
            }
        }
        self.target.store(target, Ordering::Release);
    }

    /// Observers that have not seen the target yet.
    pub fn remaining(&self) -> usize {
        self.round
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remaining
    }

    /// Ends the round: for each observer, the time from `sale` until it saw the target (`None`:
    /// not seen).
    pub fn disarm(&self, sale: Instant) -> Vec<(usize, Option<Duration>)> {
        self.target.store(i64::MIN, Ordering::Release);
        let round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        round
            .watching
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| (i, round.seen[i].map(|t| t.saturating_duration_since(sale))))
            .collect()
    }

    /// Store `idx` now sees the product's global stock as `view`.
    pub(crate) fn observe(&self, idx: usize, view: i64) {
        let target = self.target.load(Ordering::Acquire);
        if target == i64::MIN || view > target {
            return;
        }
        let now = Instant::now();
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        if round.watching.get(idx) == Some(&true) && round.seen[idx].is_none() {
            round.seen[idx] = Some(now);
            round.remaining -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_armed_observers_at_or_below_the_target_count() {
        let w = GlobalWatch::new("p");
        w.observe(0, 1); // disarmed: ignored
        let sale = Instant::now();
        w.arm(99, 3, &[0, 2]);
        assert_eq!(w.remaining(), 2);
        w.observe(0, 100); // above the target
        w.observe(1, 99); // not an observer
        w.observe(2, 98);
        w.observe(2, 97); // counted once
        assert_eq!(w.remaining(), 1);
        let out = w.disarm(sale);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, 0);
        assert!(out[0].1.is_none());
        assert!(out[1].1.is_some());
        w.observe(0, 1); // disarmed again
    }
}
