//! Stock operations at this node, on the product's bounded counter.
//!
//! The counter's cells live in `stock_entries`; every operation loads the product's cells,
//! applies the operation through `BoundedCounter` (which enforces the escrow rule: an actor only
//! consumes rights it holds), writes back the one changed cell, refreshes the derived
//! `stock_levels` row and appends the cell to the change log — all in the caller's transaction.

use edgecart_proto::hlc::Timestamp;
use edgecart_proto::ids::ActorId;
use edgecart_proto::stock::{BoundedCounter, Entry, EntryKey, StockError};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use uuid::Uuid;

use super::model::StockView;
use crate::db::Tx;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::sync::changelog;

/// Who is acting, and when, for a stock operation.
pub struct StockCtx<'a> {
    pub node: &'a ActorId,
    pub version: &'a Timestamp,
    pub low_stock_threshold: u64,
    /// This node noticed it was restored from an older copy and the hub has not re-synced it
    /// yet: sales are checked against [`gate`] (otherwise no query is spent on it).
    pub restore_hold: bool,
}

impl<'a> StockCtx<'a> {
    /// The context of a stock change made at this node now, stamped `version`.
    pub fn new(st: &'a crate::state::Inner, version: &'a Timestamp) -> StockCtx<'a> {
        StockCtx {
            node: &st.node_id,
            version,
            low_stock_threshold: st.low_stock_threshold,
            restore_hold: st.sync.holding_for_restore(),
        }
    }
}

/// Units received at this store: `inc[node] += qty`.
pub fn receive(tx: &Tx, ctx: &StockCtx<'_>, product_id: Uuid, qty: u64) -> Result<StockView> {
    mutate(tx, ctx, product_id, |c| c.add(ctx.node, qty))
}

/// Units released back to this store (a cancelled order): also `inc[node] += qty`.
pub fn release(tx: &Tx, ctx: &StockCtx<'_>, product_id: Uuid, qty: u64) -> Result<StockView> {
    receive(tx, ctx, product_id, qty)
}

/// Units sold (or written off) here: `dec[node] += qty`, only within this node's rights.
/// Refusal is a 409 carrying both figures: what this store can sell and the global stock.
pub fn consume(tx: &Tx, ctx: &StockCtx<'_>, product_id: Uuid, qty: u64) -> Result<StockView> {
    if ctx.restore_hold {
        gate(tx, product_id)?;
    }
    mutate(tx, ctx, product_id, |c| c.sell(ctx.node, qty))
}

/// A product's counter as this node knows it: its own cells, the transfers into and out of it,
/// and the other actors' net stock as last told by the hub (not their cells: O(products) data).
struct Known {
    counter: BoundedCounter,
    others_net: i64,
}

fn view(known: &Known, node: &ActorId) -> StockView {
    let own_net = known.counter.received(node) as i64 - known.counter.sold(node) as i64;
    StockView {
        available_here: known.counter.rights(node).max(0),
        // A cell can arrive before the one it depended on (a sale before the delivery); the
        // transient negative total means "none".
        // `others_net` comes from the hub: never let a hostile or broken figure wrap the sum.
        global: own_net.saturating_add(known.others_net).max(0),
    }
}

/// Merges a cell received from the hub (a transfer into this node, or on a re-sync this node's
/// own cell as the hub last saw it) and refreshes the derived stock level. Cells are max-merged,
/// except this node's own cells on a re-sync after a restore, which are re-based (see
/// [`remember_boot_cells`]); `version` stamps the change that reports a re-based cell back.
pub fn merge_remote(
    tx: &Tx,
    node: &ActorId,
    product_id: Uuid,
    entry: &Entry,
    version: impl FnOnce() -> Timestamp,
) -> Result<()> {
    let (kind, actor, target) = entry.key.parts();
    let boot: Option<i64> = if actor == node.as_str() {
        tx.prepare_cached(
            "DELETE FROM temp.stock_at_boot WHERE product_id = ?1 AND kind = ?2 AND actor = ?3 AND target = ?4
             RETURNING value",
        )?
        .query_row(params![product_id.to_string(), kind, actor, target], |r| r.get(0))
        .optional()?
    } else {
        None
    };
    match boot {
        // Restored from an older copy: the hub's value counts everything this node did before the
        // copy was lost; what it did since this start (local − boot) comes on top.
        Some(boot) => {
            let local: i64 = tx
                .prepare_cached(
                    "SELECT value FROM stock_entries
                     WHERE product_id = ?1 AND kind = ?2 AND actor = ?3 AND target = ?4",
                )?
                .query_row(params![product_id.to_string(), kind, actor, target], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0);
            let hub = i64::try_from(entry.value).map_err(|_| too_large())?;
            let rebased = hub
                .max(boot)
                .checked_add((local - boot).max(0))
                .ok_or_else(too_large)?;
            let rebased = Entry {
                key: entry.key.clone(),
                value: rebased as u64,
            };
            save_entry(tx, product_id, &rebased)?;
            if rebased.value > entry.value {
                changelog::append(
                    tx,
                    "stock",
                    &product_id.to_string(),
                    &version(),
                    &json!({ "product_id": product_id, "entry": rebased }),
                )?;
            }
        }
        None => save_entry(tx, product_id, entry)?,
    }
    refresh(tx, node, product_id).map(|_| ())
}

