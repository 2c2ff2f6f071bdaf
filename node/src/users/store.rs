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

const COLUMNS: &str = "id, email, name, role, status, created_at, updated_at, conflicted";

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
        conflicted: r.get::<_, i64>(7)? != 0,
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
             WHERE email = ?1 AND status = 'active' AND conflicted = 0 AND password_hash IS NOT NULL"
        ))?
        .query_row([email.as_str()], |r| Ok((row_to_user(r)?, r.get(8)?)))
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
                "conflicted": false,
            }))
        })?;
    // Admin and staff accounts stay local to this store (the hub refuses them: a store may
    // report customers only, docs/security.md).
    if row["role"] != "customer" {
        return Ok(());
    }
    changelog::append(tx, "user", &id.to_string(), version, &row)
}

/// Applies an account replicated from the hub (last writer wins by version). Returns the ids of
/// local accounts that this change marked conflicted (to tell their owners).
pub fn apply_remote(
    tx: &Tx,
    u: &edgecart_proto::sync::UserPayload,
    version: &str,
) -> Result<Vec<Uuid>> {
    let id = Uuid::parse_str(&u.id).map_err(|_| Error::invalid("user.id", "not a UUID"))?;
    let role = Role::parse(&u.role).unwrap_or(Role::Customer);
    let status = if u.status == "deleted" {
        "deleted"
    } else {
        "active"
    };
    let mut newly_conflicted = Vec::new();
    let was_conflicted: Option<bool> = tx
        .prepare_cached("SELECT conflicted FROM users WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok(r.get::<_, i64>(0)? != 0))
        .optional()?;
    if u.conflicted {
        if was_conflicted == Some(false) {
            newly_conflicted.push(id);
        }
    } else if let Some(email) = &u.email {
        // The hub let this account keep the email; a different local account holding it lost.
        let losers: Vec<String> = tx
            .prepare_cached("SELECT id FROM users WHERE email = ?1 AND id != ?2")?
            .query_map(params![email, id.to_string()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for loser in losers {
            tx.prepare_cached(
                "UPDATE users SET conflicted = 1, conflicted_email = email, email = NULL WHERE id = ?1",
            )?
            .execute([&loser])?;
            if let Ok(l) = Uuid::parse_str(&loser) {
                newly_conflicted.push(l);
            }
        }
    }
    let (email, conflicted_email) = if u.conflicted {
        (None, u.email.as_deref())
    } else {
        (u.email.as_deref(), None)
    };
    tx.prepare_cached(
        "INSERT INTO users (id, email, name, password_hash, role, status, created_at, updated_at, version,
                            conflicted, conflicted_email)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name,
             password_hash = excluded.password_hash, role = excluded.role, status = excluded.status,
             updated_at = excluded.updated_at, version = excluded.version,
             conflicted = max(users.conflicted, excluded.conflicted),
             conflicted_email = coalesce(excluded.conflicted_email, users.conflicted_email)
         WHERE excluded.version > users.version",
    )?
    .execute(params![
        id.to_string(),
        email,
        u.name,
        u.password_hash,
        role.as_str(),
        status,
        u.created_at,
        u.updated_at,
        version,
        u.conflicted as i64,
        conflicted_email,
    ])?;
    Ok(newly_conflicted)
}

/// The email address of an active account (`None` once erased, or while its email is held back
/// as conflicted): where `email` notifications are sent.
pub fn email_of(conn: &Connection, id: Uuid) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT email FROM users WHERE id = ?1 AND status = 'active'")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?
        .flatten())
}
