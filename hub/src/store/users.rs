//! User accounts, replicated LWW, with email uniqueness arbitrated here: the first account the
//! hub sees keeps an email; a later account with the same email elsewhere is marked conflicted.

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
    changes::append(
        conn,
        None,
        entity::USER,
        &state.id,
        &version,
        &serde_json::to_string(&state)?,
    )?;
    Ok(true)
}

/// One page of the customer accounts after id `after`, as sync changes `(entity, id, version,
/// payload)`, for a node's snapshot. Accounts of other roles a hub got before stores were
/// restricted are not sent: they stay at the store that made them.
pub fn snapshot(
    conn: &Connection,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, email, name, password_hash, role, status, conflicted, created_at, updated_at, version
         FROM users WHERE id > ?1 AND role = 'customer' ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![after, limit as i64], |r| {
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
        Ok((u, r.get::<_, String>(9)?))
    })?;
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
