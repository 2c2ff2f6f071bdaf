//! Read copies of the orders the nodes own.

use edgecart_proto::sync::{OrderItemPayload, OrderPayload};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;

pub fn apply(conn: &Connection, o: &OrderPayload, version: &str) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO orders (id, node_id, user_id, status, total_amount, currency, items, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, total_amount = excluded.total_amount,
                 items = excluded.items, updated_at = excluded.updated_at, version = excluded.version
             WHERE excluded.version > orders.version",
        )?
        .execute(params![
            o.id,
            o.node_id,
            o.user_id,
            o.status,
            o.total_amount,
            o.currency,
            serde_json::to_string(&o.items)?,
            o.created_at,
            o.updated_at,
            version
        ])?;
    Ok(n > 0)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderPayload> {
    let items: String = r.get(6)?;
    Ok(OrderPayload {
        id: r.get(0)?,
        node_id: r.get(1)?,
        user_id: r.get(2)?,
        status: r.get(3)?,
        total_amount: r.get(4)?,
        currency: r.get(5)?,
        items: serde_json::from_str::<Vec<OrderItemPayload>>(&items).unwrap_or_default(),
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

const COLUMNS: &str =
    "id, node_id, user_id, status, total_amount, currency, items, created_at, updated_at";

pub fn get(conn: &Connection, id: &str) -> Result<Option<OrderPayload>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM orders WHERE id = ?1"))?
        .query_row([id], row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    node: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<OrderPayload>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM orders WHERE id > ?1 AND (?2 IS NULL OR node_id = ?2) ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![after, node, limit], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The store that reported order `id`, if the hub has it.
pub fn owner(conn: &Connection, id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT node_id FROM orders WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// The store that reported payment `id`, if the hub has it.
pub fn payment_owner(conn: &Connection, id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT node_id FROM payments WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub fn apply_payment(
    conn: &Connection,
    id: &str,
    node: &str,
    payload: &str,
    version: &str,
) -> Result<()> {
    // The card token goes to the ledger (until settled), never into this read copy.
    conn.prepare_cached(
        "INSERT INTO payments (id, node_id, payload, version)
         VALUES (?1, ?2, json_remove(?3, '$.card_token'), ?4)
         ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, version = excluded.version
         WHERE excluded.version > payments.version",
    )?
    .execute(params![id, node, payload, version])?;
    Ok(())
}

/// One page of a node's own orders after id `after`, as it last reported them, as sync changes
/// `(entity, id, version, payload)`: sent back to a node restored from an older copy of its
/// database (orders before payments: a payment needs its order).
pub fn own_orders(
    conn: &Connection,
    node: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, version FROM orders WHERE node_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let orders = stmt
        .query_map(params![node, after, limit as i64], |r| {
            Ok((row(r)?, r.get::<_, String>(9)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (o, version) in orders {
        let id = o.id.clone();
        out.push((
            edgecart_proto::sync::entity::ORDER.to_string(),
            id,
            version,
            serde_json::to_string(&o)?,
        ));
    }
    Ok(out)
}

/// One page of a node's own payments after id `after`, like [`own_orders`].
pub fn own_payments(
    conn: &Connection,
    node: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, version, payload FROM payments WHERE node_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let payments = stmt
        .query_map(params![node, after, limit as i64], |r| {
            Ok((
                edgecart_proto::sync::entity::PAYMENT.to_string(),
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(payments)
}
