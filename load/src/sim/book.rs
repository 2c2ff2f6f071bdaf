//! A simulated store's replica: its stock cells per product, the others' net stock the hub
//! reports, its change log (what the hub has not acknowledged), and the rules a store follows:
//! it sells only within its rights, hands rights back when asked, and asks for a top-up when
//! it has none.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::BoundedCounter;
use edgecart_proto::sync::{Command, ProductPayload, StockOthersPayload, StockPayload, entity};
use rand::Rng;
use rand::seq::IteratorRandom;

/// Unacknowledged own changes kept for re-sending; beyond this a store stops selling (a real
/// node's log is on disk; this one is in memory).
pub const MAX_UNACKED: usize = 10_000;

pub(crate) struct Book {
    me: ActorId,
    clock: Clock,
    cells: HashMap<String, BoundedCounter>,
    /// Per product: (version, others' net) of the newest `stock_others`.
    others: HashMap<String, (String, i64)>,
    archived: HashSet<String>,
    exclude: Arc<HashSet<String>>,
    /// Newest own change-log sequence.
    pub seq: i64,
    /// Own changes the hub has not acknowledged, oldest first.
    pub unacked: VecDeque<pb::Change>,
    /// Highest hub change sequence applied.
    pub hub_cursor: i64,
    commands_done: HashSet<String>,
    /// An open top-up request: (request id, when).
    pub top_up: Option<(String, std::time::Instant)>,
}

/// What applying one hub entry asks of the store.
pub(crate) enum Effect {
    None,
    /// The product's global stock as this store now sees it.
    Global(String, i64),
    /// An own change to send (a hand-back).
    Send(pb::Change),
}

impl Book {
    pub fn new(me: ActorId, exclude: Arc<HashSet<String>>) -> Book {
        Book {
            clock: Clock::new(me.clone()),
            me,
            cells: HashMap::new(),
            others: HashMap::new(),
            archived: HashSet::new(),
            exclude,
            seq: 0,
            unacked: VecDeque::new(),
            hub_cursor: 0,
            commands_done: HashSet::new(),
            top_up: None,
        }
    }

    /// The product's global stock as this store knows it: own net plus the others' net.
    pub fn global(&self, product: &str) -> Option<i64> {
        let (_, others) = self.others.get(product)?;
        let own = self
            .cells
            .get(product)
            .map_or(0, |c| c.received(&self.me) as i64 - c.sold(&self.me) as i64);
        Some(own + others)
    }

    pub fn rights(&self, product: &str) -> i64 {
        self.cells.get(product).map_or(0, |c| c.rights(&self.me))
    }

    /// Applies one hub entry (idempotent, like a node: cells max-merge, `stock_others` newest
    /// version wins, commands once by id). A malformed entry is an `Err` with its entity.
    pub fn apply(&mut self, change: &pb::Change) -> Result<Effect, &'static str> {
        self.hub_cursor = self.hub_cursor.max(change.seq);
        match change.entity.as_str() {
            entity::STOCK => {
                let p: StockPayload =
                    serde_json::from_str(&change.payload_json).map_err(|_| "stock")?;
                self.cells
                    .entry(p.product_id.clone())
                    .or_default()
                    .apply(&p.entry);
                Ok(self.global_effect(p.product_id))
            }
            entity::STOCK_OTHERS => {
                let p: StockOthersPayload =
                    serde_json::from_str(&change.payload_json).map_err(|_| "stock_others")?;
                let newer = self
                    .others
                    .get(&p.product_id)
                    .is_none_or(|(v, _)| change.version.as_str() > v.as_str());
                if newer {
                    self.others
                        .insert(p.product_id.clone(), (change.version.clone(), p.others_net));
                }
                Ok(self.global_effect(p.product_id))
            }
            entity::PRODUCT => {
                let p: ProductPayload =
                    serde_json::from_str(&change.payload_json).map_err(|_| "product")?;
                if p.status == "active" {
                    self.archived.remove(&p.id);
                } else {
                    self.archived.insert(p.id);
                }
                Ok(Effect::None)
            }
            entity::COMMAND => {
                let c: Command =
                    serde_json::from_str(&change.payload_json).map_err(|_| "command")?;
                if !self.commands_done.insert(c.id().to_string()) {
                    return Ok(Effect::None);
                }
                if self.commands_done.len() > 4096 {
                    // Replays come right after a reconnect, not thousands of commands later.
                    self.commands_done.clear();
                }
                match c {
                    Command::HandBack {
                        product_id,
                        quantity,
                        ..
                    } => Ok(self
                        .hand_back(&product_id, quantity)
                        .map_or(Effect::None, Effect::Send)),
                    // A simulated store takes no orders, so it has none to move.
                    Command::OrderStatus { .. } => Ok(Effect::None),
                }
            }
            _ => Ok(Effect::None),
        }
    }

    fn global_effect(&self, product: String) -> Effect {
        match self.global(&product) {
            Some(g) => Effect::Global(product, g),
            None => Effect::None,
        }
    }

    /// xfer[self→hub] += min(quantity, rights).
    fn hand_back(&mut self, product: &str, quantity: u64) -> Option<pb::Change> {
        let rights = self.rights(product);
        let q = quantity.min(rights.max(0) as u64);
        if q == 0 {
            return None;
        }
        let hub = ActorId::hub();
        let entry = self
            .cells
            .get_mut(product)?
            .transfer(&self.me, &hub, q)
            .ok()?;
        Some(self.record(product, entry))
    }

    /// Sells one unit of `product` if this store holds the right to.
    pub fn sell(&mut self, product: &str) -> Option<pb::Change> {
        if self.unacked.len() >= MAX_UNACKED {
            return None;
        }
        let entry = self.cells.get_mut(product)?.sell(&self.me, 1).ok()?;
        Some(self.record(product, entry))
    }

    /// Sells one unit of a random product this store may sell (not excluded, not archived,
    /// rights ≥ 1).
    pub fn sell_any(&mut self, rng: &mut impl Rng) -> Option<pb::Change> {
        let product = self
            .cells
            .iter()
            .filter(|(p, c)| {
                !self.exclude.contains(*p) && !self.archived.contains(*p) && c.rights(&self.me) > 0
            })
            .map(|(p, _)| p.clone())
            .choose(rng)?;
        self.sell(&product)
    }

    /// A product worth asking a top-up for (one this store knows and may sell), if any.
    pub fn top_up_candidate(&self, rng: &mut impl Rng) -> Option<String> {
        self.others
            .keys()
            .chain(self.cells.keys())
            .filter(|p| !self.exclude.contains(*p) && !self.archived.contains(*p))
            .choose(rng)
            .cloned()
    }

    fn record(&mut self, product: &str, entry: edgecart_proto::stock::Entry) -> pb::Change {
        self.seq += 1;
        let payload = StockPayload {
            product_id: product.to_string(),
            entry,
        };
        let change = pb::Change {
            seq: self.seq,
            entity: entity::STOCK.to_string(),
            entity_id: product.to_string(),
            version: self.clock.now().to_string(),
            payload_json: serde_json::to_string(&payload).unwrap_or_default(),
            ..Default::default()
        };
        self.unacked.push_back(change.clone());
        change
    }

    /// The hub durably applied own changes up to `seq`.
    pub fn acked(&mut self, seq: i64) {
        while self.unacked.front().is_some_and(|c| c.seq <= seq) {
            self.unacked.pop_front();
        }
    }

    /// A new session's `Welcome`: what the hub already has is dropped; sequence numbers go on
    /// after it (so a re-synced store's new changes are not taken for replays).
    pub fn welcomed(&mut self, node_cursor: i64) {
        self.acked(node_cursor);
        self.seq = self.seq.max(node_cursor);
    }
}

