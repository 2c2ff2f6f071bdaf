//! SQL for notifications.

use rusqlite::{Connection, params};
use serde::Serialize;
use uuid::Uuid;

use super::templates::Message;
use crate::db::{Tx, uuid_col};
use crate::error::Result;
use crate::http::page::PageRequest;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// `in_app`, `email` or `push`.
    pub channel: String,
    /// The domain event it came from, e.g. `OrderCreated`.
    pub event: String,
    pub subject: String,
    pub body: String,
    /// `queued`, `delivered` or `dead` (gave up after retries).
    pub status: String,
    pub created_at: String,
}

pub fn insert(
    tx: &Tx,
    user_id: Uuid,
    channel: &str,
    event: &str,
    m: &Message,
    now: i64,
) -> Result<()> {
    // in_app notifications are delivered by being stored.
    let status = if channel == "in_app" {
        "delivered"
    } else {
        "queued"
    };
    tx.prepare_cached(
        "INSERT INTO notifications (id, user_id, channel, event, subject, body, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        edgecart_proto::ids::new_id().to_string(),
        user_id.to_string(),
        channel,
        event,
        m.subject,
        m.body,
        status,
        now,
    ])?;
    Ok(())
}

pub fn list(conn: &Connection, user_id: Uuid, page: PageRequest) -> Result<Vec<NotificationView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, event, subject, body, status, created_at FROM notifications
         WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(
            params![user_id.to_string(), page.after_text(), page.fetch_limit()],
            |r| {
                Ok(NotificationView {
                    id: uuid_col(r, 0)?,
                    channel: r.get(1)?,
                    event: r.get(2)?,
                    subject: r.get(3)?,
                    body: r.get(4)?,
                    status: r.get(5)?,
                    created_at: crate::time::rfc3339(r.get(6)?),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
