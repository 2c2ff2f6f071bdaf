//! The snapshot a new or restored node needs, read page by page.
//!
//! Accounts, catalog, and for every product the node's own cells, the transfers into it and the
//! other actors' net stock; for a restored node also its own orders and payments as it last
//! reported them. Each page is read in its own short read (at most [`PAGE`] rows of one kind),
//! so the hub never holds the whole snapshot in memory nor its connection for the whole of it.
//!
//! Why pages read at different times are still a correct snapshot: the node's log stream goes
//! on from the hub position fixed at its Hello, after the snapshot. A page read later than that
//! may already contain the effect of a change the stream then delivers again; every entity
//! applies idempotently (newer version wins, stock cells merge by max), and the newest
//! `stock_others` figure for a product is always the last one the stream delivers (the hub logs
//! one whenever it changes). Every entry carries sequence `seq`, as the whole snapshot did.

use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::EntryKey;
use edgecart_proto::sync::{MAX_BATCH, StockOthersPayload, entity};
use rusqlite::Connection;

use crate::error::Result;
use crate::store::{catalog, orders, stock, users};

/// Rows read per page. A stock page carries up to five entries per product, so stock reads a
/// fifth of this many products; every page fits one `MAX_BATCH` message.
pub const PAGE: usize = MAX_BATCH;
const STOCK_PAGE: usize = PAGE / 5;

/// What to read next: a kind and the last id sent of it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Users,
    Categories,
    Products,
    Stock,
    Orders,
    Payments,
    Done,
}

/// A snapshot being sent: where it stands.
#[derive(Debug, Clone)]
pub struct Snapshot {
    node: ActorId,
    seq: i64,
    /// Also the node's own orders and payments (it was restored from an older copy).
    own_records: bool,
    part: Part,
    after: String,
}

impl Snapshot {
    pub fn new(node: ActorId, seq: i64, own_records: bool) -> Snapshot {
        Snapshot {
            node,
            seq,
            own_records,
            part: Part::Users,
            after: String::new(),
        }
    }

    /// Reads the next page; `None` once everything was read.
    pub fn next_page(
        &mut self,
        conn: &Connection,
        clock: &Clock,
    ) -> Result<Option<Vec<pb::Change>>> {
        loop {
            let (rows, limit) = match self.part {
                Part::Done => return Ok(None),
                Part::Users => (
                    users::snapshot(conn, self.node.as_str(), &self.after, PAGE)?,
                    PAGE,
                ),
                Part::Categories => (catalog::snapshot_categories(conn, &self.after, PAGE)?, PAGE),
                Part::Products => (catalog::snapshot_products(conn, &self.after, PAGE)?, PAGE),
                Part::Orders => (
                    orders::own_orders(conn, self.node.as_str(), &self.after, PAGE)?,
                    PAGE,
                ),
                Part::Payments => (
                    orders::own_payments(conn, self.node.as_str(), &self.after, PAGE)?,
                    PAGE,
                ),
                Part::Stock => {
                    let products = stock::products_page(conn, &self.after, STOCK_PAGE)?;
                    let full = products.len() == STOCK_PAGE;
                    let Some(last) = products.last().cloned() else {
                        self.advance();
                        continue;
                    };
                    let page = self.stock(conn, clock, &products)?;
                    if full {
                        self.after = last;
                    } else {
                        self.advance();
                    }
                    return Ok(Some(page));
                }
            };
            let Some((_, last, _, _)) = rows.last() else {
                self.advance();
                continue;
            };
            if rows.len() == limit {
                self.after = last.clone();
            } else {
                // A short page is the last of its kind: no need for an empty read to learn it.
                self.advance();
            }
            let seq = self.seq;
            return Ok(Some(
                rows.into_iter()
                    .map(|(entity, entity_id, version, payload_json)| pb::Change {
                        seq,
                        entity,
                        entity_id,
                        version,
                        payload_json,
                        ..Default::default()
                    })
                    .collect(),
            ));
        }
    }

    fn advance(&mut self) {
        self.after.clear();
        self.part = match self.part {
            Part::Users => Part::Categories,
            Part::Categories => Part::Products,
            Part::Products => Part::Stock,
            Part::Stock if self.own_records => Part::Orders,
            Part::Orders => Part::Payments,
            Part::Stock | Part::Payments | Part::Done => Part::Done,
        };
    }

