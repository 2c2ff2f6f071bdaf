//! Global stock figures for display, in memory, and the per-store digests made of them.
//!
//! A store shows `global = its own net + the others' net` and hears the others' net of a
//! product from the hub (`stock_others`). Sending an entry to every store at every change costs
//! stores × changes; instead each store's stream sends a digest every [`period`] with one entry
//! per product whose figure changed since that store's last digest, so what a store receives is
//! bounded by what changed, whoever sold it.
//!
//! The figures need only the `inc` and `dec` cells (global = Σ inc − Σ dec; a store's own net =
//! inc[store] − dec[store]; transfers move rights, not stock). They are kept here and merged by
//! max, like the database's cells, so the copy may be refreshed from any source in any order — a
//! committed batch's grown cells, a re-read of a product — and ends equal to the database.
//! Memory: two integers per (product, store) that has such a cell.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgecart_proto::stock::{Entry, EntryKey};

/// A product's figures.
#[derive(Default)]
struct Product {
    id: Arc<str>,
    global: i64,
    inc: HashMap<u32, u64>,
    dec: HashMap<u32, u64>,
    /// When the global figure last changed (see `Inner::tick`).
    tick: u64,
}

#[derive(Default)]
struct Inner {
    index: HashMap<Arc<str>, u32>,
    products: Vec<Product>,
    actors: HashMap<Arc<str>, u32>,
    /// Bumped at every change of a figure.
    tick: u64,
    /// Each product once, under the tick of its last change.
    changed: BTreeMap<u64, u32>,
}

impl Inner {
    fn product(&mut self, id: &str) -> u32 {
        if let Some(i) = self.index.get(id) {
            return *i;
        }
        let id: Arc<str> = id.into();
        let i = self.products.len() as u32;
        self.products.push(Product {
            id: id.clone(),
            ..Default::default()
        });
        self.index.insert(id, i);
        i
    }

    fn actor(&mut self, id: &str) -> u32 {
        let next = self.actors.len() as u32;
        *self.actors.entry(id.into()).or_insert(next)
    }

    /// Max-merges one cell; true if a figure changed.
    fn merge(&mut self, product: &str, entry: &Entry) -> bool {
        let (actor, inc) = match &entry.key {
            EntryKey::Inc(a) => (a, true),
            EntryKey::Dec(a) => (a, false),
            EntryKey::Xfer { .. } => return false,
        };
        let (p, a) = (self.product(product), self.actor(actor.as_str()));
        let pr = &mut self.products[p as usize];
        let cells = if inc { &mut pr.inc } else { &mut pr.dec };
        let cell = cells.entry(a).or_insert(0);
        if entry.value <= *cell {
            return false;
        }
        let grew = i64::try_from(entry.value - *cell).unwrap_or(i64::MAX);
        *cell = entry.value;
        pr.global = if inc {
            pr.global.saturating_add(grew)
        } else {
            pr.global.saturating_sub(grew)
        };
        self.tick += 1;
        let old = std::mem::replace(&mut pr.tick, self.tick);
        self.changed.remove(&old);
        self.changed.insert(self.tick, p);
        true
    }

    fn others_net(&self, p: &Product, node: Option<u32>) -> i64 {
        let own = node.map_or(0, |n| {
            let inc = p.inc.get(&n).copied().unwrap_or(0);
            let dec = p.dec.get(&n).copied().unwrap_or(0);
            i64::try_from(inc).unwrap_or(i64::MAX) - i64::try_from(dec).unwrap_or(i64::MAX)
        });
        p.global.saturating_sub(own)
    }
}

/// The figures of every product that has stock cells (see the module doc).
#[derive(Default)]
pub struct Figures {
    // A std Mutex: held for map updates and one digest's arithmetic, never across an await.
    inner: Mutex<Inner>,
}

/// What a store's digest carries: `(product, others' net)`.
pub type DigestEntries = Vec<(Arc<str>, i64)>;

impl Figures {
    /// Max-merges `cells` (`(product, cell)`; transfers are ignored). Returns how many products'
    /// figures changed.
    pub fn merge<'a>(&self, cells: impl IntoIterator<Item = (&'a str, &'a Entry)>) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        cells
            .into_iter()
            .filter(|(product, entry)| inner.merge(product, entry))
            .count()
    }

    /// The entries of `node`'s next digest: every product whose figure changed after `since`
    /// (every product when `None`, e.g. the first digest of a session), with the net stock of
    /// every actor but `node`. Returns them and the position to pass as `since` next time.
    pub fn digest(&self, node: &str, since: Option<u64>) -> (DigestEntries, u64) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let me = inner.actors.get(node).copied();
        let entries = match since {
            None => inner
                .products
                .iter()
                .map(|p| (p.id.clone(), inner.others_net(p, me)))
                .collect(),
            Some(since) => inner
                .changed
                .range(since + 1..)
                .map(|(_, i)| {
                    let p = &inner.products[*i as usize];
                    (p.id.clone(), inner.others_net(p, me))
                })
                .collect(),
        };
        (entries, inner.tick)
    }

    /// Products known here.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .products
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Digests a hub sends per second at most, whatever the fleet's size: the period grows with
/// the number of connected stores.
pub const DIGESTS_PER_SECOND: usize = 1000;
/// The shortest period (a small fleet: figures as fresh as the old 100 ms coalescing).
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// The longest period (a fleet of [`DIGESTS_PER_SECOND`] stores or more): a store's figures are
/// then at most about a second behind.
pub const MAX_PERIOD: Duration = Duration::from_secs(1);

