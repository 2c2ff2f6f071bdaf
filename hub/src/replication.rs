//! What the hub does with the nodes' changes and for them: applying a node's change batch,
//! receiving stock and allocating it, top-ups, and the snapshot a new or restored node needs.
//! Every function runs inside the caller's write transaction.

use std::collections::{BTreeMap, BTreeSet};

use edgecart_proto::hlc::{Clock, Timestamp};
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::{Entry, EntryKey};
use edgecart_proto::sync::{
    CategoryPayload, Command, OrderPayload, ProductPayload, StockPayload, UserPayload, entity,
};
use rusqlite::Connection;

mod snapshot;

pub use snapshot::Snapshot;

use crate::allocation::{self, Policy};
use crate::error::{HubError, Result};
use crate::store::{catalog, changes, credentials, nodes, orders, stock, users};

/// Sales in this window count as "recent" for the allocation policy.
const SALES_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Applies a batch of a node's changes; entries at or below the node's cursor are replays and
/// are skipped, so a batch re-sent after a reconnect changes nothing twice.
///
/// Everything it changes lives in the caller's transaction (the stock cells are folded in a
/// local map and written before returning; only the HLC clock, which only moves forward, is
/// touched outside): if the commit fails, the hub is as if the batch never arrived, and the
/// node's re-sent batch is applied once. A storage error fails the whole batch.
pub fn apply_batch(
    conn: &Connection,
    clock: &Clock,
    node: &ActorId,
    batch: &[pb::Change],
) -> Result<Applied> {
    let row = nodes::get(conn, node.as_str())?.ok_or(HubError::NotFound("node"))?;
    if row.decommissioned_at.is_some() {
        // The hub writes a decommissioned node's cells now: none of the node's may land.
        return Err(HubError::Precondition(format!(
            "node {node} is decommissioned"
        )));
    }
    // Unenrolled nodes cannot connect; a missing row (tests driving this directly) keeps the
    // default policy.
    let catalog_edits =
        credentials::enrollment(conn, node.as_str())?.is_none_or(|e| e.catalog_edits);
    let mut refused = 0u64;
    let mut cursor = row.node_cursor;
    let mut touched = BTreeSet::new();
    let mut handed_back = BTreeSet::new();
    let mut figure_cells = Vec::new();
    let mut sold = false;
    // Stock cells only grow and merge by max, so a batch's cells can be folded in memory first:
    // one upsert per cell instead of one per delta (a busy node's batch is many deltas of a few
    // cells).
    let mut cells: BTreeMap<(String, EntryKey), u64> = BTreeMap::new();
    for change in batch {
        if change.seq <= cursor {
            continue;
        }
        cursor = change.seq;
        // A traced entry is applied in a span of the store's trace (the request that wrote it);
        // an untraced one (the default) costs nothing more.
        let applied = if change.traceparent.is_empty() || !crate::telemetry::exporting() {
            apply_one(conn, clock, node, catalog_edits, change, &mut cells)
        } else {
            let span = tracing::info_span!("apply_change", node = %node, seq = change.seq,
                entity = %entity_label(&change.entity));
            crate::telemetry::continue_from(&span, &change.traceparent, &change.tracestate);
            span.in_scope(|| apply_one(conn, clock, node, catalog_edits, change, &mut cells))
        };
        if let Err(e) = applied {
            // A storage failure (full disk, I/O error) is not the entry's fault: the whole batch
            // fails, nothing of it is kept and the node sends it again. SQLite may also have
            // rolled the transaction back already; carrying on would then commit the rest of
            // the batch statement by statement and skip this entry for good.
            if e.is_storage() || conn.is_autocommit() {
                return Err(match e {
                    HubError::Storage(_) => e,
                    other => HubError::Storage(format!(
                        "the transaction was rolled back while applying seq {}: {other}",
                        change.seq
                    )),
                });
            }
            // The store restriction: never applied, counted, acknowledged with the rest (the
            // stream must not wedge). Logged by kind and id only: the payload may carry
            // password hashes or card tokens.
            if let HubError::Forbidden(why) = &e {
                refused += 1;
                crate::observability::refused(&e);
                tracing::warn!(node = %node, seq = change.seq, entity = %entity_label(&change.entity),
                    entity_id = %change.entity_id.chars().take(64).collect::<String>(), reason = %why,
                    "refused a change the store may not write");
                continue;
            }
            // A malformed entry is skipped (and counted), not retried forever: the rest of the
            // stream must keep flowing.
            crate::observability::refused(&e);
            tracing::warn!(node = %node, seq = change.seq, entity = %change.entity, error = %e, "skipped a change");
        }
    }
    for ((product, key), value) in cells {
        let entry = Entry { key, value };
        let grew = stock::merge_cell(conn, &product, &entry)?;
        if grew == 0 {
            continue;
        }
        match &entry.key {
            EntryKey::Dec(_) => {
                stock::record_sale(conn, &product, node.as_str(), grew)?;
                sold = true;
            }
            EntryKey::Xfer { to, .. } if *to == ActorId::hub() => {
                handed_back.insert(product.clone());
            }
            _ => {}
        }
        if !matches!(entry.key, EntryKey::Xfer { .. }) {
            figure_cells.push((product.clone(), entry));
        }
        touched.insert(product);
    }
    for product in &handed_back {
        allocate(conn, clock, product)?;
    }
    if sold {
        // On write, where the rows come from: an index range delete, nothing when none aged out.
        prune_sales(conn)?;
    }
    nodes::set_node_cursor(conn, node.as_str(), cursor)?;
    Ok(Applied {
        cursor,
        touched,
        cells: figure_cells,
        refused,
    })
}

