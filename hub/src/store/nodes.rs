//! The registry of nodes and their sync cursors.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct NodeRow {
    pub node_id: String,
    pub node_cursor: i64,
    pub hub_cursor: i64,
    pub node_last_seq: i64,
    pub release: String,
    pub protocol_version: u32,
    pub last_seen: i64,
    /// When the node was decommissioned; `None` while it is active.
    pub decommissioned_at: Option<i64>,
}

const COLUMNS: &str = "node_id, node_cursor, hub_cursor, node_last_seq, release, protocol_version, \
     last_seen, decommissioned_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        node_id: r.get(0)?,
        node_cursor: r.get(1)?,
        hub_cursor: r.get(2)?,
        node_last_seq: r.get(3)?,
        release: r.get(4)?,
        protocol_version: r.get(5)?,
        last_seen: r.get(6)?,
        decommissioned_at: r.get(7)?,
    })
}

pub fn get(conn: &Connection, node: &str) -> Result<Option<NodeRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM nodes WHERE node_id = ?1"))?
        .query_row([node], row)
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<NodeRow>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM nodes ORDER BY node_id"))?;
    let rows = stmt
        .query_map([], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The active nodes: the ones that get allocations, stock figures and hand-back requests. A
/// decommissioned node is in [`list`] but not here.
pub fn ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT node_id FROM nodes WHERE decommissioned_at IS NULL ORDER BY node_id",
    )?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Records a node's Hello. Returns true if the node is new.
pub fn hello(
    conn: &Connection,
    node: &str,
    release: &str,
    version: u32,
    last_seq: i64,
) -> Result<bool> {
    let now = super::now_ms();
    let n = conn
        .prepare_cached(
            "INSERT INTO nodes (node_id, release, protocol_version, node_last_seq, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (node_id) DO NOTHING",
        )?
        .execute(params![node, release, version, last_seq, now])?;
    if n == 0 {
        conn.prepare_cached(
            "UPDATE nodes SET release = ?2, protocol_version = ?3, node_last_seq = ?4, last_seen = ?5
             WHERE node_id = ?1",
        )?
        .execute(params![node, release, version, last_seq, now])?;
    }
    Ok(n == 1)
}

pub fn set_node_cursor(conn: &Connection, node: &str, cursor: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE nodes SET node_cursor = max(node_cursor, ?2),
             node_last_seq = max(node_last_seq, ?2), last_seen = ?3 WHERE node_id = ?1",
    )?
    .execute(params![node, cursor, super::now_ms()])?;
    Ok(())
}

/// The node's acknowledged hub cursor. Unlike the node cursor it may move back: a node restored
/// from a backup re-reads what it lost.
pub fn set_hub_cursor(conn: &Connection, node: &str, cursor: i64) -> Result<()> {
    conn.prepare_cached("UPDATE nodes SET hub_cursor = ?2, last_seen = ?3 WHERE node_id = ?1")?
        .execute(params![node, cursor, super::now_ms()])?;
    Ok(())
}

pub fn seen(conn: &Connection, node: &str, last_seq: Option<i64>) -> Result<()> {
    conn.prepare_cached(
        "UPDATE nodes SET last_seen = ?2, node_last_seq = max(node_last_seq, coalesce(?3, 0))
         WHERE node_id = ?1",
    )?
    .execute(params![node, super::now_ms(), last_seq])?;
    Ok(())
}

pub fn is_decommissioned(conn: &Connection, node: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT decommissioned_at IS NOT NULL FROM nodes WHERE node_id = ?1")?
        .query_row([node], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// Marks the node decommissioned at `at` (once: a second call keeps the first time). Returns
/// true if it was active.
pub fn decommission(conn: &Connection, node: &str, at: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE nodes SET decommissioned_at = ?2 WHERE node_id = ?1 AND decommissioned_at IS NULL",
        )?
        .execute(params![node, at])?;
    Ok(n == 1)
}
