//! Getting back this node's own orders and payments after it was restored from an older copy of
//! its database. The hub keeps a read copy of every order and payment a node reported; when it
//! sees a node behind what it acknowledged, it sends that node its own records with the
//! re-sync snapshot, and they are re-created here as they were last reported. Stock is not
//! touched: the node's stock cells come back in the same snapshot and already count these
//! sales. A record this node still has is brought up to the hub's copy when that copy is newer
//! (both carry this node's own `updated_at`, so no other clock is compared). The rows are
//! written with the orders' and payments' own store functions.

use edgecart_proto::sync::{OrderPayload, PaymentPayload};
use uuid::Uuid;

use crate::db::Tx;
use crate::error::{Error, Result};
use crate::orders::model::OrderStatus;
use crate::orders::store::{self as orders, ItemRow, OrderRow};
use crate::payments::model::{Method, PaymentStatus};
use crate::payments::store::{self as payments, PaymentRow};
use crate::state::Inner;
use crate::users::store as users;

const ACTOR: &str = "hub";
const REASON: &str = "restored from the hub's copy";

fn uuid(field: &str, raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| Error::invalid(field, "not a UUID"))
}

/// Runs `work` in a savepoint: a record is re-created whole or not at all.
fn whole(tx: &Tx, work: impl FnOnce() -> Result<()>) -> Result<()> {
    tx.execute_batch("SAVEPOINT restore_record")?;
    match work() {
        Ok(()) => {
            tx.execute_batch("RELEASE restore_record")?;
            Ok(())
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO restore_record; RELEASE restore_record")?;
            Err(e)
        }
    }
}

/// Re-creates one of this node's orders from the hub's copy, or brings it up to that copy.
pub fn order(tx: &Tx, st: &Inner, o: &OrderPayload) -> Result<()> {
    if o.node_id != st.node_id.as_str() {
        return Ok(());
    }
    let id = uuid("id", &o.id)?;
    let status: OrderStatus = o
        .status
        .parse()
        .map_err(|_| Error::invalid("status", "unknown"))?;
    if let Some(here) = orders::get(tx, id)? {
        if here.updated_at < o.updated_at {
            orders::set_status(tx, id, status, o.updated_at)?;
            orders::append_history(tx, id, status, o.updated_at, ACTOR, Some(REASON))?;
        }
        return Ok(());
    }
    let user_id = uuid("user_id", &o.user_id)?;
    if users::get(tx, user_id)?.is_none() {
        return Err(Error::invalid("user_id", "unknown account"));
    }
    whole(tx, || {
        orders::insert(
            tx,
            &OrderRow {
                id,
                user_id,
                node_id: o.node_id.clone(),
                status,
                total_amount: o.total_amount,
                currency: o.currency.clone(),
                created_at: o.created_at,
                updated_at: o.updated_at,
            },
        )?;
        for (line, item) in o.items.iter().enumerate() {
            orders::insert_item(
                tx,
                id,
                &ItemRow {
                    line: line as i64 + 1,
                    product_id: uuid("product_id", &item.product_id)?,
                    product_name: &item.product_name,
                    unit_price: item.unit_price.amount,
                    quantity: item.quantity,
                },
            )?;
        }
        orders::append_history(tx, id, status, o.updated_at, ACTOR, Some(REASON))
    })?;
    tracing::info!(order_id = %o.id, status = %o.status, "re-created an order from the hub's copy");
    Ok(())
}

/// Re-creates one of this node's payments (and its refunds) from the hub's copy, or brings it
/// up to that copy. Its order comes first in the same snapshot.
pub fn payment(tx: &Tx, p: &PaymentPayload) -> Result<()> {
    let (id, order_id) = (uuid("id", &p.id)?, uuid("order_id", &p.order_id)?);
    if orders::get(tx, order_id)?.is_none() {
        return Ok(());
    }
    let status: PaymentStatus = p
        .status
        .parse()
        .map_err(|_| Error::invalid("status", "unknown"))?;
    whole(tx, || {
        match payments::get(tx, id)? {
            Some(here) if here.updated_at >= p.updated_at => return Ok(()),
            Some(_) => payments::set_status(tx, id, status, p.updated_at)?,
            None => payments::insert(
                tx,
                &PaymentRow {
                    id,
                    order_id,
                    user_id: uuid("user_id", &p.user_id)?,
                    method: if p.method == "cash" {
                        Method::Cash
                    } else {
                        Method::Card
                    },
                    status,
                    amount: p.amount,
                    currency: p.currency.clone(),
                    failure_reason: None,
                    created_at: p.updated_at,
                    updated_at: p.updated_at,
                },
                p.card_token.as_deref(),
            )?,
        }
        for r in &p.refunds {
            let refund_id = uuid("refunds.id", &r.id)?;
            match payments::refund_status(tx, refund_id)? {
                Some(_) => payments::set_refund_status(tx, refund_id, &r.status, p.updated_at)?,
                None => payments::insert_refund(
                    tx,
                    refund_id,
                    id,
                    r.amount.amount,
                    &r.status,
                    r.reason.as_deref(),
                    p.updated_at,
                )?,
            }
        }
        Ok(())
    })
}