/// What applying a batch did.
#[derive(Debug)]
pub struct Applied {
    /// The node's new cursor, to acknowledge once committed.
    pub cursor: i64,
    /// Products whose cells grew.
    pub touched: BTreeSet<String>,
    /// The `inc` and `dec` cells that grew, with their new values: the global figures follow
    /// them once the batch is committed (`crate::figures`).
    pub cells: Vec<(String, Entry)>,
    /// Entries refused by the store restriction (skipped, acknowledged).
    pub refused: u64,
}

/// An entity name fit for a log field or a metric label (the sender chose it).
fn entity_label(entity: &str) -> &'static str {
    match entity {
        entity::USER => entity::USER,
        entity::CATEGORY => entity::CATEGORY,
        entity::PRODUCT => entity::PRODUCT,
        entity::STOCK => entity::STOCK,
        entity::ORDER => entity::ORDER,
        entity::PAYMENT => entity::PAYMENT,
        _ => "other",
    }
}

fn forbidden(why: &str) -> HubError {
    HubError::Forbidden(why.to_string())
}

fn apply_one(
    conn: &Connection,
    clock: &Clock,
    node: &ActorId,
    catalog_edits: bool,
    change: &pb::Change,
    cells: &mut BTreeMap<(String, EntryKey), u64>,
) -> Result<()> {
    // NodeRestriction (docs/security.md): every entry is authorized against the sending store,
    // whose identity came from its credential. Checked before anything of the entry is applied.
    let version: Timestamp = change
        .version
        .parse()
        .map_err(|_| HubError::invalid("version", "not an HLC timestamp"))?;
    clock.observe(&version);
    let version = change.version.as_str();
    let json = change.payload_json.as_str();
    match change.entity.as_str() {
        entity::USER => {
            let u: UserPayload = serde_json::from_str(json)?;
            // Admin and staff accounts stay local to the store that made them (or are made at
            // the hub): a store may only report customers, and only those registered at it.
            if u.role != "customer" {
                return Err(forbidden("a store may only report customer accounts"));
            }
            if u.id != change.entity_id {
                return Err(HubError::invalid("user.id", "differs from the entry's id"));
            }
            match users::origin(conn, &u.id)? {
                Some(Some(origin)) if origin != node.as_str() => {
                    return Err(forbidden("the account was registered at another store"));
                }
                _ => {}
            }
            users::apply(conn, &u, node.as_str(), version, || clock.now().to_string())?;
        }
        entity::CATEGORY | entity::PRODUCT if !catalog_edits => {
            return Err(forbidden(
                "the hub's policy does not let this store edit the catalog",
            ));
        }
        entity::CATEGORY => {
            catalog::apply_category(
                conn,
                &serde_json::from_str::<CategoryPayload>(json)?,
                version,
            )?;
        }
        entity::PRODUCT => {
            catalog::apply_product(
                conn,
                &serde_json::from_str::<ProductPayload>(json)?,
                version,
            )?;
        }
        entity::STOCK => {
            let s: StockPayload = serde_json::from_str(json)?;
            // Each actor writes only its own cells: a node may not raise another actor's.
            let owner = match &s.entry.key {
                EntryKey::Inc(a) | EntryKey::Dec(a) => a,
                EntryKey::Xfer { from, .. } => from,
            };
            // inc[self], dec[self], xfer[self→x]: never another actor's cell, so never a
            // transfer out of the hub or another store.
            if owner != node {
                return Err(forbidden("a store may only write its own stock cells"));
            }
            let cell = cells.entry((s.product_id, s.entry.key)).or_insert(0);
            *cell = (*cell).max(s.entry.value);
        }
        entity::ORDER => {
            let o: OrderPayload = serde_json::from_str(json)?;
            if o.node_id != node.as_str() || o.id != change.entity_id {
                return Err(forbidden("a store may only report its own orders"));
            }
            // An order id another store reported stays that store's.
            if orders::owner(conn, &o.id)?.is_some_and(|owner| owner != node.as_str()) {
                return Err(forbidden("the order belongs to another store"));
            }
            orders::apply(conn, &o, version)?;
        }
        entity::PAYMENT => {
            let p: edgecart_proto::sync::PaymentPayload = serde_json::from_str(json)?;
            if p.id != change.entity_id {
                return Err(HubError::invalid(
                    "payment.id",
                    "differs from the entry's id",
                ));
            }
            if orders::payment_owner(conn, &p.id)?.is_some_and(|owner| owner != node.as_str()) {
                return Err(forbidden("the payment belongs to another store"));
            }
            if orders::owner(conn, &p.order_id)?.is_some_and(|owner| owner != node.as_str()) {
                return Err(forbidden("the payment's order belongs to another store"));
            }
            orders::apply_payment(conn, &change.entity_id, node.as_str(), json, version)?;
            crate::payments::ledger::record(conn, node.as_str(), &p)?;
            if !change.traceparent.is_empty() {
                // The provider call happens later, in the payment worker: it continues the
                // trace of the first traced entry of this payment (the checkout's).
                crate::payments::ledger::keep_trace(
                    conn,
                    &p.id,
                    &change.traceparent,
                    &change.tracestate,
                )?;
            }
        }
        other => {
            return Err(HubError::invalid(
                "entity",
                format!("unknown entity {other}"),
            ));
        }
    }
    Ok(())
}