/// Remembers, at start-up, the cells this node itself increments (its `inc`, `dec` and outgoing
/// `xfer`), in a temporary table of the writer connection. If the hub then says this database
/// is older than what it acknowledged (restored from a copy), the re-sync adds what was done
/// since start-up on top of the hub's values instead of max-merging, which would lose it: see
/// [`merge_remote`]. Otherwise [`forget_boot_cells`] drops them at the first connection.
///
/// `restored`: this node itself found its database older than what it had written (see
/// `sync::watermark`). Then it may not sell a product whose own cells are still waiting to be
/// re-based ([`gate`]): the old copy may count rights it already spent.
pub fn remember_boot_cells(tx: &Tx, node: &ActorId, restored: bool) -> Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS stock_at_boot (
             product_id TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, target TEXT NOT NULL,
             value INTEGER NOT NULL, PRIMARY KEY (product_id, kind, actor, target));
         CREATE TEMP TABLE IF NOT EXISTS restore_gate (on_since INTEGER NOT NULL);
         DELETE FROM temp.stock_at_boot;
         DELETE FROM temp.restore_gate;",
    )?;
    if restored {
        tx.prepare_cached("INSERT INTO temp.restore_gate (on_since) VALUES (?1)")?
            .execute([crate::time::now_ms()])?;
    }
    tx.prepare_cached(
        "INSERT INTO temp.stock_at_boot SELECT product_id, kind, actor, target, value
         FROM main.stock_entries WHERE actor = ?1",
    )?
    .execute([node.as_str()])?;
    Ok(())
}

/// The hub confirmed this database is not behind it (no re-basing needed), or has sent
/// everything of a re-sync (what is left was never known to it): selling is open again.
pub fn forget_boot_cells(tx: &Tx) -> Result<()> {
    tx.execute_batch("DELETE FROM temp.stock_at_boot; DELETE FROM temp.restore_gate;")?;
    Ok(())
}

/// Refuses to take units of `product_id` while this node, restored from an older copy, still
/// waits for the hub's values of its own cells of that product.
fn gate(tx: &Tx, product_id: Uuid) -> Result<()> {
    let closed = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM temp.restore_gate)
                AND EXISTS (SELECT 1 FROM temp.stock_at_boot WHERE product_id = ?1)",
        )?
        .query_row([product_id.to_string()], |r| r.get::<_, bool>(0))?;
    if closed {
        return Err(Error::Resyncing);
    }
    Ok(())
}

/// Records the other actors' net stock if `version` is newer than what is stored.
pub fn set_others(
    tx: &Tx,
    node: &ActorId,
    product_id: Uuid,
    others_net: i64,
    version: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO stock_remote (product_id, others_net, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (product_id) DO UPDATE SET others_net = excluded.others_net, version = excluded.version
         WHERE excluded.version > stock_remote.version",
    )?
    .execute(params![product_id.to_string(), others_net, version])?;
    refresh(tx, node, product_id).map(|_| ())
}

/// Hands up to `quantity` unused rights back to the hub (`xfer[node→hub]`); returns the amount.
pub fn hand_back(tx: &Tx, ctx: &StockCtx<'_>, product_id: Uuid, quantity: u64) -> Result<u64> {
    let known = load(tx, product_id)?;
    let give = quantity.min(known.counter.rights(ctx.node).max(0) as u64);
    if give > 0 {
        mutate(tx, ctx, product_id, |c| {
            c.transfer(ctx.node, &ActorId::hub(), give)
        })?;
    }
    Ok(give)
}

