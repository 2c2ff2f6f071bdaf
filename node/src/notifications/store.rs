//! SQL for notifications: the history, and the webhook delivery queue.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use uuid::Uuid;

use super::model::Channel;
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
    /// Webhook delivery attempts so far (always 0 for `in_app`).
    pub attempts: i64,
    pub created_at: String,
}

const VIEW_COLUMNS: &str = "id, channel, event, subject, body, status, attempts, created_at";

fn row_to_view(r: &Row<'_>) -> rusqlite::Result<NotificationView> {
    Ok(NotificationView {
        id: uuid_col(r, 0)?,
        channel: r.get(1)?,
        event: r.get(2)?,
        subject: r.get(3)?,
        body: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        created_at: crate::time::rfc3339(r.get(7)?),
    })
}

/// Stores a notification: `in_app` as delivered, the webhook channels as queued and due now.
pub fn insert(
    tx: &Tx,
    user_id: Uuid,
    channel: Channel,
    event: &str,
    m: &Message,
    now: i64,
) -> Result<Uuid> {
    // in_app notifications are delivered by being stored.
    let (status, due) = match channel {
        Channel::InApp => ("delivered", None),
        Channel::Email | Channel::Push => ("queued", Some(now)),
    };
    let id = edgecart_proto::ids::new_id();
    tx.prepare_cached(
        "INSERT INTO notifications (id, user_id, channel, event, subject, body, status,
                                    next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id.to_string(),
        user_id.to_string(),
        channel.as_str(),
        event,
        m.subject,
        m.body,
        status,
        due,
        now,
    ])?;
    if status == "queued" {
        crate::observability::notification_queued(channel.as_str());
    }
    Ok(id)
}

/// The user's notifications on every channel, oldest first.
pub fn list(conn: &Connection, user_id: Uuid, page: PageRequest) -> Result<Vec<NotificationView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VIEW_COLUMNS} FROM notifications
         WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![user_id.to_string(), page.after_text(), page.fetch_limit()],
            row_to_view,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: Uuid) -> Result<Option<NotificationView>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS} FROM notifications WHERE id = ?1"
        ))?
        .query_row([id.to_string()], row_to_view)
        .optional()?)
}

/// A notification the webhook worker gave up on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `email` or `push`.
    pub channel: String,
    pub event: String,
    pub subject: String,
    pub attempts: i64,
    /// Why the last attempt failed, e.g. `HTTP 503 Service Unavailable` or `timed out`.
    pub last_error: Option<String>,
    pub created_at: String,
}

/// Every dead letter, oldest first.
pub fn dead_letters(conn: &Connection, page: PageRequest) -> Result<Vec<DeadLetterView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, user_id, channel, event, subject, attempts, last_error, created_at
         FROM notifications WHERE status = 'dead' AND id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![page.after_text(), page.fetch_limit()], |r| {
            Ok(DeadLetterView {
                id: uuid_col(r, 0)?,
                user_id: uuid_col(r, 1)?,
                channel: r.get(2)?,
                event: r.get(3)?,
                subject: r.get(4)?,
                attempts: r.get(5)?,
                last_error: r.get(6)?,
                created_at: crate::time::rfc3339(r.get(7)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Puts a dead letter back in the queue, due now, with a fresh attempt budget. `Ok(false)` when
/// the notification is not dead.
pub fn requeue_dead(tx: &Tx, id: Uuid, now: i64) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE notifications SET status = 'queued', attempts = 0, next_attempt_at = ?2
             WHERE id = ?1 AND status = 'dead'",
        )?
        .execute(params![id.to_string(), now])?;
    Ok(n == 1)
}

/// A queued webhook notification whose time has come.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub user_id: Uuid,
    pub channel: Channel,
    pub event: String,
    pub subject: String,
    pub body: String,
    pub attempts: u32,
}

/// SQL condition limiting a query to the channels that have a webhook (?1: email, ?2: push).
const CHANNELS: &str = "((channel = 'email' AND ?1) OR (channel = 'push' AND ?2))";

fn channel_flags(channels: &[Channel]) -> (bool, bool) {
    (
        channels.contains(&Channel::Email),
        channels.contains(&Channel::Push),
    )
}

/// Queued notifications of `channels` due at `now`, the longest-waiting first.
pub fn due(conn: &Connection, channels: &[Channel], now: i64, limit: usize) -> Result<Vec<Due>> {
    let (email, push) = channel_flags(channels);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, user_id, channel, event, subject, body, attempts FROM notifications
         WHERE status = 'queued' AND next_attempt_at <= ?3 AND {CHANNELS}
         ORDER BY next_attempt_at, id LIMIT ?4"
    ))?;
    let rows = stmt
        .query_map(params![email, push, now, limit as i64], |r| {
            let channel: String = r.get(2)?;
            Ok(Due {
                id: uuid_col(r, 0)?,
                user_id: uuid_col(r, 1)?,
                // Rows of other channels are excluded by the WHERE clause.
                channel: Channel::parse(&channel).unwrap_or(Channel::Email),
                event: r.get(3)?,
                subject: r.get(4)?,
                body: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// When the next queued notification of `channels` falls due, if any is queued.
pub fn next_due_at(conn: &Connection, channels: &[Channel]) -> Result<Option<i64>> {
    let (email, push) = channel_flags(channels);
    Ok(conn
        .prepare_cached(&format!(
            "SELECT min(next_attempt_at) FROM notifications WHERE status = 'queued' AND {CHANNELS}"
        ))?
        .query_row(params![email, push], |r| r.get(0))?)
}

/// Records a successful delivery (`attempts` counts it).
pub fn mark_delivered(tx: &Tx, id: Uuid, attempts: u32) -> Result<()> {
    tx.prepare_cached(
        "UPDATE notifications SET status = 'delivered', attempts = ?2, next_attempt_at = NULL,
             last_error = NULL
         WHERE id = ?1 AND status = 'queued'",
    )?
    .execute(params![id.to_string(), attempts])?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or dead-lettered when that is `None`.
pub fn mark_failed(
    tx: &Tx,
    id: Uuid,
    attempts: u32,
    error: &str,
    retry_at: Option<i64>,
) -> Result<()> {
    let status = if retry_at.is_some() { "queued" } else { "dead" };
    tx.prepare_cached(
        "UPDATE notifications SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5
         WHERE id = ?1 AND status = 'queued'",
    )?
    .execute(params![id.to_string(), status, attempts, retry_at, error])?;
    Ok(())
}