    /// The node's cells, the transfers into it and the others' net stock of `products`.
    fn stock(
        &self,
        conn: &Connection,
        clock: &Clock,
        products: &[String],
    ) -> Result<Vec<pb::Change>> {
        let version = clock.now().to_string();
        let node = &self.node;
        let mut out = Vec::new();
        for product in products {
            let counter = stock::load(conn, product)?;
            for entry in counter.entries() {
                let mine = match &entry.key {
                    EntryKey::Inc(a) | EntryKey::Dec(a) => a == node,
                    EntryKey::Xfer { from, to } => from == node || to == node,
                };
                if mine {
                    out.push(pb::Change {
                        seq: self.seq,
                        ..super::stock_change(product, &entry, &version)?
                    });
                }
            }
            out.push(pb::Change {
                seq: self.seq,
                entity: entity::STOCK_OTHERS.to_string(),
                entity_id: product.clone(),
                version: version.clone(),
                payload_json: serde_json::to_string(&StockOthersPayload {
                    product_id: product.clone(),
                    others_net: stock::others_net(&counter, node),
                })?,
                ..Default::default()
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use edgecart_proto::stock::Entry;

    use super::*;
    use crate::db::Db;

    /// Pages of at most `PAGE` rows (a stock page at most five entries per product) that add up to
    /// every record exactly once, products before stock, the restored node's orders last.
    #[tokio::test]
    async fn pages_are_bounded_and_cover_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("hub.db")).unwrap();
        let node = ActorId::parse("store-a").unwrap();
        let (products, stocked, orders) = (2 * PAGE + 3, STOCK_PAGE * 2 + 1, PAGE + 1);
        let n = node.clone();
        db.write(move |tx| {
            for i in 0..products {
                tx.execute(
                    "INSERT INTO products VALUES (?1, 'p', '', 1, 'USD', NULL, 'active', 1, 1, 'v')",
                    [format!("p{i:05}")],
                )?;
            }
            for i in 0..stocked {
                let p = format!("p{i:05}");
                for key in [
                    EntryKey::Inc(ActorId::hub()),
                    EntryKey::Xfer { from: ActorId::hub(), to: n.clone() },
                    EntryKey::Dec(n.clone()),
                ] {
                    stock::merge_cell(tx, &p, &Entry { key, value: 10 })?;
                }
            }
            for i in 0..orders {
                tx.execute(
                    "INSERT INTO orders VALUES (?1, 'store-a', 'u', 'paid', 1, 'USD', '[]', 1, 1, 'v')",
                    [format!("o{i:05}")],
                )?;
            }
            // Another node's order is not the restored node's.
            tx.execute(
                "INSERT INTO orders VALUES ('x', 'store-b', 'u', 'paid', 1, 'USD', '[]', 1, 1, 'v')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();

        let clock = std::sync::Arc::new(Clock::new(ActorId::hub()));
        let mut snapshot = Snapshot::new(node, 7, true);
        let mut pages = Vec::new();
        loop {
            let c = clock.clone();
            let (next, page) = db
                .read(move |conn| {
                    let page = snapshot.next_page(conn, &c)?;
                    Ok((snapshot, page))
                })
                .await
                .unwrap();
            snapshot = next;
            let Some(page) = page else { break };
            pages.push(page);
        }
        assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= PAGE));
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for c in pages.iter().flatten() {
            assert_eq!(c.seq, 7);
            *seen
                .entry((c.entity.clone(), c.entity_id.clone()))
                .or_default() += 1;
            if order.last() != Some(&c.entity) {
                order.push(c.entity.clone());
            }
        }
        let count = |e: &str| seen.keys().filter(|(k, _)| k == e).count();
        assert_eq!(count(entity::PRODUCT), products);
        assert_eq!(count(entity::STOCK_OTHERS), stocked);
        assert_eq!(count(entity::ORDER), orders);
        assert!(seen.iter().all(|((e, _), n)| *n == 1 || e == entity::STOCK));
        // Two of the node's cells per product (the hub's inc is not its business).
        let stock_entries = pages
            .iter()
            .flatten()
            .filter(|c| c.entity == entity::STOCK)
            .count();
        assert_eq!(stock_entries, 2 * stocked);
        // Products before any stock, the node's orders after everything else.
        assert_eq!(order.first().map(String::as_str), Some(entity::PRODUCT));
        assert_eq!(order.last().map(String::as_str), Some(entity::ORDER));
        assert_eq!(order.iter().filter(|e| *e == entity::PRODUCT).count(), 1);
        assert_eq!(order.iter().filter(|e| *e == entity::ORDER).count(), 1);
    }
}
