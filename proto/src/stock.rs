//! Stock as a bounded counter (DESIGN.md §3; the escrow construction of Balegas et al.,
//! "Extending eventually consistent cloud databases for enforcing numeric invariants",
//! SRDS 2015): replicas converge, and no interleaving of sells, transfers, partitions and
//! merges can take stock below zero, because each actor only consumes rights it holds.

use crdts::{CmRDT, Dot, VClock};
use serde::{Deserialize, Serialize};

use crate::ids::{ActorId, IdError};

/// A state-based CRDT.
///
/// `merge` must be
/// - commutative: `a ⊔ b == b ⊔ a`,
/// - associative: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`,
/// - idempotent: `a ⊔ a == a`,
///
/// so replicas that have seen the same updates, in any order, any number of times, are equal.
/// That is what lets the sync stream redeliver after a reconnect without harm.
pub trait Crdt {
    fn merge(&mut self, other: &Self);
}

/// Names one grow-only cell of a [`BoundedCounter`]. The actor that may raise the cell is
/// `Inc(a)`/`Dec(a)`'s `a` and `Xfer`'s `from`: nobody else ever writes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntryKey {
    /// Units actor `a` added (a delivery, or units a cancelled order released).
    Inc(ActorId),
    /// Units actor `a` sold.
    Dec(ActorId),
    /// Selling rights `from` handed to `to`.
    Xfer { from: ActorId, to: ActorId },
}

impl EntryKey {
    /// The key as three columns `(kind, actor, target)` — `inc`/`dec` with an empty target, or
    /// `xfer` with `actor` = from and `target` = to — the shape both sides store cells in.
    pub fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            EntryKey::Inc(a) => ("inc", a.as_str(), ""),
            EntryKey::Dec(a) => ("dec", a.as_str(), ""),
            EntryKey::Xfer { from, to } => ("xfer", from.as_str(), to.as_str()),
        }
    }

    /// The inverse of [`EntryKey::parts`].
    pub fn from_parts(kind: &str, actor: &str, target: &str) -> Result<EntryKey, IdError> {
        let actor = ActorId::parse(actor)?;
        Ok(match kind {
            "inc" => EntryKey::Inc(actor),
            "dec" => EntryKey::Dec(actor),
            _ => EntryKey::Xfer {
                from: actor,
                to: ActorId::parse(target)?,
            },
        })
    }
}

/// One grow-only cell and its value; this is the delta the sync stream ships. Applying it
/// takes the max with the local value, so replays and reordering are harmless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: EntryKey,
    pub value: u64,
}

/// Why a stock operation was refused. Every refusal leaves the counter unchanged.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StockError {
    #[error("quantity must be positive")]
    ZeroQuantity,
    #[error("requested {requested} but only {rights} may be sold here (global stock {global})")]
    Insufficient {
        requested: u64,
        rights: i64,
        global: i64,
    },
    #[error("cannot transfer rights to oneself")]
    SelfTransfer,
    #[error("quantity out of range")]
    Overflow,
}

/// The stock of one product.
///
/// Three grow-only maps, each a `crdts::VClock` (actor → u64, merged by pointwise max). That
/// is exactly the state inside `crdts::GCounter`, used directly because `GCounter` in crdts
/// 7.3 keeps its map private: it can neither report one actor's value (needed for `rights`,
/// `sold`, `entries`) nor be set to a received value except through `inc_many`, whose
/// addition is unchecked. `VClock::apply` is the max rule we need, and its map is public.
///
/// Invariant: no cell holds 0 (`apply` only inserts larger values), so derived equality is
/// equality of state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct BoundedCounter {
    inc: VClock<ActorId>,
    dec: VClock<ActorId>,
    xfer: VClock<(ActorId, ActorId)>,
}

