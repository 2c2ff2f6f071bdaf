//! The SQL merge path that runs in production (`load` and `merge_cell` on the real schema,
//! and the hub's own operations through `replication::receive_stock` / `top_up`), checked
//! against `BoundedCounter`, the model the CRDT property tests in `edgecart-proto` prove:
//! same cells, same global figure, same rights, at every step.

use edgecart_proto::hlc::Clock;
use edgecart_proto::stock::Crdt;
use edgecart_proto::sync::ProductPayload;
use proptest::prelude::*;

use super::*;
use crate::replication;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// A hub database with the real migrations, on a temp file.
struct Store {
    _dir: tempfile::TempDir,
    conn: Connection,
    clock: Clock,
}

fn store(products: &[&str]) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgecart-hub.db");
    drop(crate::db::Db::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    // Durability is not under test; thousands of commits per run are.
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    // The writer connection's rights table, checked against the model with the rest.
    install_rights(&conn).unwrap();
    let clock = Clock::new(ActorId::hub());
    for id in products {
        let p = ProductPayload {
            id: id.to_string(),
            name: id.to_string(),
            description: String::new(),
            price_amount: 100,
            currency: "USD".into(),
            category_id: None,
            status: "active".into(),
            created_at: 0,
            updated_at: 0,
        };
        crate::store::catalog::apply_product(&conn, &p, &clock.now().to_string()).unwrap();
    }
    Store {
        _dir: dir,
        conn,
        clock,
    }
}

fn actor(s: &str) -> ActorId {
    ActorId::parse(s).unwrap()
}

fn cell(counter: &BoundedCounter, key: &EntryKey) -> u64 {
    counter
        .entries()
        .into_iter()
        .find(|e| &e.key == key)
        .map_or(0, |e| e.value)
}

/// Merges `cells` in one transaction, as `apply_batch` does; returns each cell's growth.
fn merge_all(conn: &Connection, product: &str, cells: &[Entry]) -> Vec<u64> {
    let tx = conn.unchecked_transaction().unwrap();
    let grown = cells
        .iter()
        .map(|e| merge_cell(&tx, product, e).unwrap())
        .collect();
    tx.commit().unwrap();
    grown
}

fn assert_same(conn: &Connection, product: &str, model: &BoundedCounter) {
    let stored = load(conn, product).unwrap();
    assert_eq!(stored.entries(), model.entries(), "cells");
    assert_eq!(stored.global(), model.global(), "global stock");
    assert!(stored.global() >= 0, "negative global stock: {stored:?}");
    for a in NODES.iter().map(|n| actor(n)).chain([ActorId::hub()]) {
        assert_eq!(stored.rights(&a), model.rights(&a), "rights of {a}");
        assert_eq!(
            rights_of(conn, product, &a).unwrap(),
            model.rights(&a),
            "rights of {a} kept by the triggers"
        );
    }
    for (a, rights) in rights_by_actor(&stored) {
        assert_eq!(rights, model.rights(&a), "rights of {a} in one pass");
    }
    assert!(stored.rights(&ActorId::hub()) >= 0, "{stored:?}");
}

