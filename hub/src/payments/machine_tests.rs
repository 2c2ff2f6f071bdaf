//! The payment machine against a simulated provider that may answer late, twice or never,
//! with hub crashes and store voids at any point in between (property test).
//!
//! It drives the ledger's real SQL (`ledger::record`, `begin_charge`, `due_charges`,
//! `due_refunds`) and the worker's own settlement code (`worker::apply`, `charge_settlement`,
//! `refund_settlement`) on a real SQLite database; only the scheduling is the test's. After
//! the schedule, the provider recovers and the worker runs until nothing is due. Then, for every
//! payment: money taken at the provider equals what the ledger records as captured, each
//! refund at the provider is a succeeded refund in the ledger and back, and a voided payment's
//! customer ends with charges − refunds = 0.

use std::collections::HashMap;

use edgecart_proto::LedgerStatus;
use edgecart_proto::sync::PaymentPayload;
use proptest::prelude::*;
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::ledger;
use super::provider::{ChargeOutcome, RefundOutcome};
use super::worker::{self, Settlement};
use crate::db::MIGRATIONS;

const PAYMENTS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// The worker takes what is due and sends it; the provider acts on what reaches it.
    WorkerPass,
    /// The provider's answer `i` (mod the answers in flight) reaches the hub; `again`: it is
    /// also delivered a second time later (a duplicate).
    Deliver { i: usize, again: bool },
    /// The hub is killed: every answer in flight is lost (never answered).
    HubCrash,
    /// The store voids payment `p` (its order was cancelled).
    Void(usize),
    /// The provider answers 503 (taking nothing) while down.
    ProviderDown(bool),
    /// Back-off delays elapse.
    TimePasses,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::WorkerPass),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, again)| Step::Deliver { i, again }),
        1 => Just(Step::HubCrash),
        2 => (0..PAYMENTS).prop_map(Step::Void),
        1 => any::<bool>().prop_map(Step::ProviderDown),
        1 => Just(Step::TimePasses),
    ]
}

/// The provider's books: what it took and gave back, by idempotency key.
#[derive(Default, Debug)]
struct Books {
    down: bool,
    charges: HashMap<String, (String, i64)>,
    refunds: HashMap<String, (String, i64)>,
}

impl Books {
    fn charge(&mut self, key: &str, amount: i64, declines: bool) -> ChargeOutcome {
        if self.down {
            return ChargeOutcome::Retry {
                error: "503".into(),
            };
        }
        if declines {
            return ChargeOutcome::Declined {
                code: "card_declined".into(),
                message: "no".into(),
            };
        }
        let n = self.charges.len();
        let (id, _) = self
            .charges
            .entry(key.to_string())
            .or_insert_with(|| (format!("ch_{n}"), amount));
        ChargeOutcome::Succeeded {
            charge_id: id.clone(),
        }
    }

    fn refund(&mut self, key: &str, charge_id: &str, amount: i64) -> RefundOutcome {
        if self.down {
            return RefundOutcome::Retry {
                error: "503".into(),
            };
        }
        let payment = self
            .charges
            .iter()
            .find(|(_, (id, _))| id == charge_id)
            .map(|(k, _)| k.clone())
            .expect("refund of an unknown charge");
        let n = self.refunds.len();
        let (id, _) = self
            .refunds
            .entry(key.to_string())
            .or_insert_with(|| (format!("re_{n}:{payment}"), amount));
        RefundOutcome::Succeeded {
            refund_id: id.clone(),
        }
    }

    fn refunded(&self, payment: &str) -> i64 {
        self.refunds
            .values()
            .filter(|(id, _)| id.ends_with(&format!(":{payment}")))
            .map(|(_, a)| a)
            .sum()
    }
}

struct World {
    conn: Connection,
    books: Books,
    /// Answers on their way back to the hub (lost if the hub crashes).
    in_flight: Vec<Settlement>,
    payments: Vec<(String, bool)>,
    voided: Vec<bool>,
}

impl World {
    fn new(declines: &[bool]) -> World {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
            .to_latest(&mut conn)
            .unwrap();
        let mut payments = Vec::new();
        for (i, declines) in declines.iter().enumerate() {
            let id = format!("pay-{i}");
            ledger::record(&conn, "store-a", &payload(&id, "pending")).unwrap();
            payments.push((id, *declines));
        }
        World {
            conn,
            books: Books::default(),
            in_flight: Vec::new(),
            voided: vec![false; declines.len()],
            payments,
        }
    }

