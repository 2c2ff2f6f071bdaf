//! The change log: an append-only outbox with a monotonically increasing sequence number.

use edgecart_proto::hlc::Timestamp;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::db::Tx;
use crate::error::{Error, Result};

/// Appends a change record in the caller's transaction (the outbox rule: the record commits or
/// rolls back together with the change it describes).
pub fn append(
    tx: &Tx,
    entity: &str,
    entity_id: &str,
    version: &Timestamp,
    payload: &impl Serialize,
) -> Result<()> {
    let payload = serde_json::to_string(payload)
        .map_err(|e| Error::Internal(format!("change payload: {e}")))?;
    tx.prepare_cached(
        "INSERT INTO changes (entity, entity_id, version, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        entity,
        entity_id,
        version.to_string(),
        payload,
        crate::time::now_ms()
    ])?;
    Ok(())
}

/// The newest sequence number, and how many entries the hub has not acknowledged yet.
pub struct Backlog {
    pub last_seq: i64,
    pub unacknowledged: i64,
    pub acked_seq: i64,
    pub last_sync_at: Option<i64>,
}

pub fn backlog(conn: &Connection) -> Result<Backlog> {
    let (acked_seq, last_sync_at): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT coalesce(max(acked_seq), 0), max(last_sync_at) FROM sync_peers WHERE peer = 'hub'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (last_seq, unacknowledged): (i64, i64) = conn
        .prepare_cached("SELECT coalesce(max(seq), 0), count(*) FROM changes WHERE seq > ?1")?
        .query_row([acked_seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Backlog {
        last_seq: last_seq.max(acked_seq),
        unacknowledged,
        acked_seq,
        last_sync_at,
    })
}

/// The newest HLC version written to the log, so the clock never runs backwards over a restart.
pub fn last_version(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT version FROM changes ORDER BY seq DESC LIMIT 1")?
        .query_row(params![], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?)
}

/// Change-log entries after `cursor`, oldest first, as wire messages.
pub fn after(
    conn: &Connection,
    cursor: i64,
    limit: usize,
) -> Result<Vec<edgecart_proto::pb::Change>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, entity, entity_id, version, payload FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![cursor, limit as i64], |r| {
            Ok(edgecart_proto::pb::Change {
                seq: r.get(0)?,
                entity: r.get(1)?,
                entity_id: r.get(2)?,
                version: r.get(3)?,
                payload_json: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Where this node stands with the hub: (highest hub change applied here, newest own change).
pub fn cursors(conn: &Connection) -> Result<(i64, i64)> {
    let hub_cursor: i64 = conn
        .prepare_cached("SELECT coalesce(max(hub_cursor), 0) FROM sync_peers WHERE peer = 'hub'")?
        .query_row([], |r| r.get(0))?;
    let last_seq: i64 = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(seq) FROM changes), 0),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0))",
        )?
        .query_row([], |r| r.get(0))?;
    Ok((hub_cursor, last_seq))
}

/// The hub has durably applied everything up to `seq`: remember it and drop those entries
/// (keeping the newest, whose version seeds the clock after a restart).
pub fn acknowledged(tx: &Tx, seq: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE sync_peers SET acked_seq = max(acked_seq, ?1), last_sync_at = ?2 WHERE peer = 'hub'",
    )?
    .execute(params![seq, crate::time::now_ms()])?;
    tx.prepare_cached(
        "DELETE FROM changes WHERE seq <= ?1 AND seq < (SELECT max(seq) FROM changes)",
    )?
    .execute([seq])?;
    Ok(())
}

/// After a restore from an older copy the hub has already acknowledged sequence numbers this
/// node is about to reuse. Renumber the entries the hub may not have (after our own last
/// acknowledged point) past `hub_acked`, and continue the sequence from there, so nothing new
/// is mistaken for a replay.
pub fn renumber_after(tx: &Tx, hub_acked: i64) -> Result<()> {
    let local_acked: i64 = tx
        .prepare_cached("SELECT coalesce(max(acked_seq), 0) FROM sync_peers WHERE peer = 'hub'")?
        .query_row([], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'changes', 0
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes')",
        [],
    )?;
    tx.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'changes'",
        [hub_acked],
    )?;
    tx.execute(
        "INSERT INTO changes (entity, entity_id, version, payload, created_at)
         SELECT entity, entity_id, version, payload, created_at FROM changes
         WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        params![local_acked, hub_acked],
    )?;
    tx.execute(
        "DELETE FROM changes WHERE seq > ?1 AND seq <= ?2",
        params![local_acked, hub_acked],
    )?;
    tx.execute(
        "UPDATE sync_peers SET acked_seq = ?1 WHERE peer = 'hub'",
        [hub_acked],
    )?;
    Ok(())
}

pub fn set_hub_cursor(tx: &Tx, seq: i64) -> Result<()> {
    tx.prepare_cached("UPDATE sync_peers SET hub_cursor = max(hub_cursor, ?1), last_sync_at = ?2 WHERE peer = 'hub'")?
        .execute(params![seq, crate::time::now_ms()])?;
    Ok(())
}