pub fn policy(conn: &Connection) -> Result<Policy> {
    Ok(conn.query_row(
        "SELECT floor_per_node, reserve_percent FROM allocation_policy WHERE id = 1",
        [],
        |r| {
            Ok(Policy {
                floor_per_node: r.get(0)?,
                reserve_percent: r.get(1)?,
            })
        },
    )?)
}

pub fn set_policy(conn: &Connection, p: Policy) -> Result<()> {
    conn.execute(
        "UPDATE allocation_policy SET floor_per_node = ?1, reserve_percent = ?2 WHERE id = 1",
        rusqlite::params![p.floor_per_node, p.reserve_percent],
    )?;
    Ok(())
}

/// Hands the hub's spare rights of a product to the nodes by the policy.
pub fn allocate(conn: &Connection, clock: &Clock, product_id: &str) -> Result<()> {
    let hub = ActorId::hub();
    let mut counter = stock::load(conn, product_id)?;
    for (node, quantity) in plan_for(conn, &counter, product_id)? {
        let entry = counter
            .transfer(&hub, &node, quantity)
            .map_err(|e| HubError::Internal(format!("allocation: {e}")))?;
        stock::merge_cell(conn, product_id, &entry)?;
        stock::send_cell(
            conn,
            node.as_str(),
            product_id,
            &entry,
            &clock.now().to_string(),
        )?;
        tracing::debug!(product_id, node = %node, quantity, "allocated");
    }
    Ok(())
}

