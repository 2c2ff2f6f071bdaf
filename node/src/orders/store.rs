//! SQL for orders, their items and status history.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::model::{OrderItemView, OrderStatus, StatusChangeView};
use crate::db::{Tx, parsed_col, uuid_col};
use crate::error::Result;
use crate::http::money::money;
use crate::http::page::PageRequest;

/// The order row itself.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub node_id: String,
    pub status: OrderStatus,
    pub total_amount: i64,
    pub currency: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, user_id, node_id, status, total_amount, currency, created_at, updated_at";

fn row_to_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        id: uuid_col(r, 0)?,
        user_id: uuid_col(r, 1)?,
        node_id: r.get(2)?,
        status: parsed_col(r, 3)?,
        total_amount: r.get(4)?,
        currency: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub fn insert(tx: &Tx, o: &OrderRow) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO orders ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        o.id.to_string(),
        o.user_id.to_string(),
        o.node_id,
        o.status.as_str(),
        o.total_amount,
        o.currency,
        o.created_at,
        o.updated_at,
    ])?;
    Ok(())
}

pub struct ItemRow<'a> {
    pub line: i64,
    pub product_id: Uuid,
    pub product_name: &'a str,
    pub unit_price: i64,
    pub quantity: i64,
}

pub fn insert_item(tx: &Tx, order_id: Uuid, item: &ItemRow<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO order_items (order_id, line, product_id, product_name, unit_price, quantity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        order_id.to_string(),
        item.line,
        item.product_id.to_string(),
        item.product_name,
        item.unit_price,
        item.quantity,
    ])?;
    Ok(())
}

pub fn append_history(
    tx: &Tx,
    order_id: Uuid,
    status: OrderStatus,
    at: i64,
    actor: &str,
    reason: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO order_status_history (order_id, seq, status, at, actor, reason)
         VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM order_status_history WHERE order_id = ?1),
                 ?2, ?3, ?4, ?5)",
    )?
    .execute(params![order_id.to_string(), status.as_str(), at, actor, reason])?;
    Ok(())
}

pub fn set_status(tx: &Tx, order_id: Uuid, status: OrderStatus, at: i64) -> Result<()> {
    tx.prepare_cached("UPDATE orders SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![order_id.to_string(), status.as_str(), at])?;
    Ok(())
}

pub fn get(conn: &Connection, id: Uuid) -> Result<Option<OrderRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM orders WHERE id = ?1"))?
        .query_row([id.to_string()], row_to_order)
        .optional()?)
}

/// Orders of `user` (or of everyone when `None`), oldest first.
pub fn list(conn: &Connection, user: Option<Uuid>, page: PageRequest) -> Result<Vec<OrderRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM orders WHERE id > ?1 AND (?2 IS NULL OR user_id = ?2)
         ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![
                page.after_text(),
                user.map(|u| u.to_string()),
                page.fetch_limit()
            ],
            row_to_order,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn items(conn: &Connection, order_id: Uuid, currency: &str) -> Result<Vec<OrderItemView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT product_id, product_name, unit_price, quantity FROM order_items
         WHERE order_id = ?1 ORDER BY line",
    )?;
    let rows = stmt
        .query_map([order_id.to_string()], |r| {
            let unit: i64 = r.get(2)?;
            let quantity: i64 = r.get(3)?;
            Ok(OrderItemView {
                product_id: uuid_col(r, 0)?,
                product_name: r.get(1)?,
                unit_price: money(unit, currency),
                quantity,
                line_total: money(unit.saturating_mul(quantity), currency),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The (product, quantity) lines of an order, for releasing its stock.
pub fn lines(conn: &Connection, order_id: Uuid) -> Result<Vec<(Uuid, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT product_id, quantity FROM order_items WHERE order_id = ?1 ORDER BY line",
    )?;
    let rows = stmt
        .query_map([order_id.to_string()], |r| {
            Ok((
                uuid_col(r, 0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn history(conn: &Connection, order_id: Uuid) -> Result<Vec<StatusChangeView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT status, at, actor, reason FROM order_status_history WHERE order_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([order_id.to_string()], |r| {
            Ok(StatusChangeView {
                status: parsed_col(r, 0)?,
                at: crate::time::rfc3339(r.get(1)?),
                actor: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
