//! User accounts, replicated LWW, with email uniqueness arbitrated here: the first account the
//! hub sees keeps an email; a later account with the same email elsewhere is marked conflicted.
//!
//! Least data per store: an account goes only to the stores that hold it (`user_stores`): the
//! store it was registered at, and every store the customer signed in at since ([`hold`]).

use edgecart_proto::pb;
use edgecart_proto::sync::{UserPayload, entity};
use rusqlite::{Connection, OptionalExtension, params};

use super::changes;
use crate::error::Result;

/// Applies a user from a node; returns the state to broadcast when anything changed.
/// The store account `id` was registered at: `None` when the hub does not have it,
/// `Some(None)` for an account from before origins were recorded (or made at the hub).
pub fn origin(conn: &Connection, id: &str) -> Result<Option<Option<String>>> {
    Ok(conn
        .prepare_cached("SELECT origin_node FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Applies a user from store `node` (recorded as its origin when the account is new).
pub fn apply(
    conn: &Connection,
    u: &UserPayload,
    node: &str,
    version: &str,
    hub_version: impl FnOnce() -> String,
) -> Result<bool> {
    let existing: Option<(String, bool)> = conn
        .prepare_cached("SELECT version, conflicted FROM users WHERE id = ?1")?
        .query_row([&u.id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))
        .optional()?;
    let (mut state, mut version) = (u.clone(), version.to_string());
    match &existing {
        Some((stored, _)) if stored.as_str() >= version.as_str() => return Ok(false),
        // Once conflicted, always conflicted: the decision does not flip with later edits.
        Some((_, true)) => state.conflicted = true,
        _ => {}
    }
    if !state.conflicted
        && let Some(email) = &state.email
    {
        let taken = conn
            .prepare_cached("SELECT 1 FROM users WHERE email = ?1 AND conflicted = 0 AND id != ?2")?
            .exists(params![email, state.id])?;
        if taken {
            state.conflicted = true;
            // The hub's decision is a new write, so it wins over the node's version everywhere.
            version = hub_version();
            tracing::info!(user_id = %state.id, "registration conflicts with an existing account's email");
        }
    }
    conn.prepare_cached(
        "INSERT INTO users (id, email, name, password_hash, role, status, conflicted, created_at, updated_at, version, origin_node)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name,
             password_hash = excluded.password_hash, role = excluded.role, status = excluded.status,
             conflicted = excluded.conflicted, updated_at = excluded.updated_at, version = excluded.version",
    )?
    .execute(params![
        state.id,
        state.email,
        state.name,
        state.password_hash,
        state.role,
        state.status,
        state.conflicted as i64,
        state.created_at,
        state.updated_at,
        version,
        node
    ])?;
    conn.prepare_cached("INSERT OR IGNORE INTO user_stores (user_id, node_id) VALUES (?1, ?2)")?
        .execute(params![state.id, node])?;
    let payload = serde_json::to_string(&state)?;
    for holder in holders(conn, &state.id)? {
        changes::append(
            conn,
            Some(&holder),
            entity::USER,
            &state.id,
            &version,
            &payload,
        )?;
    }
    Ok(true)
}

/// The stores holding account `id`.
fn holders(conn: &Connection, id: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached("SELECT node_id FROM user_stores WHERE user_id = ?1")?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// What signing in at a store checks: a customer account's id and password hash by email.
/// Conflicted, deleted and non-customer accounts never sign in through the hub.
pub fn sign_in_candidate(conn: &Connection, email: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, password_hash FROM users
             WHERE email = ?1 AND conflicted = 0 AND role = 'customer' AND status = 'active'
                   AND password_hash IS NOT NULL",
        )?
        .query_row([email], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Makes `node` a holder of account `id` (the customer signed in there) and answers the
/// account's current state as a change entry for that store. In the same transaction as the
/// holder row, so every later change of the account is also sent to the store.
pub fn hold(conn: &Connection, id: &str, node: &str) -> Result<Option<pb::Change>> {
    conn.prepare_cached("INSERT OR IGNORE INTO user_stores (user_id, node_id) VALUES (?1, ?2)")?
        .execute(params![id, node])?;
    let row = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], payload_row)
        .optional()?;
    row.map(|(u, version)| {
        Ok(pb::Change {
            seq: 0,
            entity: entity::USER.to_string(),
            entity_id: u.id.clone(),
            version,
            payload_json: serde_json::to_string(&u)?,
            traceparent: String::new(),
            tracestate: String::new(),
        })
    })
    .transpose()
}

const COLUMNS: &str =
    "id, email, name, password_hash, role, status, conflicted, created_at, updated_at, version";

fn payload_row(r: &rusqlite::Row) -> rusqlite::Result<(UserPayload, String)> {
    let u = UserPayload {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        password_hash: r.get(3)?,
        role: r.get(4)?,
        status: r.get(5)?,
        conflicted: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    };
    Ok((u, r.get(9)?))
}

/// One page of the customer accounts store `node` holds after id `after`, as sync changes
/// `(entity, id, version, payload)`, for its snapshot. Accounts of other roles a hub got before
/// stores were restricted are not sent: they stay at the store that made them.
pub fn snapshot(
    conn: &Connection,
    node: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users JOIN user_stores s ON s.user_id = users.id AND s.node_id = ?1
         WHERE id > ?2 AND role = 'customer' ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![node, after, limit as i64], payload_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (u, v) = row?;
        out.push((
            entity::USER.to_string(),
            u.id.clone(),
            v,
            serde_json::to_string(&u)?,
        ));
    }
    Ok(out)
}