#[derive(Debug, Clone)]
enum Op {
    /// Units delivered to the hub (`replication::receive_stock`).
    Receive(u64),
    /// A node asks the hub for rights (`replication::top_up`).
    TopUp {
        node: usize,
        qty: u64,
    },
    /// A node hears the transfers into it.
    Pull(usize),
    /// A node receives a delivery, sells, or hands rights back (at its own replica).
    NodeReceive {
        node: usize,
        qty: u64,
    },
    Sell {
        node: usize,
        qty: u64,
    },
    HandBack {
        node: usize,
        qty: u64,
    },
    /// The node's cells reach the hub through `merge_cell`, starting at cell `rotate`.
    Push {
        node: usize,
        rotate: usize,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    let n = 0..NODES.len();
    prop_oneof![
        2 => (0..12u64).prop_map(Op::Receive),
        2 => (n.clone(), 1..8u64).prop_map(|(node, qty)| Op::TopUp { node, qty }),
        2 => n.clone().prop_map(Op::Pull),
        1 => (n.clone(), 0..5u64).prop_map(|(node, qty)| Op::NodeReceive { node, qty }),
        3 => (n.clone(), 0..6u64).prop_map(|(node, qty)| Op::Sell { node, qty }),
        1 => (n.clone(), 0..4u64).prop_map(|(node, qty)| Op::HandBack { node, qty }),
        3 => (n, 0..16usize).prop_map(|(node, rotate)| Op::Push { node, rotate }),
    ]
}

fn arb_cells() -> impl Strategy<Value = Vec<Entry>> {
    let actors = ["hub", "n1", "n2"];
    let key = (0..3u8, 0..actors.len(), 0..actors.len()).prop_map(move |(k, i, j)| match k {
        0 => EntryKey::Inc(actor(actors[i])),
        1 => EntryKey::Dec(actor(actors[i])),
        _ => EntryKey::Xfer {
            from: actor(actors[i]),
            to: actor(actors[j]),
        },
    });
    proptest::collection::vec(
        (key, 0..50u64).prop_map(|(key, value)| Entry { key, value }),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random schedules of the hub's operations, the nodes' local operations, and merges of
    /// the nodes' cells through SQL: the hub's stored counter is the model's at every step,
    /// a replayed push changes nothing, and the hub hands out only rights it holds.
    #[test]
    fn sql_merges_follow_the_bounded_counter(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let s = store(&["p"]);
        let hub = ActorId::hub();
        let nodes: Vec<ActorId> = NODES.iter().map(|n| actor(n)).collect();
        let mut model = BoundedCounter::new();
        let mut replicas = vec![BoundedCounter::new(); NODES.len()];
        for op in ops {
            match op {
                Op::Receive(qty) => {
                    let stored = replication::receive_stock(&s.conn, &s.clock, "p", qty);
                    prop_assert_eq!(stored.is_ok(), model.add(&hub, qty).is_ok());
                }
                Op::TopUp { node, qty } => {
                    let (granted, _) =
                        replication::top_up(&s.conn, &s.clock, &nodes[node], "p", qty).unwrap();
                    let grant = qty.min(model.rights(&hub).max(0) as u64);
                    prop_assert_eq!(granted, grant);
                    if grant > 0 {
                        model.transfer(&hub, &nodes[node], grant).unwrap();
                    }
                }
                Op::Pull(node) => {
                    for e in model.entries() {
                        if matches!(&e.key, EntryKey::Xfer { to, .. } if *to == nodes[node]) {
                            replicas[node].apply(&e);
                        }
                    }
                }
                Op::NodeReceive { node, qty } => {
                    let _ = replicas[node].add(&nodes[node], qty);
                }
                Op::Sell { node, qty } => {
                    let _ = replicas[node].sell(&nodes[node], qty);
                }
                Op::HandBack { node, qty } => {
                    let _ = replicas[node].transfer(&nodes[node], &hub, qty);
                }
                Op::Push { node, rotate } => {
                    let mut cells = replicas[node].entries();
                    if !cells.is_empty() {
                        let k = rotate % cells.len();
                        cells.rotate_left(k);
                    }
                    let grown = merge_all(&s.conn, "p", &cells);
                    for (e, g) in cells.iter().zip(&grown) {
                        let before = cell(&model, &e.key);
                        prop_assert_eq!(*g, e.value.saturating_sub(before), "{:?}", e);
                        model.apply(e);
                    }
                    // Redelivered (a reconnect re-sends what was not acknowledged): a no-op.
                    cells.reverse();
                    let again = merge_all(&s.conn, "p", &cells);
                    prop_assert!(again.iter().all(|g| *g == 0), "{:?}", again);
                }
            }
            assert_same(&s.conn, "p", &model);
        }
        // Everyone pushes: the hub holds the merge of all replicas, and every unit received
        // is either held as rights by someone or sold.
        for replica in &replicas {
            merge_all(&s.conn, "p", &replica.entries());
            model.merge(replica);
        }
        assert_same(&s.conn, "p", &model);
        let stored = load(&s.conn, "p").unwrap();
        let rights: i64 = nodes.iter().chain([&hub]).map(|a| stored.rights(a)).sum();
        prop_assert_eq!(rights, stored.global());
    }

    /// Merging through SQL is commutative, associative and idempotent: three states merged
    /// in two different orders (one with a repeat) into two products give the same cells,
    /// which are the model's merge.
    #[test]
    fn sql_merge_is_commutative_associative_and_idempotent(
        a in arb_cells(), b in arb_cells(), c in arb_cells()
    ) {
        let s = store(&["abc", "cba"]);
        for cells in [&a, &b, &c] {
            merge_all(&s.conn, "abc", cells);
        }
        for cells in [&c, &b, &a, &b] {
            let mut reversed = cells.clone();
            reversed.reverse();
            merge_all(&s.conn, "cba", &reversed);
        }
        let mut model = BoundedCounter::from_entries(a.clone());
        model.merge(&BoundedCounter::from_entries(b.clone()));
        model.merge(&BoundedCounter::from_entries(c.clone()));
        let (abc, cba) = (load(&s.conn, "abc").unwrap(), load(&s.conn, "cba").unwrap());
        prop_assert_eq!(abc.entries(), model.entries());
        prop_assert_eq!(cba.entries(), model.entries());
        prop_assert_eq!(abc.global(), cba.global());
    }
}

/// SQLite integers are i64: a cell the model could hold (≥ 2^63) is refused as bad input,
/// and nothing is stored.
#[test]
fn the_rights_table_rolls_back_with_the_cells_and_is_rebuilt_from_them() {
    let s = store(&["p"]);
    let (hub, n1) = (ActorId::hub(), actor("n1"));
    let mut model = BoundedCounter::new();
    let delivery = model.add(&hub, 50).unwrap();
    let grant = model.transfer(&hub, &n1, 20).unwrap();
    merge_all(&s.conn, "p", &[delivery, grant]);
    assert_same(&s.conn, "p", &model);
    // A sale that never commits leaves the rights as they were.
    let tx = s.conn.unchecked_transaction().unwrap();
    let mut lost = model.clone();
    merge_cell(&tx, "p", &lost.sell(&n1, 5).unwrap()).unwrap();
    assert_eq!(
        rights_of(&tx, "p", &n1).unwrap(),
        15,
        "seen inside the transaction"
    );
    drop(tx);
    assert_same(&s.conn, "p", &model);
    // Installed again (the hub restarting): the same figures, from the cells alone.
    install_rights(&s.conn).unwrap();
    assert_same(&s.conn, "p", &model);
    assert_eq!(rights_of(&s.conn, "p", &actor("never-seen")).unwrap(), 0);
}

#[test]
fn a_cell_beyond_i64_is_refused_and_nothing_changes() {
    let s = store(&["p"]);
    let key = EntryKey::Inc(actor("n1"));
    merge_all(
        &s.conn,
        "p",
        &[Entry {
            key: key.clone(),
            value: 5,
        }],
    );
    let err = merge_cell(
        &s.conn,
        "p",
        &Entry {
            key: key.clone(),
            value: 1 << 63,
        },
    )
    .unwrap_err();
    assert!(matches!(err, HubError::Invalid { .. }), "{err:?}");
    assert_eq!(cell(&load(&s.conn, "p").unwrap(), &key), 5);
}
