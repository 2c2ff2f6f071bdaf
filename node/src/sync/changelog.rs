//! The change log: an append-only outbox with a monotonically increasing sequence number.
//!
//! On a node connected to a hub the log is bounded by what the hub has not acknowledged yet
//! ([`acknowledged`] deletes the rest). A standalone node never gets an acknowledgement, so it
//! compacts instead ([`compact`]): every entry is the whole state of one entity (a user, a
//! product, an order, a payment with its refunds) or the value of one grow-only stock cell, and
//! the hub applies them last-version-wins or max-merge, so only the newest entry per entity
//! (per cell for stock) can matter to a hub this node is connected to later. The log then holds
//! one entry per live record, never one per operation.

use edgecart_proto::hlc::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
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
    // The trace context of the request that queued this write (none when traces are off), so
    // the hub's work on the entry joins that trace.
    let trace = crate::telemetry::job_context();
    tx.prepare_cached(
        "INSERT INTO changes (entity, entity_id, version, payload, created_at, traceparent, tracestate)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, nullif(?7, ''))",
    )?
    .execute(params![
        entity,
        entity_id,
        version.to_string(),
        payload,
        crate::time::now_ms(),
        trace.as_ref().map(|t| t.traceparent.as_str()),
        trace.as_ref().map(|t| t.tracestate.as_str()),
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
        "SELECT seq, entity, entity_id, version, payload, coalesce(traceparent, ''), coalesce(tracestate, '')
         FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![cursor, limit as i64], |r| {
            Ok(edgecart_proto::pb::Change {
                seq: r.get(0)?,
                entity: r.get(1)?,
                entity_id: r.get(2)?,
                version: r.get(3)?,
                payload_json: r.get(4)?,
                traceparent: r.get(5)?,
                tracestate: r.get(6)?,
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
        "INSERT INTO changes (entity, entity_id, version, payload, created_at, traceparent, tracestate)
         SELECT entity, entity_id, version, payload, created_at, traceparent, tracestate FROM changes
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

/// New entries compacted per write transaction, so a long log never holds the writer for long.
const COMPACT_BATCH: i64 = 200;

/// Deletes the entries superseded by the (up to [`COMPACT_BATCH`]) entries after `after`: older
/// entries of the same entity, and for stock of the same cell (`$.entry.key`; NULL, i.e. the
/// same, for every other entity). The newest entry of each key, and so the newest of the log
/// whose version seeds the clock, always stays. Returns the last sequence number looked at
/// (`None` at the end of the log) and how many entries went.
pub fn compact_after(tx: &Tx, after: i64) -> Result<(Option<i64>, usize)> {
    let end: Option<i64> = tx
        .prepare_cached(
            "SELECT max(seq) FROM (SELECT seq FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        )?
        .query_row(params![after, COMPACT_BATCH], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(end) = end else {
        return Ok((None, 0));
    };
    // The key expression matches the index of migration 0004, so each newer entry costs a
    // probe for its older twins, not a scan.
    let deleted = tx
        .prepare_cached(
            "DELETE FROM changes WHERE seq IN (
                 SELECT older.seq FROM changes AS newer JOIN changes AS older
                   ON older.entity = newer.entity AND older.entity_id = newer.entity_id
                  AND json_extract(older.payload, '$.entry.key')
                      IS json_extract(newer.payload, '$.entry.key')
                  AND older.seq < newer.seq
                 WHERE newer.seq > ?1 AND newer.seq <= ?2)",
        )?
        .execute(params![after, end])?;
    Ok((Some(end), deleted))
}

/// Compacts the entries after `after` in batches; returns the new end of what was compacted
/// and how many entries went.
pub async fn compact(db: &crate::db::Db, mut after: i64) -> Result<(i64, usize)> {
    let mut total = 0;
    loop {
        let (next, deleted) = db.write(move |tx| compact_after(tx, after)).await?;
        total += deleted;
        match next {
            Some(end) => after = end,
            None => return Ok((after, total)),
        }
    }
}

/// A standalone node's compaction loop: the whole log once at start, then every `every` the
/// entries written since, until `stop`.
pub async fn compact_periodically(
    db: crate::db::Db,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut done = 0;
    loop {
        match compact(&db, done).await {
            Ok((end, deleted)) => {
                done = end;
                if deleted > 0 {
                    tracing::info!(deleted, "compacted the change log (standalone node)");
                }
            }
            // A busy or failing disk: try again next time, from the same point.
            Err(e) => tracing::warn!(error = %e, "change-log compaction failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
