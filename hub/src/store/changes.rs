//! The hub's outbox: changes for every node (audience NULL) or for one node.

use edgecart_proto::pb;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

pub fn append(
    conn: &Connection,
    audience: Option<&str>,
    entity: &str,
    entity_id: &str,
    version: &str,
    payload: &str,
) -> Result<i64> {
    append_traced(
        conn,
        audience,
        entity,
        entity_id,
        version,
        payload,
        ("", ""),
    )
}

/// [`append`] with the W3C trace context (`traceparent`, `tracestate`; empty for none) the
/// entry carries to the node, so the node's apply joins that trace.
pub fn append_traced(
    conn: &Connection,
    audience: Option<&str>,
    entity: &str,
    entity_id: &str,
    version: &str,
    payload: &str,
    (traceparent, tracestate): (&str, &str),
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO changes (audience, entity, entity_id, version, payload, created_at,
                              traceparent, tracestate)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, nullif(?7, ''), nullif(?8, ''))",
    )?
    .execute(params![
        audience,
        entity,
        entity_id,
        version,
        payload,
        super::now_ms(),
        traceparent,
        tracestate
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Changes for `node` after `cursor`, oldest first: two ranges of `changes_by_audience` (the
/// node's own and those for every node) merged in order, so the read costs what it returns,
/// not the other stores' entries in between.
pub fn for_node(
    conn: &Connection,
    node: &str,
    cursor: i64,
    limit: usize,
) -> Result<Vec<pb::Change>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, entity, entity_id, version, payload, coalesce(traceparent, ''),
                coalesce(tracestate, '') FROM changes WHERE audience = ?2 AND seq > ?1
         UNION ALL
         SELECT seq, entity, entity_id, version, payload, coalesce(traceparent, ''),
                coalesce(tracestate, '') FROM changes WHERE audience IS NULL AND seq > ?1
         ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![cursor, node, limit as i64], |r| {
            Ok(pb::Change {
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

/// How many changes for `node` lie after `cursor`.
pub fn pending_for(conn: &Connection, node: &str, cursor: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM changes WHERE seq > ?1 AND (audience IS NULL OR audience = ?2)",
        )?
        .query_row(params![cursor, node], |r| r.get(0))?)
}

pub fn last_seq(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

/// Oldest sequence still stored minus one: a node whose cursor is below it needs a snapshot.
pub fn floor(conn: &Connection) -> Result<i64> {
    // Only "never compacted" means 0: a failed read must not pass for it (a node would then be
    // streamed from a cursor whose changes are gone instead of getting a snapshot).
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'compacted_through'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Deletes the changes every active node has acknowledged (bounded growth). A decommissioned
/// node never reads the log again, so it holds nothing back.
pub fn compact(conn: &Connection) -> Result<usize> {
    let Some(min): Option<i64> = conn.query_row(
        "SELECT min(hub_cursor) FROM nodes WHERE decommissioned_at IS NULL",
        [],
        |r| r.get(0),
    )?
    else {
        return Ok(0);
    };
    if min <= floor(conn)? {
        return Ok(0);
    }
    let deleted = conn.execute("DELETE FROM changes WHERE seq <= ?1", [min])?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('compacted_through', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [min.to_string()],
    )?;
    Ok(deleted)
}