/// How often each store gets a digest with `connected` stores connected.
pub fn period(connected: usize) -> Duration {
    Duration::from_secs_f64(connected as f64 / DIGESTS_PER_SECOND as f64)
        .clamp(MIN_PERIOD, MAX_PERIOD)
}

/// Where in each period `node`'s digests fall, as a fraction of the period: spread by a hash of
/// its id, so a thousand stores do not all flush in the same instant.
pub fn phase(node: &str) -> f64 {
    // FNV-1a: stable across runs and releases (a store keeps its slot after a restart).
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % 1_000_003) as f64 / 1_000_003.0
}

/// The first instant after `now` that is `phase` into a period of length `period` counted from
/// `epoch`.
pub fn next_slot(
    epoch: tokio::time::Instant,
    now: tokio::time::Instant,
    period: Duration,
    phase: f64,
) -> tokio::time::Instant {
    let period_s = period.as_secs_f64();
    let offset = period_s * phase;
    let since = now.saturating_duration_since(epoch).as_secs_f64() - offset;
    let k = (since / period_s).floor() + 1.0;
    epoch + Duration::from_secs_f64((k * period_s + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use edgecart_proto::ids::ActorId;

    use super::*;

    fn cell(key: EntryKey, value: u64) -> Entry {
        Entry { key, value }
    }

    fn a(s: &str) -> ActorId {
        ActorId::parse(s).unwrap()
    }

    fn others(f: &Figures, node: &str) -> BTreeMap<String, i64> {
        f.digest(node, None)
            .0
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect()
    }

    #[test]
    fn others_net_is_the_global_stock_less_the_stores_own_and_merges_by_max() {
        let f = Figures::default();
        let delivery = cell(EntryKey::Inc(ActorId::hub()), 100);
        let sold_a = cell(EntryKey::Dec(a("a")), 7);
        let sold_b = cell(EntryKey::Dec(a("b")), 3);
        let rights = cell(
            EntryKey::Xfer {
                from: ActorId::hub(),
                to: a("a"),
            },
            50,
        );
        assert_eq!(
            f.merge([
                ("p", &delivery),
                ("p", &sold_a),
                ("p", &sold_b),
                ("p", &rights)
            ]),
            3
        );
        // Replays and older values change nothing.
        let older = cell(EntryKey::Dec(a("a")), 5);
        assert_eq!(f.merge([("p", &sold_a), ("p", &older)]), 0);
        assert_eq!(others(&f, "a")["p"], 100 - 3);
        assert_eq!(others(&f, "b")["p"], 100 - 7);
        assert_eq!(others(&f, "new-store")["p"], 90);
    }

    #[test]
    fn a_digest_carries_each_changed_product_once_and_only_what_changed_since() {
        let f = Figures::default();
        f.merge([("p", &cell(EntryKey::Inc(ActorId::hub()), 10))]);
        f.merge([("q", &cell(EntryKey::Inc(ActorId::hub()), 10))]);
        let (all, since) = f.digest("a", None);
        assert_eq!(all.len(), 2);
        assert!(f.digest("a", Some(since)).0.is_empty());
        for sold in 1..=5 {
            f.merge([("p", &cell(EntryKey::Dec(a("b")), sold))]);
        }
        let (changed, next) = f.digest("a", Some(since));
        assert_eq!(
            changed,
            vec![(Arc::from("p"), 5)],
            "one entry, the newest figure"
        );
        assert!(f.digest("a", Some(next)).0.is_empty());
    }

    #[test]
    fn slots_are_spread_over_the_period_and_always_ahead() {
        let epoch = tokio::time::Instant::now();
        let p = Duration::from_secs(1);
        let mut phases: Vec<f64> = (0..1000).map(|i| phase(&format!("store-{i:04}"))).collect();
        phases.sort_by(f64::total_cmp);
        // Every tenth of the period holds roughly a tenth of the stores.
        for d in 0..10 {
            let n = phases
                .iter()
                .filter(|x| **x >= d as f64 / 10.0 && **x < (d + 1) as f64 / 10.0)
                .count();
            assert!((50..=150).contains(&n), "decile {d}: {n}");
        }
        for now_ms in [0u64, 1, 250, 999, 1000, 12_345] {
            let now = epoch + Duration::from_millis(now_ms);
            let next = next_slot(epoch, now, p, 0.25);
            assert!(next > now && next <= now + p, "{now_ms}: {:?}", next - now);
            let into = (next - epoch).as_secs_f64() % 1.0;
            assert!((into - 0.25).abs() < 1e-6, "{now_ms}: {into}");
        }
        assert_eq!(period(10), MIN_PERIOD);
        assert_eq!(period(500), Duration::from_millis(500));
        assert_eq!(period(5000), MAX_PERIOD);
    }
}
