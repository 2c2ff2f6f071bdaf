//! SQL for users. Writers take `&Tx` (the open write transaction); readers a `&Connection`.

use edgecart_proto::hlc::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;
use uuid::Uuid;

use super::model::{Email, Name, Role, User};
use crate::db::{Tx, uuid_col};
use crate::error::{Error, Result};
use crate::http::page::PageRequest;
use crate::sync::changelog;

const COLUMNS: &str = "id, email, name, role, status, created_at, updated_at";

fn row_to_user(r: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    let status: String = r.get(4)?;
    Ok(User {
        id: uuid_col(r, 0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Customer),
        deleted: status == "deleted",
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a Email,
    pub name: &'a Name,
    pub password_hash: &'a str,
    pub role: Role,
}

pub fn insert(tx: &Tx, user: &NewUser<'_>, version: &Timestamp, now: i64) -> Result<User> {
    tx.prepare_cached(
        "INSERT INTO users (id, email, name, password_hash, role, status, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?6, ?7)",
    )?
    .execute(params![
        user.id.to_string(),
        user.email.as_str(),
        user.name.as_str(),
        user.password_hash,
        user.role.as_str(),
        now,
        version.to_string(),
    ])
    .map_err(|e| {
        let e = crate::db::DbError::from(e);
        if e.is_unique_violation() {
            Error::conflict("email-taken", "an account with this email already exists")
        } else {
            e.into()
        }
    })?;
    record_change(tx, user.id, version)?;
    get(tx, user.id)?.ok_or(Error::NotFound("user"))
}

pub fn get(conn: &Connection, id: Uuid) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id.to_string()], row_to_user)
        .optional()?)
}

/// The active account with this email and its password hash, for login.
pub fn credentials(conn: &Connection, email: &Email) -> Result<Option<(User, String)>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, password_hash FROM users
             WHERE email = ?1 AND status = 'active' AND password_hash IS NOT NULL"
        ))?
        .query_row([email.as_str()], |r| Ok((row_to_user(r)?, r.get(7)?)))
        .optional()?)
}

pub fn password_hash(conn: &Connection, id: Uuid) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT password_hash FROM users WHERE id = ?1 AND status = 'active'")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn exists_by_email(conn: &Connection, email: &Email) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE email = ?1")?
        .exists([email.as_str()])?)
}

pub struct ProfileChange {
    pub name: Option<Name>,
    pub email: Option<Email>,
    pub role: Option<Role>,
}

pub fn update(
    tx: &Tx,
    id: Uuid,
    change: &ProfileChange,
    version: &Timestamp,
    now: i64,
) -> Result<User> {
    let n = tx
        .prepare_cached(
            "UPDATE users SET name = coalesce(?2, name), email = coalesce(?3, email),
                 role = coalesce(?4, role), updated_at = ?5, version = ?6
             WHERE id = ?1 AND status = 'active'",
        )?
        .execute(params![
            id.to_string(),
            change.name.as_ref().map(Name::as_str),
            change.email.as_ref().map(Email::as_str),
            change.role.map(Role::as_str),
            now,
            version.to_string(),
        ])
        .map_err(|e| {
            let e = crate::db::DbError::from(e);
            if e.is_unique_violation() {
                Error::conflict("email-taken", "an account with this email already exists")
            } else {
                e.into()
            }
        })?;
    if n == 0 {
        return Err(Error::NotFound("user"));
    }
    record_change(tx, id, version)?;
    get(tx, id)?.ok_or(Error::NotFound("user"))
}

pub fn set_password(tx: &Tx, id: Uuid, hash: &str, version: &Timestamp, now: i64) -> Result<()> {
    let n = tx
        .prepare_cached(
            "UPDATE users SET password_hash = ?2, updated_at = ?3, version = ?4
             WHERE id = ?1 AND status = 'active'",
        )?
        .execute(params![id.to_string(), hash, now, version.to_string()])?;
    if n == 0 {
        return Err(Error::NotFound("user"));
    }
    record_change(tx, id, version)
}

/// Erases the personal data of an account; the id stays, so its orders keep their owner.
pub fn erase(tx: &Tx, id: Uuid, version: &Timestamp, now: i64) -> Result<()> {
    let n = tx
        .prepare_cached(
            "UPDATE users SET email = NULL, name = '', password_hash = NULL, status = 'deleted',
                 updated_at = ?2, version = ?3
             WHERE id = ?1 AND status = 'active'",
        )?
        .execute(params![id.to_string(), now, version.to_string()])?;
    if n == 0 {
        return Err(Error::NotFound("user"));
    }
    record_change(tx, id, version)
}

pub fn list(conn: &Connection, page: PageRequest) -> Result<Vec<User>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![page.after_text(), page.fetch_limit()], row_to_user)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Ids of the active admins (recipients of operational notifications such as low stock).
pub fn admin_ids(conn: &Connection) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM users WHERE role = 'admin' AND status = 'active' ORDER BY id",
    )?;
    let ids = stmt
        .query_map([], |r| uuid_col(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

/// Appends the account's full replicated state (LWW row) to the change log.
fn record_change(tx: &Tx, id: Uuid, version: &Timestamp) -> Result<()> {
    let row = tx
        .prepare_cached(
            "SELECT id, email, name, password_hash, role, status, created_at, updated_at
             FROM users WHERE id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "email": r.get::<_, Option<String>>(1)?,
                "name": r.get::<_, String>(2)?,
                "password_hash": r.get::<_, Option<String>>(3)?,
                "role": r.get::<_, String>(4)?,
                "status": r.get::<_, String>(5)?,
                "created_at": r.get::<_, i64>(6)?,
                "updated_at": r.get::<_, i64>(7)?,
            }))
        })?;
    changelog::append(tx, "user", &id.to_string(), version, &row)
}
