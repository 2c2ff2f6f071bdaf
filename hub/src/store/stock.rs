//! Bounded stock counters at the hub (which holds every actor's cells).

use edgecart_proto::ids::ActorId;
use edgecart_proto::stock::{BoundedCounter, Entry, EntryKey};
use edgecart_proto::sync::{StockOthersPayload, StockPayload, entity};
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

/// Tells every node (but `except`) the new net stock of the others, so their `stock.global` follows.
pub fn broadcast_others(
    conn: &Connection,
    product_id: &str,
    counter: &BoundedCounter,
    nodes: &[String],
    except: Option<&str>,
    version: &str,
) -> Result<()> {
    for node in nodes.iter().filter(|n| Some(n.as_str()) != except) {
        let Ok(actor) = ActorId::parse(node) else {
            continue;
        };
        let payload = StockOthersPayload {
            product_id: product_id.to_string(),
            others_net: others_net(counter, &actor),
        };
        changes::append(
            conn,
            Some(node),
            entity::STOCK_OTHERS,
            product_id,
            version,
            &serde_json::to_string(&payload)?,
        )?;
    }
    Ok(())
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