/// Clamp a wide intermediate into the i64 the API reports. Reaching the clamp needs more
/// than 2^63 units in the counter, which no valid history produces, but a hostile peer could
/// send such cells and this must not panic.
fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl BoundedCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a counter by max-merging every entry (duplicates and zeros are fine).
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut counter = Self::new();
        for entry in entries {
            counter.apply(&entry);
        }
        counter
    }

    /// Every non-zero cell, sorted by key: the full state, e.g. for storage or a snapshot.
    pub fn entries(&self) -> Vec<Entry> {
        let inc = self.inc.dots.iter().map(|(a, &value)| Entry {
            key: EntryKey::Inc(a.clone()),
            value,
        });
        let dec = self.dec.dots.iter().map(|(a, &value)| Entry {
            key: EntryKey::Dec(a.clone()),
            value,
        });
        let xfer = self.xfer.dots.iter().map(|((from, to), &value)| Entry {
            key: EntryKey::Xfer {
                from: from.clone(),
                to: to.clone(),
            },
            value,
        });
        // Each map iterates in key order and the variants order Inc < Dec < Xfer, so the
        // chain is already sorted by `EntryKey`.
        inc.chain(dec).chain(xfer).collect()
    }

    /// Max-merges one cell. Returns whether the state changed, so a replayed or stale delta
    /// is recognisably a no-op.
    pub fn apply(&mut self, entry: &Entry) -> bool {
        match &entry.key {
            EntryKey::Inc(a) => raise(&mut self.inc, a, entry.value),
            EntryKey::Dec(a) => raise(&mut self.dec, a, entry.value),
            EntryKey::Xfer { from, to } => {
                raise(&mut self.xfer, &(from.clone(), to.clone()), entry.value)
            }
        }
    }

    /// Global stock: Σ inc − Σ dec.
    ///
    /// Never negative on a replica whose state came from whole-state merges. A replica fed
    /// single cells out of causal order (a `Dec` before the `Inc` it consumed) can see a
    /// transiently negative value; show such a value as 0.
    pub fn global(&self) -> i64 {
        clamp_i64(self.global_wide())
    }

    fn global_wide(&self) -> i128 {
        sum(self.inc.dots.values()) - sum(self.dec.dots.values())
    }

    /// Selling rights of `actor`: inc[a] − dec[a] + Σx xfer[x→a] − Σy xfer[a→y].
    ///
    /// Exact at the actor's own replica (it wrote every term that subtracts); elsewhere it
    /// may lag behind.
    pub fn rights(&self, actor: &ActorId) -> i64 {
        clamp_i64(self.rights_wide(actor))
    }

    fn rights_wide(&self, actor: &ActorId) -> i128 {
        let mut rights = i128::from(self.inc.get(actor)) - i128::from(self.dec.get(actor));
        for ((from, to), &value) in &self.xfer.dots {
            // A self-transfer cell (only a buggy or hostile peer makes one) adds and
            // subtracts the same amount, so it is harmless and needs no special case.
            if to == actor {
                rights += i128::from(value);
            }
            if from == actor {
                rights -= i128::from(value);
            }
        }
        rights
    }

    /// Units `actor` has sold: dec[a].
    pub fn sold(&self, actor: &ActorId) -> u64 {
        self.dec.get(actor)
    }

    /// Units `actor` has added: inc[a].
    pub fn received(&self, actor: &ActorId) -> u64 {
        self.inc.get(actor)
    }

    /// inc[a] += qty: a delivery, or units a cancelled order released. Returns the new cell.
    pub fn add(&mut self, actor: &ActorId, qty: u64) -> Result<Entry, StockError> {
        let value = grown(self.inc.get(actor), qty)?;
        let entry = Entry {
            key: EntryKey::Inc(actor.clone()),
            value,
        };
        self.apply(&entry);
        Ok(entry)
    }

    /// dec[a] += qty, only if rights(a) ≥ qty. Returns the new cell.
    ///
    /// Must run at `actor`'s own replica: only there are its rights known exactly.
    pub fn sell(&mut self, actor: &ActorId, qty: u64) -> Result<Entry, StockError> {
        if qty == 0 {
            return Err(StockError::ZeroQuantity);
        }
        self.ensure_rights(actor, qty)?;
        let value = grown(self.dec.get(actor), qty)?;
        let entry = Entry {
            key: EntryKey::Dec(actor.clone()),
            value,
        };
        self.apply(&entry);
        Ok(entry)
    }

    /// xfer[from→to] += qty, only if rights(from) ≥ qty and from ≠ to. Returns the new cell.
    ///
    /// Must run at `from`'s own replica, for the same reason as [`BoundedCounter::sell`].
    pub fn transfer(
        &mut self,
        from: &ActorId,
        to: &ActorId,
        qty: u64,
    ) -> Result<Entry, StockError> {
        if qty == 0 {
            return Err(StockError::ZeroQuantity);
        }
        if from == to {
            return Err(StockError::SelfTransfer);
        }
        self.ensure_rights(from, qty)?;
        let cell = (from.clone(), to.clone());
        let value = grown(self.xfer.get(&cell), qty)?;
        let entry = Entry {
            key: EntryKey::Xfer {
                from: cell.0,
                to: cell.1,
            },
            value,
        };
        self.apply(&entry);
        Ok(entry)
    }

    fn ensure_rights(&self, actor: &ActorId, qty: u64) -> Result<(), StockError> {
        if self.rights_wide(actor) >= i128::from(qty) {
            Ok(())
        } else {
            Err(StockError::Insufficient {
                requested: qty,
                rights: self.rights(actor),
                global: self.global(),
            })
        }
    }
}