/// What the policy would hand out of the hub's spare rights of a product now.
fn plan_for(
    conn: &Connection,
    counter: &edgecart_proto::stock::BoundedCounter,
    product_id: &str,
) -> Result<Vec<(ActorId, u64)>> {
    let node_ids: Vec<ActorId> = nodes::ids(conn)?
        .iter()
        .filter_map(|n| ActorId::parse(n).ok())
        .collect();
    let since = crate::store::now_ms() - SALES_WINDOW_MS;
    let sales: Vec<(ActorId, i64)> = stock::recent_sales(conn, product_id, since)?
        .into_iter()
        .filter_map(|(n, q)| ActorId::parse(&n).ok().map(|a| (a, q)))
        .collect();
    Ok(allocation::plan(
        policy(conn)?,
        counter,
        &ActorId::hub(),
        &node_ids,
        &sales,
    ))
}

/// Deletes the sales the policy no longer reads (older than its window): the table stays as
/// small as the last window's sales, whatever the hub's age.
pub fn prune_sales(conn: &Connection) -> Result<usize> {
    stock::prune_sales(conn, crate::store::now_ms() - SALES_WINDOW_MS)
}

/// Units delivered to the central warehouse: `inc[hub] += quantity`, then allocated. Returns
/// the new `inc[hub]` cell (for the global figures, once committed).
pub fn receive_stock(
    conn: &Connection,
    clock: &Clock,
    product_id: &str,
    quantity: u64,
) -> Result<Entry> {
    if catalog::get_product(conn, product_id)?.is_none() {
        return Err(HubError::NotFound("product"));
    }
    let mut counter = stock::load(conn, product_id)?;
    let entry = counter
        .add(&ActorId::hub(), quantity)
        .map_err(|e| HubError::invalid("quantity", e.to_string()))?;
    stock::merge_cell(conn, product_id, &entry)?;
    allocate(conn, clock, product_id)?;
    Ok(entry)
}

/// A node short of rights asks for `quantity` more. Grants what the hub holds (the reserve
/// exists for this); if that is not enough, asks the node with the most spare rights to hand
/// some back for next time. Returns the granted amount and the transfer cell.
pub fn top_up(
    conn: &Connection,
    clock: &Clock,
    node: &ActorId,
    product_id: &str,
    quantity: u64,
) -> Result<(u64, Option<pb::Change>)> {
    if nodes::is_decommissioned(conn, node.as_str())? {
        return Err(HubError::Precondition(format!(
            "node {node} is decommissioned"
        )));
    }
    let hub = ActorId::hub();
    let mut counter = stock::load(conn, product_id)?;
    let grant = quantity.min(counter.rights(&hub).max(0) as u64);
    let mut change = None;
    if grant > 0 {
        let entry = counter
            .transfer(&hub, node, grant)
            .map_err(|e| HubError::Internal(format!("top-up: {e}")))?;
        stock::merge_cell(conn, product_id, &entry)?;
        let version = clock.now().to_string();
        stock::send_cell(conn, node.as_str(), product_id, &entry, &version)?;
        change = Some(stock_change(product_id, &entry, &version)?);
    }
    if grant < quantity {
        ask_hand_back(conn, clock, product_id, &counter, node, quantity - grant)?;
    }
    Ok((grant, change))
}

/// Asks the node with the most rights above its floor (other than `short`) to hand back up to
/// `quantity` of them; they return as `xfer[node→hub]` and are then re-allocated.
fn ask_hand_back(
    conn: &Connection,
    clock: &Clock,
    product_id: &str,
    counter: &edgecart_proto::stock::BoundedCounter,
    short: &ActorId,
    quantity: u64,
) -> Result<()> {
    let floor = policy(conn)?.floor_per_node;
    let active: std::collections::HashSet<String> = nodes::ids(conn)?.into_iter().collect();
    // Every actor's rights in one pass over the cells (not one pass per store).
    let richest = stock::rights_by_actor(counter)
        .into_iter()
        .filter(|(n, _)| n != short && active.contains(n.as_str()))
        .map(|(n, rights)| (rights - floor, n))
        .filter(|(spare, _)| *spare > 0)
        // Ties go to the greatest store id, as when the stores were taken in id order.
        .max_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.cmp(y)));
    if let Some((spare, rich)) = richest {
        let want = quantity.min(spare as u64);
        let command = Command::HandBack {
            id: edgecart_proto::ids::new_id().to_string(),
            product_id: product_id.to_string(),
            quantity: want,
        };
        changes::append(
            conn,
            Some(rich.as_str()),
            entity::COMMAND,
            command.id(),
            &clock.now().to_string(),
            &serde_json::to_string(&command)?,
        )?;
        tracing::info!(product_id, from = %rich, quantity = want, "asked a node to hand back rights");
    }
    Ok(())
}

