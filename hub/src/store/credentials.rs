//! Enrolled stores and their credentials (only hashes of the secrets are stored).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

/// A store the hub issued credentials to.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub node_id: String,
    pub catalog_edits: bool,
    pub active_credentials: u32,
}

/// A credential as stored.
#[derive(Debug, Clone)]
pub struct Credential {
    pub node_id: String,
    pub secret_sha256: Vec<u8>,
    pub revoked: bool,
}

pub fn enrollment(conn: &Connection, node: &str) -> Result<Option<Enrollment>> {
    Ok(conn
        .prepare_cached(
            "SELECT e.node_id, e.catalog_edits,
                    (SELECT count(*) FROM node_credentials c
                     WHERE c.node_id = e.node_id AND c.revoked_at IS NULL)
             FROM enrollments e WHERE e.node_id = ?1",
        )?
        .query_row([node], |r| {
            Ok(Enrollment {
                node_id: r.get(0)?,
                catalog_edits: r.get::<_, i64>(1)? != 0,
                active_credentials: r.get(2)?,
            })
        })
        .optional()?)
}

/// Registers `node`; false (and nothing changed) when it was enrolled before.
pub fn enroll(conn: &Connection, node: &str, catalog_edits: bool, now: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO enrollments (node_id, catalog_edits, enrolled_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (node_id) DO NOTHING",
        )?
        .execute(params![node, catalog_edits as i64, now])?;
    Ok(n == 1)
}

/// Sets whether the hub applies `node`'s catalog edits; false when it is not enrolled.
pub fn set_catalog_edits(conn: &Connection, node: &str, allowed: bool) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE enrollments SET catalog_edits = ?2 WHERE node_id = ?1")?
        .execute(params![node, allowed as i64])?;
    Ok(n == 1)
}

pub fn add(conn: &Connection, node: &str, id: &str, hash: &[u8; 32], now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO node_credentials (id, node_id, secret_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, node, &hash[..], now])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Credential>> {
    Ok(conn
        .prepare_cached(
            "SELECT node_id, secret_sha256, revoked_at IS NOT NULL FROM node_credentials WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Credential {
                node_id: r.get(0)?,
                secret_sha256: r.get(1)?,
                revoked: r.get(2)?,
            })
        })
        .optional()?)
}

/// Whether credential `id` exists and is not revoked.
pub fn is_active(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT revoked_at IS NULL FROM node_credentials WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// Revokes `node`'s credentials (only `only` when given); returns the ids revoked by this call.
pub fn revoke(conn: &Connection, node: &str, only: Option<&str>, now: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE node_credentials SET revoked_at = ?3
         WHERE node_id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR id = ?2) RETURNING id",
    )?;
    let ids = stmt
        .query_map(params![node, only, now], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// Whether `id` is one of `node`'s credentials (revoked or not).
pub fn belongs_to(conn: &Connection, node: &str, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM node_credentials WHERE id = ?1 AND node_id = ?2")?
        .exists(params![id, node])?)
}
