//! Payment rules, run inside the caller's write transaction.

use uuid::Uuid;

use super::model::{CardToken, Method, PaymentStatus, PaymentView};
use super::store::{self, PaymentRow};
use crate::db::Tx;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::orders::model::OrderStatus;
use crate::orders::{service as orders, store as order_store};
use crate::state::Inner;

/// Records a payment for a `pending_payment` order. Cash is captured at once and the order
/// becomes `paid`; a card payment stays `pending` until the hub reports the provider's answer.
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
            format!(
                "the order is {}, not pending_payment",
                order.status.as_str()
            ),
        ));
    }
    if store::by_order(tx, order_id)?
        .iter()
        .any(|p| p.status.is_live())
    {
        return Err(Error::conflict(
            "payment-in-progress",
            "the order already has a payment in progress",
        ));
    }
    if order.total_amount <= 0 {
        return Err(Error::invalid(
            "order",
            "an order with a zero total needs no payment",
        ));
    }
    let now = crate::time::now_ms();
    let status = match method {
        Method::Cash => PaymentStatus::Captured,
        Method::Card => PaymentStatus::Pending,
    };
    let payment = PaymentRow {
        id: edgecart_proto::ids::new_id(),
        order_id,
        user_id: order.user_id,
        method,
        status,
        amount: order.total_amount,
        currency: order.currency.clone(),
        failure_reason: None,
        created_at: now,
        updated_at: now,
    };
    store::insert(tx, &payment, card.as_ref().map(CardToken::as_str))?;
    store::record_change(tx, payment.id, &st.clock.now())?;
    if status == PaymentStatus::Captured {
        orders::transition(
            tx,
            st,
            order_id,
            OrderStatus::Paid,
            &orders::user_actor(caller),
            Some("cash captured at the store"),
        )?;
        events::publish(
            tx,
            &Event::PaymentCompleted {
                user_id: order.user_id,
                order_id,
                payment_id: payment.id,
                amount: orders::format_money(payment.amount, &payment.currency),
            },
        )?;
    }
    store::view(tx, payment)
}

/// Refunds part or all of a captured payment. Cash refunds complete at once; card refunds are
/// recorded `pending` for the hub to send to the provider.
pub fn refund(
    tx: &Tx,
    st: &Inner,
    payment_id: Uuid,
    amount: i64,
    reason: Option<&str>,
) -> Result<PaymentView> {
    let payment = store::get(tx, payment_id)?.ok_or(Error::NotFound("payment"))?;
    if !payment.status.is_refundable() {
        return Err(Error::conflict(
            "payment-not-refundable",
            format!("a {} payment cannot be refunded", payment.status.as_str()),
        ));
    }
    let remaining = payment.amount - store::refunded(tx, payment_id)?;
    if amount <= 0 {
        return Err(Error::invalid("amount", "must be positive"));
    }
    if amount > remaining {
        return Err(Error::invalid(
            "amount",
            format!("exceeds what can still be refunded ({remaining} minor units)"),
        ));
    }
    let now = crate::time::now_ms();
    let refund_status = match payment.method {
        Method::Cash => "succeeded",
        Method::Card => "pending",
    };
    store::insert_refund(
        tx,
        edgecart_proto::ids::new_id(),
        payment_id,
        amount,
        refund_status,
        reason,
        now,
    )?;
    if payment.method == Method::Cash {
        let status = if amount == remaining {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        };
        store::set_status(tx, payment_id, status, now)?;
    }
    store::record_change(tx, payment_id, &st.clock.now())?;
    let payment = store::get(tx, payment_id)?.ok_or(Error::NotFound("payment"))?;
    store::view(tx, payment)
}

/// Compensation when an order is cancelled: payments not yet charged are voided, captured ones
/// are refunded in full.
pub fn on_order_cancelled(tx: &Tx, st: &Inner, order_id: Uuid) -> Result<()> {
    let now = crate::time::now_ms();
    for p in store::by_order(tx, order_id)? {
        match p.status {
            PaymentStatus::Pending | PaymentStatus::AuthorizedOffline => {
                store::set_status(tx, p.id, PaymentStatus::Voided, now)?;
                store::record_change(tx, p.id, &st.clock.now())?;
            }
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded => {
                let remaining = p.amount - store::refunded(tx, p.id)?;
                if remaining > 0 {
                    refund(tx, st, p.id, remaining, Some("order cancelled"))?;
                }
            }
            PaymentStatus::Failed | PaymentStatus::Voided | PaymentStatus::Refunded => {}
        }
    }
    Ok(())
}