fn stock_change(product_id: &str, entry: &Entry, version: &str) -> Result<pb::Change> {
    Ok(pb::Change {
        seq: 0,
        entity: entity::STOCK.to_string(),
        entity_id: product_id.to_string(),
        version: version.to_string(),
        payload_json: serde_json::to_string(&StockPayload {
            product_id: product_id.to_string(),
            entry: entry.clone(),
        })?,
        ..Default::default()
    })
}

/// A new store's floor of `product_id`, from what the hub holds: work for this store and this
/// product only, whatever the fleet's size (the other stores' allocations are not revisited on
/// a join). Only when the hub holds less than the floor are the product's cells read, to ask
/// the richest store to hand the rest back.
fn give_floor(
    conn: &Connection,
    clock: &Clock,
    policy: Policy,
    node: &ActorId,
    product_id: &str,
) -> Result<()> {
    let hub = ActorId::hub();
    let held = stock::rights_of(conn, product_id, &hub)?;
    let mine = stock::rights_of(conn, product_id, node)?;
    let give = allocation::floor_for(policy, held, mine);
    if give > 0 {
        let key = EntryKey::Xfer {
            from: hub.clone(),
            to: node.clone(),
        };
        let value = stock::cell(conn, product_id, &key)?
            .checked_add(give)
            .ok_or_else(|| HubError::Internal("allocation: a transfer cell overflowed".into()))?;
        let entry = Entry { key, value };
        stock::merge_cell(conn, product_id, &entry)?;
        stock::send_cell(
            conn,
            node.as_str(),
            product_id,
            &entry,
            &clock.now().to_string(),
        )?;
    }
    let short = policy.floor_per_node - mine - give as i64;
    if short > 0 {
        // The others may hold everything: have the richest hand back this node's floor.
        let counter = stock::load(conn, product_id)?;
        if counter.global() > 0 {
            ask_hand_back(conn, clock, product_id, &counter, node, short as u64)?;
        }
    }
    Ok(())
}

/// Outcome of a node's Hello.
pub struct Session {
    /// Where the node resumes sending.
    pub node_cursor: i64,
    /// The node's state is older than what the hub acknowledged (restored from a backup).
    pub resync: bool,
    /// Sent first, page by page, before the change log (only for a node new after compaction,
    /// or behind its log position, or restored).
    pub snapshot: Option<Snapshot>,
    /// The hub log position the node's stream continues from.
    pub hub_cursor: i64,
}

pub fn hello(
    conn: &Connection,
    clock: &Clock,
    node: &ActorId,
    hello: &pb::Hello,
) -> Result<Session> {
    let is_new = nodes::hello(
        conn,
        node.as_str(),
        &hello.release,
        hello.protocol_version,
        hello.last_seq,
    )?;
    let row = nodes::get(conn, node.as_str())?.ok_or(HubError::NotFound("node"))?;
    let resync = hello.last_seq < row.node_cursor;
    if resync {
        tracing::warn!(node = %node, node_last_seq = hello.last_seq, hub_acknowledged = row.node_cursor,
            "node is behind what the hub acknowledged (restored from an older copy?): re-syncing it");
    }
    let hub_cursor = hello.hub_cursor.max(0);
    nodes::set_hub_cursor(conn, node.as_str(), hub_cursor)?;
    let floor = changes::floor(conn)?;
    // Read later, page by page, by the stream's sender. A restored node also gets its own
    // orders and payments as it last reported them: its copy may predate some of them.
    let snapshot =
        (resync || hub_cursor < floor).then(|| Snapshot::new(node.clone(), hub_cursor, resync));
    if is_new {
        tracing::info!(node = %node, "new node: allocating its floor of every product");
        let policy = policy(conn)?;
        for product in catalog::all_product_ids(conn)? {
            give_floor(conn, clock, policy, node, &product)?;
        }
    }
    Ok(Session {
        node_cursor: row.node_cursor,
        resync,
        snapshot,
        hub_cursor: hub_cursor.max(floor),
    })
}

