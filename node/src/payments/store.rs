//! SQL for payments and refunds.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use uuid::Uuid;

use super::model::{Method, PaymentStatus, PaymentView, RefundView};
use crate::db::{Tx, parsed_col, uuid_col};
use crate::error::Result;
use crate::http::money::money;
use crate::sync::changelog;

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub method: Method,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, order_id, user_id, method, status, amount, currency, failure_reason, created_at, updated_at";

fn row_to_payment(r: &rusqlite::Row<'_>) -> rusqlite::Result<PaymentRow> {
    let method: String = r.get(3)?;
    Ok(PaymentRow {
        id: uuid_col(r, 0)?,
        order_id: uuid_col(r, 1)?,
        user_id: uuid_col(r, 2)?,
        method: if method == "cash" {
            Method::Cash
        } else {
            Method::Card
        },
        status: parsed_col(r, 4)?,
        amount: r.get(5)?,
        currency: r.get(6)?,
        failure_reason: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub fn insert(tx: &Tx, p: &PaymentRow, card_token: Option<&str>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO payments (id, order_id, user_id, method, status, amount, currency, card_token,
                               failure_reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        p.id.to_string(),
        p.order_id.to_string(),
        p.user_id.to_string(),
        p.method.as_str(),
        p.status.as_str(),
        p.amount,
        p.currency,
        card_token,
        p.failure_reason,
        p.created_at,
        p.updated_at,
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: Uuid) -> Result<Option<PaymentRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM payments WHERE id = ?1"))?
        .query_row([id.to_string()], row_to_payment)
        .optional()?)
}

pub fn by_order(conn: &Connection, order_id: Uuid) -> Result<Vec<PaymentRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE order_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([order_id.to_string()], row_to_payment)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Sets a payment's status. The card token is kept only while the charge is still to be made
/// (`pending`, `authorized_offline`): once settled it is cleared (refunds go by the provider's
/// charge id, at the hub).
pub fn set_status(tx: &Tx, id: Uuid, status: PaymentStatus, now: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE payments SET status = ?2, updated_at = ?3,
             card_token = CASE WHEN ?2 IN ('pending', 'authorized_offline') THEN card_token END
         WHERE id = ?1",
    )?
    .execute(params![id.to_string(), status.as_str(), now])?;
    Ok(())
}

pub fn insert_refund(
    tx: &Tx,
    id: Uuid,
    payment_id: Uuid,
    amount: i64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO refunds (id, payment_id, amount, status, reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![
        id.to_string(),
        payment_id.to_string(),
        amount,
        status,
        reason,
        now
    ])?;
    Ok(())
}

/// Refunded so far, counting refunds under way (so two refunds cannot together exceed the
/// captured amount while the first is still pending).
pub fn refunded(conn: &Connection, payment_id: Uuid) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = ?1 AND status != 'failed'",
        )?
        .query_row([payment_id.to_string()], |r| r.get(0))?)
}

pub fn refunds(conn: &Connection, payment_id: Uuid, currency: &str) -> Result<Vec<RefundView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, amount, status, reason, created_at FROM refunds WHERE payment_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([payment_id.to_string()], |r| {
            Ok(RefundView {
                id: uuid_col(r, 0)?,
                payment_id,
                amount: money(r.get(1)?, currency),
                status: r.get(2)?,
                reason: r.get(3)?,
                created_at: crate::time::rfc3339(r.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn view(conn: &Connection, p: PaymentRow) -> Result<PaymentView> {
    Ok(PaymentView {
        id: p.id,
        order_id: p.order_id,
        method: p.method,
        status: p.status,
        amount: money(p.amount, &p.currency),
        refunded: money(refunded(conn, p.id)?, &p.currency),
        failure_reason: p.failure_reason,
        refunds: refunds(conn, p.id, &p.currency)?,
        created_at: crate::time::rfc3339(p.created_at),
        updated_at: crate::time::rfc3339(p.updated_at),
    })
}

pub fn for_order(conn: &Connection, order_id: Uuid) -> Result<Vec<PaymentView>> {
    by_order(conn, order_id)?
        .into_iter()
        .map(|p| view(conn, p))
        .collect()
}

/// Appends the payment's state and refunds to the change log. A card payment's token travels
/// with it (the hub needs it to charge); the log is shipped only over the authenticated stream.
pub fn record_change(tx: &Tx, id: Uuid, version: &edgecart_proto::hlc::Timestamp) -> Result<()> {
    let Some(p) = get(tx, id)? else {
        return Ok(());
    };
    let token: Option<String> = tx
        .prepare_cached("SELECT card_token FROM payments WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))?;
    let payload = json!({
        "id": p.id,
        "order_id": p.order_id,
        "user_id": p.user_id,
        "method": p.method,
        "status": p.status,
        "amount": p.amount,
        "currency": p.currency,
        "card_token": token,
        "refunds": refunds(tx, id, &p.currency)?,
        "updated_at": p.updated_at,
    });
    changelog::append(tx, "payment", &id.to_string(), version, &payload)
}

/// Card money accepted offline and not charged yet.
pub fn offline_total(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(amount), 0) FROM payments WHERE status = 'authorized_offline'",
        )?
        .query_row([], |r| r.get(0))?)
}

pub fn set_failed(tx: &Tx, id: Uuid, reason: &str, now: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE payments SET status = 'failed', failure_reason = ?2, updated_at = ?3,
             card_token = NULL WHERE id = ?1",
    )?
    .execute(params![id.to_string(), reason, now])?;
    Ok(())
}

pub fn refund_status(conn: &Connection, id: Uuid) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT status FROM refunds WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?)
}

pub fn set_refund_status(tx: &Tx, id: Uuid, status: &str, now: i64) -> Result<()> {
    tx.prepare_cached("UPDATE refunds SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id.to_string(), status, now])?;
    Ok(())
}

pub fn refunded_succeeded(conn: &Connection, payment_id: Uuid) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = ?1 AND status = 'succeeded'")?
        .query_row([payment_id.to_string()], |r| r.get(0))?)
}