/// The raised value of a cell, checked before anything is written (all-or-nothing).
fn grown(current: u64, qty: u64) -> Result<u64, StockError> {
    if qty == 0 {
        return Err(StockError::ZeroQuantity);
    }
    current.checked_add(qty).ok_or(StockError::Overflow)
}

/// Max-applies one value to a grow-only map; true if it rose.
fn raise<A: Ord + Clone + std::fmt::Debug>(map: &mut VClock<A>, key: &A, value: u64) -> bool {
    if map.get(key) >= value {
        return false;
    }
    map.apply(Dot::new(key.clone(), value));
    true
}

fn sum<'a>(values: impl Iterator<Item = &'a u64>) -> i128 {
    // Overflowing i128 would take more than 2^63 cells of up to 2^64 - 1 each.
    values.map(|&v| i128::from(v)).sum()
}

impl Crdt for BoundedCounter {
    fn merge(&mut self, other: &Self) {
        for (a, &value) in &other.inc.dots {
            raise(&mut self.inc, a, value);
        }
        for (a, &value) in &other.dec.dots {
            raise(&mut self.dec, a, value);
        }
        for (cell, &value) in &other.xfer.dots {
            raise(&mut self.xfer, cell, value);
        }
    }
}

impl From<Vec<Entry>> for BoundedCounter {
    fn from(entries: Vec<Entry>) -> Self {
        Self::from_entries(entries)
    }
}