fn refresh(tx: &Tx, node: &ActorId, product_id: Uuid) -> Result<StockView> {
    let level = view(&load(tx, product_id)?, node);
    write_level(tx, product_id, &level)?;
    Ok(level)
}

fn write_level(tx: &Tx, product_id: Uuid, level: &StockView) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO stock_levels (product_id, available_here, global) VALUES (?1, ?2, ?3)
         ON CONFLICT (product_id) DO UPDATE SET available_here = excluded.available_here,
             global = excluded.global",
    )?
    .execute(params![
        product_id.to_string(),
        level.available_here,
        level.global
    ])?;
    Ok(())
}

fn mutate(
    tx: &Tx,
    ctx: &StockCtx<'_>,
    product_id: Uuid,
    op: impl FnOnce(&mut BoundedCounter) -> std::result::Result<Entry, StockError>,
) -> Result<StockView> {
    let mut known = load(tx, product_id)?;
    let before = view(&known, ctx.node);
    let entry = op(&mut known.counter).map_err(|e| stock_error(e, product_id, known.others_net))?;
    save_entry(tx, product_id, &entry)?;
    changelog::append(
        tx,
        "stock",
        &product_id.to_string(),
        ctx.version,
        &json!({ "product_id": product_id, "entry": entry }),
    )?;
    let after = view(&known, ctx.node);
    write_level(tx, product_id, &after)?;
    let threshold = i64::try_from(ctx.low_stock_threshold).unwrap_or(i64::MAX);
    if before.available_here >= threshold && after.available_here < threshold {
        let product_name: String = tx
            .prepare_cached("SELECT name FROM products WHERE id = ?1")?
            .query_row([product_id.to_string()], |r| r.get(0))?;
        events::publish(
            tx,
            &Event::LowStock {
                product_id,
                product_name,
                available_here: after.available_here,
            },
        )?;
    }
    Ok(after)
}

fn stock_error(e: StockError, product_id: Uuid, others_net: i64) -> Error {
    match e {
        StockError::Insufficient {
            requested,
            rights,
            global,
        } => {
            let global = global.saturating_add(others_net);
            let mut err = Error::conflict(
                "insufficient-stock",
                format!(
                    "only {} of product {product_id} can be sold at this store (requested {requested})",
                    rights.max(0)
                ),
            );
            if let Error::Conflict { extra, .. } = &mut err {
                extra.insert("product_id".into(), json!(product_id));
                extra.insert("requested".into(), json!(requested));
                extra.insert("available_here".into(), json!(rights.max(0)));
                extra.insert("global".into(), json!(global.max(0)));
            }
            err
        }
        StockError::ZeroQuantity => Error::invalid("quantity", "must be positive"),
        other => Error::invalid("quantity", other.to_string()),
    }
}

fn load(conn: &Connection, product_id: Uuid) -> Result<Known> {
    let others_net: i64 = conn
        .prepare_cached("SELECT others_net FROM stock_remote WHERE product_id = ?1")?
        .query_row([product_id.to_string()], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    Ok(Known {
        counter: load_counter(conn, product_id)?,
        others_net,
    })
}

fn load_counter(conn: &Connection, product_id: Uuid) -> Result<BoundedCounter> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, actor, target, value FROM stock_entries WHERE product_id = ?1",
    )?;
    let rows = stmt.query_map([product_id.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut entries = Vec::new();
    for row in rows {
        let (kind, actor, target, value) = row?;
        let key = EntryKey::from_parts(&kind, &actor, &target)
            .map_err(|e| Error::Internal(format!("stored cell: {e}")))?;
        entries.push(Entry {
            key,
            value: u64::try_from(value).unwrap_or(0),
        });
    }
    Ok(BoundedCounter::from_entries(entries))
}

/// Max-merges one cell into storage (a cell never shrinks, so replays are harmless).
fn save_entry(tx: &Tx, product_id: Uuid, entry: &Entry) -> Result<()> {
    let (kind, actor, target) = entry.key.parts();
    let value = i64::try_from(entry.value).map_err(|_| too_large())?;
    tx.prepare_cached(
        "INSERT INTO stock_entries (product_id, kind, actor, target, value) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (product_id, kind, actor, target) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(params![product_id.to_string(), kind, actor, target, value])?;
    Ok(())
}

/// A cell may hold at most `i64::MAX` (SQLite's integer): a change past it is refused before
/// anything is written, never wrapped.
fn too_large() -> Error {
    Error::invalid(
        "quantity",
        format!("would take this product's stock count past {}", i64::MAX),
    )
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
mod tests;