#[cfg(test)]
mod tests {
    use edgecart_proto::stock::{Entry, EntryKey};
    use edgecart_proto::sync::{StockPayload, UserPayload, entity};

    use super::*;
    use crate::db::Db;

    /// A batch from `node`: sales of product `p1` (stock cells, folded in memory) first, then
    /// enough sizeable accounts to need new database pages.
    fn batch(node: &ActorId, users: usize) -> Vec<pb::Change> {
        let clock = Clock::new(node.clone());
        let mut out = Vec::new();
        for sold in 1..=3u64 {
            out.push(pb::Change {
                seq: 0,
                entity: entity::STOCK.into(),
                entity_id: "p1".into(),
                version: clock.now().to_string(),
                payload_json: serde_json::to_string(&StockPayload {
                    product_id: "p1".into(),
                    entry: Entry {
                        key: EntryKey::Dec(node.clone()),
                        value: sold,
                    },
                })
                .unwrap(),
                ..Default::default()
            });
        }
        for i in 0..users {
            let id = edgecart_proto::ids::new_id().to_string();
            out.push(pb::Change {
                seq: 0,
                entity: entity::USER.into(),
                entity_id: id.clone(),
                version: clock.now().to_string(),
                payload_json: serde_json::to_string(&UserPayload {
                    id,
                    email: Some(format!("user{i}@example.com")),
                    name: "x".repeat(2000),
                    password_hash: None,
                    role: "customer".into(),
                    status: "active".into(),
                    conflicted: false,
                    created_at: 1,
                    updated_at: 1,
                })
                .unwrap(),
                ..Default::default()
            });
        }
        for (i, c) in out.iter_mut().enumerate() {
            c.seq = i as i64 + 1;
        }
        out
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Counts {
        node_cursor: i64,
        users: i64,
        user_changes: i64,
        sold: i64,
        sales: i64,
    }

    async fn counts(db: &Db, node: &ActorId) -> Counts {
        let n = node.to_string();
        db.read(move |c| {
            let one = |sql: &str| -> Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
            Ok(Counts {
                node_cursor: nodes::get(c, &n)?.map_or(-1, |r| r.node_cursor),
                users: one("SELECT count(*) FROM users")?,
                user_changes: one("SELECT count(*) FROM changes WHERE entity = 'user'")?,
                sold: stock::load(c, "p1")?.sold(&ActorId::parse(&n).unwrap()) as i64,
                sales: one("SELECT coalesce(sum(quantity), 0) FROM sales")?,
            })
        })
        .await
        .unwrap()
    }

    async fn apply(db: &Db, node: &ActorId, changes: &[pb::Change]) -> Result<Applied> {
        let (clock, node, changes) = (
            std::sync::Arc::new(Clock::new(ActorId::hub())),
            node.clone(),
            changes.to_vec(),
        );
        db.write(move |tx| apply_batch(tx, &clock, &node, &changes))
            .await
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_stored_leaves_nothing_behind_and_its_retry_applies_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("hub.db")).unwrap();
        let node = ActorId::parse("store-a").unwrap();
        let hello = pb::Hello {
            node_id: node.to_string(),
            protocol_version: edgecart_proto::sync::PROTOCOL_VERSION,
            release: "test".into(),
            hub_cursor: 0,
            last_seq: 0,
        };
        let (clock, n) = (Clock::new(ActorId::hub()), node.clone());
        db.write(move |tx| hello_ok(tx, &clock, &n, &hello))
            .await
            .unwrap();
        let changes = batch(&node, 40);
        let before = counts(&db, &node).await;

        // The disk is "full": the file may not grow by a single page.
        let pages = db.page_count().await.unwrap();
        db.set_max_page_count(pages).await.unwrap();
        let generation = db.subscribe();
        let failed = apply(&db, &node, &changes).await;
        assert!(
            matches!(failed, Err(HubError::Storage(_))),
            "expected a storage error, got {:?}",
            failed.map(|a| a.cursor)
        );
        assert_eq!(
            counts(&db, &node).await,
            before,
            "nothing of the batch kept"
        );
        assert!(!generation.has_changed().unwrap(), "no watcher woken");
        // The connection is usable (no transaction left open) and still refuses to grow.
        assert!(db.read(|c| Ok(c.is_autocommit())).await.unwrap());
        assert!(apply(&db, &node, &changes).await.unwrap_err().is_storage());
        assert_eq!(counts(&db, &node).await, before);

        // Space is back: the node's retry applies the batch once, a replay changes nothing.
        db.set_max_page_count(1 << 30).await.unwrap();
        let applied = apply(&db, &node, &changes).await.unwrap();
        assert_eq!(applied.cursor, changes.len() as i64);
        let expected = Counts {
            node_cursor: changes.len() as i64,
            users: 40,
            user_changes: 40,
            sold: 3,
            sales: 3,
        };
        assert_eq!(counts(&db, &node).await, expected);
        apply(&db, &node, &changes).await.unwrap();
        assert_eq!(counts(&db, &node).await, expected);
    }