impl From<BoundedCounter> for Vec<Entry> {
    fn from(counter: BoundedCounter) -> Self {
        counter.entries()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn entry_keys_round_trip_through_their_columns() {
        let a = ActorId::parse("store-1").unwrap();
        for key in [
            EntryKey::Inc(a.clone()),
            EntryKey::Dec(a.clone()),
            EntryKey::Xfer {
                from: a.clone(),
                to: ActorId::hub(),
            },
        ] {
            let (kind, actor, target) = key.parts();
            assert_eq!(EntryKey::from_parts(kind, actor, target).unwrap(), key);
        }
        assert!(EntryKey::from_parts("inc", "bad actor!", "").is_err());
    }

    use proptest::prelude::*;

    use super::*;

    fn actor(s: &str) -> ActorId {
        ActorId::parse(s).unwrap()
    }

    #[test]
    fn escrow_rules() {
        let (hub, n1) = (ActorId::hub(), actor("n1"));
        let mut c = BoundedCounter::new();
        assert_eq!(c.add(&hub, 10).map(|e| e.value), Ok(10));
        assert_eq!(c.global(), 10);
        assert_eq!(c.rights(&hub), 10);
        assert_eq!(c.rights(&n1), 0);

        c.transfer(&hub, &n1, 4).unwrap();
        assert_eq!((c.rights(&hub), c.rights(&n1), c.global()), (6, 4, 10));

        let sold = c.sell(&n1, 3).unwrap();
        assert_eq!(
            sold,
            Entry {
                key: EntryKey::Dec(n1.clone()),
                value: 3
            }
        );
        assert_eq!((c.rights(&n1), c.sold(&n1), c.global()), (1, 3, 7));
        assert_eq!(c.received(&hub), 10);

        // Refusals leave the counter untouched.
        let before = c.clone();
        assert_eq!(
            c.sell(&n1, 2),
            Err(StockError::Insufficient {
                requested: 2,
                rights: 1,
                global: 7
            })
        );
        assert_eq!(c.sell(&n1, 0), Err(StockError::ZeroQuantity));
        assert_eq!(c.add(&n1, 0), Err(StockError::ZeroQuantity));
        assert_eq!(c.transfer(&hub, &hub, 1), Err(StockError::SelfTransfer));
        assert!(matches!(
            c.transfer(&n1, &hub, 5),
            Err(StockError::Insufficient { .. })
        ));
        c.add(&n1, u64::MAX - 1).unwrap();
        let full = c.clone();
        assert_eq!(c.add(&n1, 2), Err(StockError::Overflow));
        assert_eq!(c, full);
        assert_ne!(c, before);
    }

    #[test]
    fn hostile_cells_do_not_panic() {
        let (a, b) = (actor("a"), actor("b"));
        let c = BoundedCounter::from_entries([
            Entry {
                key: EntryKey::Inc(a.clone()),
                value: u64::MAX,
            },
            Entry {
                key: EntryKey::Inc(b.clone()),
                value: u64::MAX,
            },
            Entry {
                key: EntryKey::Dec(b.clone()),
                value: u64::MAX,
            },
            Entry {
                key: EntryKey::Dec(a.clone()),
                value: 0,
            },
            Entry {
                key: EntryKey::Xfer {
                    from: a.clone(),
                    to: a.clone(),
                },
                value: 5,
            },
        ]);
        assert_eq!(c.global(), i64::MAX);
        assert_eq!(c.rights(&a), i64::MAX);
        assert_eq!(c.rights(&b), 0);
        assert_eq!(c.entries().len(), 4, "zero cells are not stored");
    }

    #[test]
    fn apply_is_max_and_reports_change() {
        let a = actor("a");
        let mut c = BoundedCounter::new();
        let e5 = c.add(&a, 5).unwrap();
        let e7 = c.add(&a, 2).unwrap();
        let mut replica = BoundedCounter::new();
        assert!(replica.apply(&e7));
        assert!(!replica.apply(&e5), "a stale delta is a no-op");
        assert!(!replica.apply(&e7), "a replayed delta is a no-op");
        assert_eq!(replica, c);
    }

    #[test]
    fn entries_are_sorted_and_serde_round_trips() {
        let (hub, n1) = (ActorId::hub(), actor("n1"));
        let mut c = BoundedCounter::new();
        c.add(&n1, 1).unwrap();
        c.add(&hub, 9).unwrap();
        c.transfer(&hub, &n1, 2).unwrap();
        c.sell(&n1, 1).unwrap();
        let entries = c.entries();
        assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
        assert_eq!(BoundedCounter::from_entries(entries.clone()), c);

        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json[3],
            serde_json::json!({"key": {"Xfer": {"from": "hub", "to": "n1"}}, "value": 2})
        );
        assert_eq!(
            json[0],
            serde_json::json!({"key": {"Inc": "hub"}, "value": 9})
        );
        assert_eq!(serde_json::from_value::<BoundedCounter>(json).unwrap(), c);
    }

    const ACTORS: [&str; 4] = ["hub", "n1", "n2", "n3"];

    fn arb_key() -> impl Strategy<Value = EntryKey> {
        (0..3u8, 0..ACTORS.len(), 0..ACTORS.len()).prop_map(|(kind, i, j)| match kind {
            0 => EntryKey::Inc(actor(ACTORS[i])),
            1 => EntryKey::Dec(actor(ACTORS[i])),
            _ => EntryKey::Xfer {
                from: actor(ACTORS[i]),
                to: actor(ACTORS[j]),
            },
        })
    }

