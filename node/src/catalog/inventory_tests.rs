//! The node's SQL stock path as it runs in production (`receive`, `consume`, `hand_back`,
//! `merge_remote`, `set_others` through the real writer on a real SQLite file with the
//! real migrations), checked against `BoundedCounter`, the model the CRDT property tests in
//! `edgecart-proto` prove: same cells, same rights, same global figure, at every step.

use edgecart_proto::hlc::Clock;
use edgecart_proto::sync::ProductPayload;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::db::{Db, DbConfig, Durability};

const ME: &str = "n1";

struct Store {
    _dir: tempfile::TempDir,
    db: Db,
    me: ActorId,
    clock: std::sync::Arc<Clock>,
}

async fn store(products: &[Uuid]) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&DbConfig {
        path: dir.path().join("edgecart-node.db"),
        durability: Durability::Normal,
        max_batch: 64,
        readers: 1,
    })
    .unwrap();
    let me = ActorId::parse(ME).unwrap();
    let clock = std::sync::Arc::new(Clock::new(me.clone()));
    let (m, c, ids) = (me.clone(), clock.clone(), products.to_vec());
    db.write(move |tx| {
        // What a start and a first connection to the hub do (not restored).
        remember_boot_cells(tx, &m, false)?;
        forget_boot_cells(tx)?;
        for id in ids {
            let p = ProductPayload {
                id: id.to_string(),
                name: format!("product {id}"),
                description: String::new(),
                price_amount: 100,
                currency: "USD".into(),
                category_id: None,
                status: "active".into(),
                created_at: 0,
                updated_at: 0,
            };
            super::super::store::apply_remote_product(tx, &p, &c.now().to_string())?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    Store {
        _dir: dir,
        db,
        me,
        clock,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn actor(s: &str) -> ActorId {
    ActorId::parse(s).unwrap()
}

impl Store {
    /// A local operation through the production function, as a request handler runs it.
    async fn local(&self, product: Uuid, op: Local) -> Result<(StockView, u64)> {
        let (me, version) = (self.me.clone(), self.clock.now());
        self.db
            .write(move |tx| {
                let ctx = StockCtx {
                    node: &me,
                    version: &version,
                    low_stock_threshold: 3,
                    restore_hold: false,
                };
                match op {
                    Local::Receive(q) => receive(tx, &ctx, product, q).map(|v| (v, q)),
                    Local::Sell(q) => consume(tx, &ctx, product, q).map(|v| (v, q)),
                    Local::HandBack(q) => {
                        let given = hand_back(tx, &ctx, product, q)?;
                        Ok((refresh(tx, &me, product)?, given))
                    }
                }
            })
            .await
    }

    /// Cells from the hub, merged in one transaction as a change batch is.
    async fn merge(&self, product: Uuid, cells: Vec<Entry>) -> Result<()> {
        let (me, clock) = (self.me.clone(), self.clock.clone());
        self.db
            .write(move |tx| {
                for e in &cells {
                    merge_remote(tx, &me, product, e, || clock.now())?;
                }
                Ok(())
            })
            .await
    }

    async fn others(&self, product: Uuid, net: i64, version: String) {
        let me = self.me.clone();
        self.db
            .write(move |tx| set_others(tx, &me, product, net, &version))
            .await
            .unwrap();
    }

    /// The stored counter and the derived `stock_levels` row.
    async fn state(&self, product: Uuid) -> (BoundedCounter, StockView) {
        self.db
            .read(move |c| {
                let counter = load_counter(c, product)?;
                let level = c
                    .query_row(
                        "SELECT available_here, global FROM stock_levels WHERE product_id = ?1",
                        [product.to_string()],
                        |r| {
                            Ok(StockView {
                                available_here: r.get(0)?,
                                global: r.get(1)?,
                            })
                        },
                    )
                    .optional()?
                    .unwrap_or(StockView {
                        available_here: 0,
                        global: 0,
                    });
                Ok::<_, Error>((counter, level))
            })
            .await
            .unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
enum Local {
    Receive(u64),
    Sell(u64),
    HandBack(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Local(Local),
    /// The hub grants `qty` more rights: `xfer[from→n1]` grows (from the hub, or another
    /// node's hand-over), and the new cell is sent.
    Grant {
        from: usize,
        qty: u64,
    },
    /// A cell sent earlier arrives again (a reconnect re-sends what was not acknowledged),
    /// or this node's own cell as the hub last saw it (a re-sync): stale, must change nothing.
    Redeliver(usize),
    /// The hub's figure for the other actors' net stock; `late` picks an older one.
    Others {
        net: i64,
        late: usize,
    },
}

const GRANTORS: [&str; 2] = ["hub", "n2"];

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..10u64).prop_map(|q| Op::Local(Local::Receive(q))),
        4 => (0..6u64).prop_map(|q| Op::Local(Local::Sell(q))),
        1 => (0..5u64).prop_map(|q| Op::Local(Local::HandBack(q))),
        3 => (0..GRANTORS.len(), 1..8u64).prop_map(|(from, qty)| Op::Grant { from, qty }),
        2 => (0..64usize).prop_map(Op::Redeliver),
        1 => (-20..40i64, 0..4usize).prop_map(|(net, late)| Op::Others { net, late }),
    ]
}

fn check(
    model: &BoundedCounter,
    others: i64,
    stored: &BoundedCounter,
    level: &StockView,
) -> Result<(), TestCaseError> {
    let me = actor(ME);
    prop_assert_eq!(stored.entries(), model.entries(), "cells");
    prop_assert_eq!(stored.rights(&me), model.rights(&me));
    prop_assert!(stored.rights(&me) >= 0, "negative rights: {:?}", stored);
    prop_assert_eq!(level.available_here, model.rights(&me).max(0));
    let own = model.received(&me) as i64 - model.sold(&me) as i64;
    prop_assert_eq!(level.global, (own + others).max(0));
    prop_assert!(level.global >= 0 && level.available_here >= 0);
    Ok(())
}

fn schedule(ops: Vec<Op>) -> Result<(), TestCaseError> {
    runtime().block_on(async move {
        let p = Uuid::new_v4();
        let s = store(&[p]).await;
        let me = actor(ME);
        let mut model = BoundedCounter::new();
        // Every cell that travelled (from the hub, or this node's own as sent), to redeliver.
        let mut sent: Vec<Entry> = Vec::new();
        let mut grants = [0u64; GRANTORS.len()];
        // The others' figures the hub sent, in version order; the newest one counts.
        let mut figures: Vec<(String, i64)> = Vec::new();
        let mut others = (String::new(), 0i64);
        for op in ops {
            match op {
                Op::Local(local) => {
                    let expected = match local {
                        Local::Receive(q) => model.add(&me, q).map(|_| q),
                        Local::Sell(q) => model.sell(&me, q).map(|_| q),
                        Local::HandBack(q) => {
                            let give = q.min(model.rights(&me).max(0) as u64);
                            if give > 0 {
                                model.transfer(&me, &ActorId::hub(), give).unwrap();
                            }
                            Ok(give)
                        }
                    };
                    let got = s.local(p, local).await;
                    prop_assert_eq!(
                        got.as_ref().ok().map(|(_, n)| *n),
                        expected.as_ref().ok().copied(),
                        "{:?}: {:?} vs {:?}",
                        local,
                        got,
                        expected
                    );
                    if let Ok((view, _)) = &got {
                        prop_assert_eq!(view.available_here, model.rights(&me).max(0));
                    }
                    sent.extend(
                        model
                            .entries()
                            .into_iter()
                            .filter(|e| e.key.parts().1 == ME),
                    );
                }
                Op::Grant { from, qty } => {
                    grants[from] += qty;
                    let cell = Entry {
                        key: EntryKey::Xfer {
                            from: actor(GRANTORS[from]),
                            to: me.clone(),
                        },
                        value: grants[from],
                    };
                    model.apply(&cell);
                    sent.push(cell.clone());
                    s.merge(p, vec![cell]).await.unwrap();
                }
                Op::Redeliver(i) => {
                    if sent.is_empty() {
                        continue;
                    }
                    let cell = sent[i % sent.len()].clone();
                    prop_assert!(!model.apply(&cell), "only stale cells are redelivered");
                    let before = s.state(p).await;
                    s.merge(p, vec![cell.clone(), cell]).await.unwrap();
                    let after = s.state(p).await;
                    prop_assert_eq!(
                        before.0.entries(),
                        after.0.entries(),
                        "a replay changed cells"
                    );
                    prop_assert_eq!(
                        (before.1.available_here, before.1.global),
                        (after.1.available_here, after.1.global),
                        "a replay changed the level"
                    );
                }
                Op::Others { net, late } => {
                    let version = if late < figures.len() {
                        figures[figures.len() - 1 - late].0.clone()
                    } else {
                        let v = s.clock.now().to_string();
                        figures.push((v.clone(), net));
                        v
                    };
                    let net = figures
                        .iter()
                        .find(|(v, _)| *v == version)
                        .map_or(net, |f| f.1);
                    if version > others.0 {
                        others = (version.clone(), net);
                    }
                    s.others(p, net, version).await;
                }
            }
            let (stored, level) = s.state(p).await;
            check(&model, others.1, &stored, &level)?;
        }
        Ok(())
    })
}

fn arb_remote_cells() -> impl Strategy<Value = Vec<Entry>> {
    let key = (0..4u8, 0..GRANTORS.len()).prop_map(|(k, i)| match k {
        // Transfers into this node, or its own cells echoed back by a re-sync.
        0 | 1 => EntryKey::Xfer {
            from: actor(GRANTORS[i]),
            to: actor(ME),
        },
        2 => EntryKey::Inc(actor(ME)),
        _ => EntryKey::Dec(actor(ME)),
    });
    proptest::collection::vec(
        (key, 1..50u64).prop_map(|(key, value)| Entry { key, value }),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random schedules of sales, deliveries, hand-backs, grants, redelivered and stale
    /// cells and out-of-order figures through the node's SQL: the stored counter is the
    /// model's, no sale exceeds the rights, nothing goes negative.
    #[test]
    fn sql_stock_follows_the_bounded_counter(ops in proptest::collection::vec(arb_op(), 1..50)) {
        schedule(ops)?;
    }

    /// `merge_remote` is commutative and idempotent: the same cells merged in order into
    /// one product and reversed with every cell twice into another give the same state,
    /// the model's.
    #[test]
    fn sql_merge_is_commutative_and_idempotent(cells in arb_remote_cells()) {
        runtime().block_on(async move {
            let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
            let s = store(&[a, b]).await;
            s.merge(a, cells.clone()).await.unwrap();
            let twice: Vec<Entry> = cells.iter().rev().flat_map(|e| [e.clone(), e.clone()]).collect();
            s.merge(b, twice).await.unwrap();
            let model = BoundedCounter::from_entries(cells);
            let (sa, sb) = (s.state(a).await, s.state(b).await);
            prop_assert_eq!(sa.0.entries(), model.entries());
            prop_assert_eq!(sb.0.entries(), model.entries());
            prop_assert_eq!((sa.1.available_here, sa.1.global), (sb.1.available_here, sb.1.global));
            Ok(())
        })?;
    }
}

/// SQLite integers are i64: a cell beyond (which the model's u64 could hold) is refused as
/// bad input, and nothing of its batch is stored.
#[test]
fn a_cell_beyond_i64_is_refused_and_nothing_changes() {
    runtime().block_on(async {
        let p = Uuid::new_v4();
        let s = store(&[p]).await;
        let key = EntryKey::Xfer {
            from: ActorId::hub(),
            to: actor(ME),
        };
        let small = Entry {
            key: key.clone(),
            value: 5,
        };
        let huge = Entry {
            key: key.clone(),
            value: 1 << 63,
        };
        let err = s.merge(p, vec![small, huge]).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
        assert!(s.state(p).await.0.entries().is_empty());
    });
}
