//! The order–payment saga (DESIGN.md §4): paying, cancelling, refunding and the compensations,
//! in one place. It drives the orders and payments contexts; neither of them calls the other.
//!
//! Every step runs inside the caller's write transaction, so an order's move and its payment's
//! move (and the events they announce) commit together or not at all.
//!
//! - [`pay`]: record a payment for a `pending_payment` order; cash is captured at once and the
//!   order becomes `paid`.
//! - [`cancel`]: the order becomes `cancelled`, its units go back to this store's rights, and
//!   its payments are compensated — not yet charged: voided (the hub refunds a charge that was
//!   already in flight); captured: refunded in full.
//! - [`change_status`]: staff or the hub move an order (a cancellation is [`cancel`]).
//! - [`apply_payment_outcome`]: the hub's answer to a card charge moves the payment, then the
//!   order (`paid`, or cancelled with its compensation when the card was declined).

use uuid::Uuid;

use crate::db::Tx;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::orders::model::OrderStatus;
use crate::orders::{service as orders, store as order_store};
use crate::payments::model::{CardToken, Method, PaymentStatus, PaymentView};
use crate::payments::service::{self as payments, Outcome, Payable};
use crate::state::Inner;

/// Records a payment for one of the caller's `pending_payment` orders.
pub fn pay(
    tx: &Tx,
    st: &Inner,
    caller: Uuid,
    order_id: Uuid,
    method: Method,
    card: Option<CardToken>,
) -> Result<PaymentView> {
    let order = order_store::get(tx, order_id)?.ok_or(Error::NotFound("order"))?;
    if order.status != OrderStatus::PendingPayment {
        return Err(Error::conflict(
            "order-not-payable",
            format!("the order is {}, not pending_payment", order.status),
        ));
    }
    let payment = payments::record(
        tx,
        st,
        &Payable {
            order_id,
            user_id: order.user_id,
            amount: order.total_amount,
            currency: &order.currency,
        },
        method,
        card.as_ref(),
    )?;
    if payment.status == PaymentStatus::Captured {
        orders::transition(
            tx,
            st,
            order_id,
            OrderStatus::Paid,
            &orders::user_actor(caller),
            Some("cash captured at the store"),
        )?;
        completed(tx, &payment)?;
    }
    payments::view(tx, payment)
}

/// Cancels an order and compensates: its units go back to this store's rights, payments not
/// yet charged are voided and captured ones refunded in full.
pub fn cancel(
    tx: &Tx,
    st: &Inner,
    order_id: Uuid,
    actor: &str,
    reason: Option<&str>,
) -> Result<()> {
    orders::cancel(tx, st, order_id, actor, reason)?;
    payments::compensate(tx, st, order_id)
}

/// Moves an order along its status machine; a cancellation compensates as [`cancel`] does.
pub fn change_status(
    tx: &Tx,
    st: &Inner,
    order_id: Uuid,
    to: OrderStatus,
    actor: &str,
    reason: Option<&str>,
) -> Result<()> {
    if to == OrderStatus::Cancelled {
        return cancel(tx, st, order_id, actor, reason);
    }
    orders::transition(tx, st, order_id, to, actor, reason).map(|_| ())
}

/// Refunds part or all of a captured payment (staff).
pub fn refund(
    tx: &Tx,
    st: &Inner,
    payment_id: Uuid,
    amount: i64,
    reason: Option<&str>,
) -> Result<PaymentView> {
    payments::refund(tx, st, payment_id, amount, reason)
}

/// The hub's answer to a card charge. Applied once: only a payment still waiting for it moves.
pub fn apply_payment_outcome(
    tx: &Tx,
    st: &Inner,
    o: &edgecart_proto::sync::PaymentOutcomePayload,
) -> Result<()> {
    match payments::apply_outcome(tx, st, o)? {
        Outcome::Captured(p) => {
            crate::observability::payment("card", "captured");
            orders::transition(
                tx,
                st,
                p.order_id,
                OrderStatus::Paid,
                "hub",
                Some("card charged"),
            )?;
            completed(tx, &p)?;
        }
        Outcome::Failed(p, reason) => {
            crate::observability::payment("card", "failed");
            cancel(
                tx,
                st,
                p.order_id,
                "hub",
                Some(&format!("payment failed: {reason}")),
            )?;
            events::publish(
                tx,
                &Event::PaymentFailed {
                    user_id: p.user_id,
                    order_id: p.order_id,
                    payment_id: p.id,
                    reason,
                },
            )?;
        }
        Outcome::Unchanged => {}
    }
    Ok(())
}

fn completed(tx: &Tx, p: &crate::payments::store::PaymentRow) -> Result<()> {
    events::publish(
        tx,
        &Event::PaymentCompleted {
            user_id: p.user_id,
            order_id: p.order_id,
            payment_id: p.id,
            amount: orders::format_money(p.amount, &p.currency),
        },
    )
}