    fn arb_counter() -> impl Strategy<Value = BoundedCounter> {
        proptest::collection::vec(
            (arb_key(), 0..50u64).prop_map(|(key, value)| Entry { key, value }),
            0..16,
        )
        .prop_map(BoundedCounter::from_entries)
    }

    fn merged(a: &BoundedCounter, b: &BoundedCounter) -> BoundedCounter {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    /// One step of a schedule: replica `at` acts as its own actor, or pulls another's state.
    #[derive(Debug, Clone)]
    enum Op {
        Add { at: usize, qty: u64 },
        Sell { at: usize, qty: u64 },
        Transfer { at: usize, to: usize, qty: u64 },
        Merge { from: usize, into: usize },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let r = 0..ACTORS.len();
        prop_oneof![
            1 => (r.clone(), 0..10u64).prop_map(|(at, qty)| Op::Add { at, qty }),
            3 => (r.clone(), 0..6u64).prop_map(|(at, qty)| Op::Sell { at, qty }),
            2 => (r.clone(), r.clone(), 0..8u64)
                .prop_map(|(at, to, qty)| Op::Transfer { at, to, qty }),
            2 => (r.clone(), r).prop_map(|(from, into)| Op::Merge { from, into }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn merge_is_commutative(a in arb_counter(), b in arb_counter()) {
            prop_assert_eq!(merged(&a, &b).entries(), merged(&b, &a).entries());
        }

        #[test]
        fn merge_is_associative(a in arb_counter(), b in arb_counter(), c in arb_counter()) {
            prop_assert_eq!(
                merged(&merged(&a, &b), &c).entries(),
                merged(&a, &merged(&b, &c)).entries()
            );
        }

        #[test]
        fn merge_is_idempotent(a in arb_counter(), b in arb_counter()) {
            prop_assert_eq!(merged(&a, &a).entries(), a.entries());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b).entries(), ab.entries());
        }

        #[test]
        fn no_schedule_oversells_and_all_replicas_converge(
            ops in proptest::collection::vec(arb_op(), 0..80)
        ) {
            let actors: Vec<ActorId> = ACTORS.iter().map(|a| actor(a)).collect();
            let mut replicas = vec![BoundedCounter::new(); actors.len()];
            // Ground truth from successful operations, across all replicas: the real
            // oversell check, since no single replica sees every sale while partitioned.
            let (mut added, mut sold) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Add { at, qty } => {
                        if replicas[at].add(&actors[at], qty).is_ok() {
                            added += qty;
                        }
                    }
                    Op::Sell { at, qty } => {
                        if replicas[at].sell(&actors[at], qty).is_ok() {
                            sold += qty;
                        }
                    }
                    Op::Transfer { at, to, qty } => {
                        let _ = replicas[at].transfer(&actors[at], &actors[to], qty);
                    }
                    Op::Merge { from, into } => {
                        let source = replicas[from].clone();
                        replicas[into].merge(&source);
                    }
                }
                prop_assert!(sold <= added, "sold {} of {} added", sold, added);
                for (owner, replica) in actors.iter().zip(&replicas) {
                    prop_assert!(replica.global() >= 0, "{:?}", replica);
                    prop_assert!(replica.rights(owner) >= 0, "{} in {:?}", owner, replica);
                }
            }

            let mut all = BoundedCounter::new();
            for replica in &replicas {
                all.merge(replica);
            }
            for replica in &mut replicas {
                replica.merge(&all);
            }
            for replica in &replicas {
                prop_assert_eq!(replica.entries(), all.entries());
            }
            let total = i64::try_from(added - sold).unwrap();
            prop_assert_eq!(all.global(), total);
            let rights: i64 = actors.iter().map(|a| all.rights(a)).sum();
            prop_assert_eq!(rights, total, "Σ rights = global stock");
        }
    }
}
