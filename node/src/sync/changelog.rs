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