    fn write(&self, s: &Settlement) {
        let tx = self.conn.unchecked_transaction().unwrap();
        worker::apply(&tx, s, "v").unwrap();
        tx.commit().unwrap();
    }

    /// What the worker does in one pass, except that answers travel back on their own.
    fn worker_pass(&mut self) {
        for p in ledger::due_charges(&self.conn, 100).unwrap() {
            if p.status == LedgerStatus::Pending
                && !ledger::begin_charge(&self.conn, &p.payment_id).unwrap()
            {
                continue;
            }
            let declines = self
                .payments
                .iter()
                .any(|(id, d)| *id == p.payment_id && *d);
            let answer = self.books.charge(&p.payment_id, p.amount, declines);
            self.in_flight
                .push(worker::charge_settlement(&p.payment_id, answer));
        }
        for r in ledger::due_refunds(&self.conn, 100).unwrap() {
            let charge = ledger::get(&self.conn, &r.payment_id)
                .unwrap()
                .and_then(|p| p.provider_charge_id)
                .expect("a refund of a captured payment");
            let answer = self.books.refund(&r.refund_id, &charge, r.amount);
            self.in_flight
                .push(worker::refund_settlement(&r.refund_id, answer));
        }
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::WorkerPass => self.worker_pass(),
            Step::Deliver { i, again } => {
                if !self.in_flight.is_empty() {
                    let i = i % self.in_flight.len();
                    let s = if *again {
                        self.in_flight[i].clone()
                    } else {
                        self.in_flight.remove(i)
                    };
                    self.write(&s);
                }
            }
            Step::HubCrash => self.in_flight.clear(),
            Step::Void(p) => {
                let id = self.payments[*p].0.clone();
                ledger::record(&self.conn, "store-a", &payload(&id, "voided")).unwrap();
                self.voided[*p] = true;
            }
            Step::ProviderDown(down) => self.books.down = *down,
            Step::TimePasses => self.time_passes(),
        }
    }

    fn time_passes(&self) {
        self.conn
            .execute_batch(
                "UPDATE ledger SET next_attempt_at = 0; UPDATE ledger_refunds SET next_attempt_at = 0;",
            )
            .unwrap();
    }

    /// The provider recovers; every answer arrives; the worker runs until nothing is due.
    fn settle(&mut self) {
        self.books.down = false;
        for _ in 0..20 {
            for s in std::mem::take(&mut self.in_flight) {
                self.write(&s);
            }
            self.time_passes();
            self.worker_pass();
            if self.in_flight.is_empty() {
                return;
            }
        }
        panic!("never settled: {:?}", self.in_flight);
    }
}

fn payload(id: &str, status: &str) -> PaymentPayload {
    PaymentPayload {
        id: id.to_string(),
        order_id: format!("order-{id}"),
        user_id: "u".into(),
        method: "card".into(),
        status: status.into(),
        amount: 1250,
        currency: "USD".into(),
        card_token: Some("tok".into()),
        refunds: Vec::new(),
        updated_at: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn money_adds_up_after_any_schedule(
        declines in proptest::collection::vec(prop::bool::weighted(0.25), PAYMENTS),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut w = World::new(&declines);
        for s in &steps {
            w.run(s);
        }
        w.settle();
        for (i, (id, _)) in w.payments.iter().enumerate() {
            let p = ledger::get(&w.conn, id).unwrap().unwrap();
            prop_assert!(p.status.is_final(), "{id} is {}", p.status);
            let taken = w.books.charges.get(id);
            match p.status {
                LedgerStatus::Captured => {
                    let (charge_id, amount) = taken.expect("captured but never charged");
                    prop_assert_eq!(Some(charge_id), p.provider_charge_id.as_ref());
                    prop_assert_eq!(*amount, p.amount);
                }
                other => prop_assert!(taken.is_none(), "{id} is {other} but was charged"),
            }
            let settled: i64 = ledger::refunds_of(&w.conn, id)
                .unwrap()
                .iter()
                .inspect(|r| assert_ne!(r.status, "pending"))
                .filter(|r| r.status == "succeeded")
                .map(|r| r.amount)
                .sum();
            prop_assert_eq!(w.books.refunded(id), settled);
            if w.voided[i] {
                let charged = taken.map_or(0, |(_, a)| *a);
                prop_assert_eq!(charged - w.books.refunded(id), 0, "voided {} kept money", id);
            }
        }
    }
}
