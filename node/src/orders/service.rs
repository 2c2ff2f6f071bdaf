//! Order rules: capture, status transitions, cancellation (stock released; payments are the
//! saga's, `crate::saga`).
//! Every function runs inside the caller's write transaction.

use edgecart_proto::money::{Currency, Money};
use rusqlite::Connection;
use serde_json::json;
use uuid::Uuid;

use super::model::{Line, OrderStatus, OrderView};
use super::store::{self, ItemRow, OrderRow};
use crate::catalog::inventory::{self, StockCtx};
use crate::catalog::store as catalog;
use crate::db::Tx;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::http::money::money;
use crate::payments;
use crate::state::Inner;
use crate::sync::changelog;

/// Captures an order in the caller's transaction: checks each product and price, consumes this
/// node's stock rights, writes the order, its lines and first status, the change-log entry and
/// `OrderCreated`. Any failure rolls all of it back.
pub fn capture(tx: &Tx, st: &Inner, user_id: Uuid, lines: &[Line]) -> Result<OrderView> {
    let now = crate::time::now_ms();
    let version = st.clock.now();
    let ctx = StockCtx::new(st, &version);
    let order_id = edgecart_proto::ids::new_id();
    let mut total = Money::zero(st.currency);
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let field = format!("items[{i}].product_id");
        let product = catalog::sellable(tx, line.product_id)?
            .ok_or_else(|| Error::invalid(field.clone(), "no such product"))?;
        if !product.active {
            return Err(Error::invalid(
                field,
                "product is archived and cannot be ordered",
            ));
        }
        let currency = Currency::parse(&product.currency)
            .map_err(|e| Error::Internal(format!("stored currency: {e}")))?;
        let line_total = Money::new(product.price_amount, currency)
            .checked_mul(line.quantity)
            .and_then(|m| total.checked_add(m))
            .map_err(|e| Error::invalid(field.clone(), e.to_string()))?;
        total = line_total;
        inventory::consume(tx, &ctx, line.product_id, line.quantity)?;
        rows.push((i, line, product));
    }
    let order = OrderRow {
        id: order_id,
        user_id,
        node_id: st.node_id.to_string(),
        status: OrderStatus::PendingPayment,
        total_amount: total.amount,
        currency: total.currency.as_str().to_string(),
        created_at: now,
        updated_at: now,
    };
    store::insert(tx, &order)?;
    for (i, line, product) in &rows {
        store::insert_item(
            tx,
            order_id,
            &ItemRow {
                line: *i as i64 + 1,
                product_id: line.product_id,
                product_name: &product.name,
                unit_price: product.price_amount,
                quantity: line.quantity as i64,
            },
        )?;
    }
    store::append_history(
        tx,
        order_id,
        OrderStatus::PendingPayment,
        now,
        &user_actor(user_id),
        None,
    )?;
    record_change(tx, st, order_id)?;
    events::publish(
        tx,
        &Event::OrderCreated {
            user_id,
            order_id,
            total: format_money(total.amount, total.currency.as_str()),
        },
    )?;
    load(tx, order_id)?.ok_or(Error::NotFound("order"))
}

/// Moves an order along the status machine, recording who did it; an illegal move is 409.
pub fn transition(
    tx: &Tx,
    st: &Inner,
    order_id: Uuid,
    to: OrderStatus,
    actor: &str,
    reason: Option<&str>,
) -> Result<OrderRow> {
    let order = store::get(tx, order_id)?.ok_or(Error::NotFound("order"))?;
    if !order.status.can_become(to) {
        let mut err = Error::conflict(
            "illegal-transition",
            format!(
                "an order that is {} cannot become {}",
                order.status.as_str(),
                to.as_str()
            ),
        );
        if let Error::Conflict { extra, .. } = &mut err {
            extra.insert("current_status".into(), json!(order.status));
            extra.insert("requested_status".into(), json!(to));
        }
        return Err(err);
    }
    let now = crate::time::now_ms();
    store::set_status(tx, order_id, to, now)?;
    store::append_history(tx, order_id, to, now, actor, reason)?;
    record_change(tx, st, order_id)?;
    let user_id = order.user_id;
    let event = match to {
        OrderStatus::Shipped => Some(Event::OrderShipped { user_id, order_id }),
        OrderStatus::Delivered => Some(Event::OrderDelivered { user_id, order_id }),
        OrderStatus::Cancelled => Some(Event::OrderCancelled { user_id, order_id }),
        // `paid` announces itself through PaymentCompleted.
        OrderStatus::Paid | OrderStatus::PendingPayment => None,
    };
    if let Some(event) = event {
        events::publish(tx, &event)?;
    }
    Ok(OrderRow {
        status: to,
        updated_at: now,
        ..order
    })
}

/// Cancels an order and releases its units back to this node's rights (`inc[node] += q`). Its
/// payments are the saga's business (`crate::saga::cancel`).
pub fn cancel(
    tx: &Tx,
    st: &Inner,
    order_id: Uuid,
    actor: &str,
    reason: Option<&str>,
) -> Result<()> {
    transition(tx, st, order_id, OrderStatus::Cancelled, actor, reason)?;
    let version = st.clock.now();
    let ctx = StockCtx::new(st, &version);
    for (product_id, quantity) in store::lines(tx, order_id)? {
        inventory::release(tx, &ctx, product_id, quantity)?;
    }
    Ok(())
}

/// The full order: lines, payments and status history.
pub fn load(conn: &Connection, order_id: Uuid) -> Result<Option<OrderView>> {
    let Some(o) = store::get(conn, order_id)? else {
        return Ok(None);
    };
    Ok(Some(OrderView {
        id: o.id,
        user_id: o.user_id,
        node_id: o.node_id.clone(),
        status: o.status,
        total: money(o.total_amount, &o.currency),
        items: store::items(conn, o.id, &o.currency)?,
        payments: payments::store::for_order(conn, o.id)?,
        status_history: store::history(conn, o.id)?,
        created_at: crate::time::rfc3339(o.created_at),
        updated_at: crate::time::rfc3339(o.updated_at),
    }))
}

pub fn user_actor(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

pub fn format_money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", a / 100, a % 100)
}

/// Appends the order's current state (owned record: only this node writes it) to the change log.
fn record_change(tx: &Tx, st: &Inner, order_id: Uuid) -> Result<()> {
    let order = store::get(tx, order_id)?.ok_or(Error::NotFound("order"))?;
    let payload = json!({
        "id": order.id,
        "user_id": order.user_id,
        "node_id": order.node_id,
        "status": order.status,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "items": store::items(tx, order_id, &order.currency)?,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    });
    changelog::append(
        tx,
        "order",
        &order_id.to_string(),
        &st.clock.now(),
        &payload,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_money() {
        assert_eq!(super::format_money(123456, "USD"), "1234.56 USD");
        assert_eq!(super::format_money(5, "USD"), "0.05 USD");
    }
}
