//! Bounded stock counters at the hub (which holds every actor's cells).

use std::collections::HashMap;

use edgecart_proto::ids::ActorId;
use edgecart_proto::stock::{BoundedCounter, Entry, EntryKey};
use edgecart_proto::sync::{StockPayload, entity};
use rusqlite::{Connection, OptionalExtension, params};

use super::changes;
use crate::error::{HubError, Result};

pub fn load(conn: &Connection, product_id: &str) -> Result<BoundedCounter> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, actor, target, value FROM stock_entries WHERE product_id = ?1",
    )?;
    let rows = stmt.query_map([product_id], |r| {
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
            .map_err(|e| HubError::Internal(e.to_string()))?;
        entries.push(Entry {
            key,
            value: u64::try_from(value).unwrap_or(0),
        });
    }
    Ok(BoundedCounter::from_entries(entries))
}

/// Max-merges one cell. Returns by how much it grew (0 for a replay or a stale cell).
pub fn merge_cell(conn: &Connection, product_id: &str, entry: &Entry) -> Result<u64> {
    let (kind, actor, target) = entry.key.parts();
    let value =
        i64::try_from(entry.value).map_err(|_| HubError::invalid("entry.value", "too large"))?;
    let old: i64 = conn
        .prepare_cached(
            "SELECT value FROM stock_entries WHERE product_id = ?1 AND kind = ?2 AND actor = ?3 AND target = ?4",
        )?
        .query_row(params![product_id, kind, actor, target], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if value <= old {
        return Ok(0);
    }
    conn.prepare_cached(
        "INSERT INTO stock_entries (product_id, kind, actor, target, value) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (product_id, kind, actor, target) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(params![product_id, kind, actor, target, value])?;
    Ok((value - old) as u64)
}

/// Net stock of every actor but `node`.
pub fn others_net(counter: &BoundedCounter, node: &ActorId) -> i64 {
    counter.global() - (counter.received(node) as i64 - counter.sold(node) as i64)
}

/// The value of one cell (0 when it does not exist yet).
pub fn cell(conn: &Connection, product_id: &str, key: &EntryKey) -> Result<u64> {
    let (kind, actor, target) = key.parts();
    let value: Option<i64> = conn
        .prepare_cached(
            "SELECT value FROM stock_entries WHERE product_id = ?1 AND kind = ?2 AND actor = ?3 AND target = ?4",
        )?
        .query_row(params![product_id, kind, actor, target], |r| r.get(0))
        .optional()?;
    Ok(value.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

/// Keeps every actor's selling rights per product on the writer's connection, so that a join
/// or a top-up asks for one actor's rights with a primary-key lookup instead of loading the
/// product's counter (a cell per store): `temp.stock_rights`, filled from `stock_entries` when
/// the hub starts and kept up to date by temporary triggers on it. Triggers run inside the
/// writing transaction, so the figures roll back with it (or with a job's savepoint) and cannot
/// drift from the cells, whoever writes them through this connection. Nothing is stored on disk
/// (no migration); the readers do not see it.
///
/// rights(a) = inc[a] − dec[a] + Σ xfer[x→a] − Σ xfer[a→y], as `BoundedCounter::rights`.
pub fn install_rights(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "PRAGMA temp_store = MEMORY;
         CREATE TEMP TABLE IF NOT EXISTS stock_rights (
             product_id TEXT NOT NULL,
             actor      TEXT NOT NULL,
             rights     INTEGER NOT NULL,
             PRIMARY KEY (product_id, actor)
         ) WITHOUT ROWID;
         DELETE FROM temp.stock_rights;
         INSERT INTO temp.stock_rights (product_id, actor, rights)
             SELECT product_id, actor, sum(rights) FROM (
                 SELECT product_id, actor,
                        CASE kind WHEN 'inc' THEN value ELSE -value END AS rights
                 FROM main.stock_entries
                 UNION ALL
                 SELECT product_id, target, value FROM main.stock_entries WHERE kind = 'xfer'
             ) GROUP BY product_id, actor;
         CREATE TEMP TRIGGER IF NOT EXISTS stock_rights_insert
         AFTER INSERT ON main.stock_entries BEGIN
             INSERT INTO stock_rights (product_id, actor, rights)
                 VALUES (NEW.product_id, NEW.actor,
                         CASE NEW.kind WHEN 'inc' THEN NEW.value ELSE -NEW.value END)
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
             INSERT INTO stock_rights (product_id, actor, rights)
                 SELECT NEW.product_id, NEW.target, NEW.value WHERE NEW.kind = 'xfer'
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
         END;
         CREATE TEMP TRIGGER IF NOT EXISTS stock_rights_delete
         AFTER DELETE ON main.stock_entries BEGIN
             INSERT INTO stock_rights (product_id, actor, rights)
                 VALUES (OLD.product_id, OLD.actor,
                         CASE OLD.kind WHEN 'inc' THEN -OLD.value ELSE OLD.value END)
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
             INSERT INTO stock_rights (product_id, actor, rights)
                 SELECT OLD.product_id, OLD.target, -OLD.value WHERE OLD.kind = 'xfer'
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
         END;
         CREATE TEMP TRIGGER IF NOT EXISTS stock_rights_update
         AFTER UPDATE ON main.stock_entries BEGIN
             INSERT INTO stock_rights (product_id, actor, rights)
                 VALUES (OLD.product_id, OLD.actor,
                         CASE OLD.kind WHEN 'inc' THEN -OLD.value ELSE OLD.value END)
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
             INSERT INTO stock_rights (product_id, actor, rights)
                 SELECT OLD.product_id, OLD.target, -OLD.value WHERE OLD.kind = 'xfer'
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
             INSERT INTO stock_rights (product_id, actor, rights)
                 VALUES (NEW.product_id, NEW.actor,
                         CASE NEW.kind WHEN 'inc' THEN NEW.value ELSE -NEW.value END)
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
             INSERT INTO stock_rights (product_id, actor, rights)
                 SELECT NEW.product_id, NEW.target, NEW.value WHERE NEW.kind = 'xfer'
                 ON CONFLICT (product_id, actor) DO UPDATE SET rights = rights + excluded.rights;
         END;",
    )?;
    Ok(())
}

/// Selling rights of `actor` for a product, from [`install_rights`]'s table: on the writer's
/// connection only (elsewhere the table does not exist and this fails).
pub fn rights_of(conn: &Connection, product_id: &str, actor: &ActorId) -> Result<i64> {
    let rights: Option<i64> = conn
        .prepare_cached(
            "SELECT rights FROM temp.stock_rights WHERE product_id = ?1 AND actor = ?2",
        )?
        .query_row(params![product_id, actor.as_str()], |r| r.get(0))
        .optional()?;
    Ok(rights.unwrap_or(0))
}

/// Every actor's selling rights in `counter`, in one pass over its cells.
pub fn rights_by_actor(counter: &BoundedCounter) -> HashMap<ActorId, i64> {
    let mut rights: HashMap<ActorId, i64> = HashMap::new();
    let mut add = |a: &ActorId, v: i64| {
        let r = rights.entry(a.clone()).or_insert(0);
        *r = r.saturating_add(v);
    };
    for e in counter.entries() {
        let v = i64::try_from(e.value).unwrap_or(i64::MAX);
        match &e.key {
            EntryKey::Inc(a) => add(a, v),
            EntryKey::Dec(a) => add(a, -v),
            EntryKey::Xfer { from, to } => {
                add(to, v);
                add(from, -v);
            }
        }
    }
    rights
}

/// Sends one cell to the node it concerns (a transfer into it, or its own cell on a re-sync).
pub fn send_cell(
    conn: &Connection,
    node: &str,
    product_id: &str,
    entry: &Entry,
    version: &str,
) -> Result<()> {
    let payload = StockPayload {
        product_id: product_id.to_string(),
        entry: entry.clone(),
    };
    changes::append(
        conn,
        Some(node),
        entity::STOCK,
        product_id,
        version,
        &serde_json::to_string(&payload)?,
    )?;
    Ok(())
}

/// Every `inc` and `dec` cell of every product: what the global figures are made of (read once,
/// when the hub starts).
pub fn figure_cells(conn: &Connection) -> Result<Vec<(String, Entry)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT product_id, kind, actor, target, value FROM stock_entries WHERE kind IN ('inc', 'dec')",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut cells = Vec::new();
    for row in rows {
        let (product, kind, actor, target, value) = row?;
        let key = EntryKey::from_parts(&kind, &actor, &target)
            .map_err(|e| HubError::Internal(e.to_string()))?;
        cells.push((
            product,
            Entry {
                key,
                value: u64::try_from(value).unwrap_or(0),
            },
        ));
    }
    Ok(cells)
}

/// Up to `limit` product ids that have stock cells, after `after`, in order.
pub fn products_page(conn: &Connection, after: &str, limit: usize) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT product_id FROM stock_entries WHERE product_id > ?1 ORDER BY product_id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Every product id that has stock cells.
pub fn products(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT product_id FROM stock_entries ORDER BY product_id")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn record_sale(conn: &Connection, product_id: &str, node: &str, quantity: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sales (product_id, node_id, at, quantity) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![product_id, node, super::now_ms(), quantity as i64])?;
    Ok(())
}

/// Deletes the sales recorded before `before_ms` (what [`recent_sales`] no longer reads).
pub fn prune_sales(conn: &Connection, before_ms: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM sales WHERE at < ?1")?
        .execute([before_ms])?)
}

/// Units each node sold of a product since `since_ms`.
pub fn recent_sales(
    conn: &Connection,
    product_id: &str,
    since_ms: i64,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node_id, sum(quantity) FROM sales WHERE product_id = ?1 AND at >= ?2 GROUP BY node_id",
    )?;
    let rows = stmt
        .query_map(params![product_id, since_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
#[path = "stock_tests.rs"]
mod tests;