    #[tokio::test]
    async fn sales_older_than_the_window_are_pruned_and_the_allocation_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("hub.db")).unwrap();
        let (a, b) = (
            ActorId::parse("store-a").unwrap(),
            ActorId::parse("store-b").unwrap(),
        );
        let (na, nb) = (a.clone(), b.clone());
        db.write(move |tx| {
            for n in [&na, &nb] {
                nodes::hello(tx, n.as_str(), "t", 1, 0)?;
            }
            let delivery = Entry {
                key: EntryKey::Inc(ActorId::hub()),
                value: 100,
            };
            stock::merge_cell(tx, "p1", &delivery)?;
            let now = crate::store::now_ms();
            // Outside the window: big sales that would turn the shares around if they counted.
            // Inside: store-a sold three times what store-b did.
            for (node, age, quantity) in [
                ("store-b", 2 * SALES_WINDOW_MS, 500),
                ("store-a", SALES_WINDOW_MS + 60_000, 200),
                ("store-a", 60_000, 30),
                ("store-b", 1_000, 10),
            ] {
                tx.execute(
                    "INSERT INTO sales (product_id, node_id, at, quantity) VALUES ('p1', ?1, ?2, ?3)",
                    rusqlite::params![node, now - age, quantity],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let plan = || db.read(|c| plan_for(c, &stock::load(c, "p1")?, "p1"));
        let sales = || {
            db.read(|c| {
                Ok(c.query_row(
                    "SELECT count(*), coalesce(sum(quantity), 0) FROM sales",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )?)
            })
        };

        let before = plan().await.unwrap();
        // Default policy: floors of 5, 10 kept in reserve, 80 shared 3:1 by the recent sales.
        assert_eq!(before, vec![(a.clone(), 5 + 60), (b.clone(), 5 + 20)]);
        assert_eq!(db.write(|tx| prune_sales(tx)).await.unwrap(), 2);
        assert_eq!(
            sales().await.unwrap(),
            (2, 40),
            "only the window's sales are left"
        );
        assert_eq!(
            plan().await.unwrap(),
            before,
            "the policy's answer is unchanged"
        );

        // Recording a sale prunes what aged out meanwhile.
        db.write(|tx| {
            tx.execute(
                "INSERT INTO sales (product_id, node_id, at, quantity) VALUES ('p1', 'store-b', 0, 7)",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(sales().await.unwrap(), (3, 47));
        apply(&db, &a, &batch(&a, 0)).await.unwrap();
        assert_eq!(
            sales().await.unwrap(),
            (3, 43),
            "the old row went, the batch's 3 sold units came"
        );
    }

    fn hello_ok(tx: &Connection, clock: &Clock, node: &ActorId, hello: &pb::Hello) -> Result<()> {
        super::hello(tx, clock, node, hello).map(|_| ())
    }
}