#[cfg(test)]
mod tests {
    use edgecart_proto::stock::{Entry, EntryKey};

    use super::*;

    fn me() -> ActorId {
        ActorId::parse("sim-1").unwrap()
    }

    fn change(seq: i64, entity: &str, version: &str, payload: String) -> pb::Change {
        pb::Change {
            seq,
            entity: entity.into(),
            entity_id: "p".into(),
            version: version.into(),
            payload_json: payload,
            ..Default::default()
        }
    }

    fn grant(seq: i64, value: u64) -> pb::Change {
        let p = StockPayload {
            product_id: "p".into(),
            entry: Entry {
                key: EntryKey::Xfer {
                    from: ActorId::hub(),
                    to: me(),
                },
                value,
            },
        };
        change(seq, "stock", "v", serde_json::to_string(&p).unwrap())
    }

    #[test]
    fn sells_only_within_its_rights_and_resends_until_acked() {
        let mut b = Book::new(me(), Arc::default());
        assert!(b.sell("p").is_none(), "no rights yet");
        b.apply(&grant(1, 2)).unwrap();
        let s1 = b.sell("p").unwrap();
        let s2 = b.sell("p").unwrap();
        assert!(b.sell("p").is_none(), "two units of rights, two sales");
        assert_eq!((s1.seq, s2.seq), (1, 2));
        assert!(
            s2.payload_json.contains("\"value\":2"),
            "{}",
            s2.payload_json
        );
        assert_eq!(b.unacked.len(), 2);
        b.acked(1);
        assert_eq!(b.unacked.len(), 1);
        b.welcomed(5);
        assert!(b.unacked.is_empty());
        assert_eq!(b.seq, 5);
        assert_eq!(b.hub_cursor, 1);
    }

    #[test]
    fn global_is_own_net_plus_the_newest_others() {
        let mut b = Book::new(me(), Arc::default());
        let others = |n: i64| {
            serde_json::to_string(&StockOthersPayload {
                product_id: "p".into(),
                others_net: n,
            })
            .unwrap()
        };
        assert!(b.global("p").is_none());
        b.apply(&change(1, "stock_others", "0002", others(100)))
            .unwrap();
        b.apply(&change(2, "stock_others", "0001", others(50)))
            .unwrap(); // older: ignored
        b.apply(&grant(3, 10)).unwrap();
        assert_eq!(b.global("p"), Some(100));
        b.sell("p").unwrap();
        assert_eq!(b.global("p"), Some(99));
    }

    #[test]
    fn hands_back_at_most_its_rights_once_per_command() {
        let mut b = Book::new(me(), Arc::default());
        b.apply(&grant(1, 3)).unwrap();
        let cmd = serde_json::to_string(&Command::HandBack {
            id: "c1".into(),
            product_id: "p".into(),
            quantity: 10,
        })
        .unwrap();
        let Effect::Send(c) = b.apply(&change(2, "command", "v", cmd.clone())).unwrap() else {
            panic!("expected a hand-back");
        };
        assert!(c.payload_json.contains("\"value\":3"), "{}", c.payload_json);
        assert_eq!(b.rights("p"), 0);
        assert!(matches!(
            b.apply(&change(2, "command", "v", cmd)).unwrap(),
            Effect::None
        ));
        assert!(b.apply(&change(3, "stock", "v", "{".into())).is_err());
    }
}
