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
        // Store-and-forward: with the hub unreachable, accept within the offline limits.
        Method::Card if st.hub_configured && !st.sync.is_connected() => {
            if order.total_amount > st.offline_card_limit {
                return Err(Error::invalid(
                    "amount",
                    format!(
                        "card payments above {} minor units need the link to the hub, which is down",
                        st.offline_card_limit
                    ),
                ));
            }
            let held = store::offline_total(tx)?;
            if held + order.total_amount > st.offline_card_total {
                return Err(Error::conflict(
                    "offline-card-total-exceeded",
                    format!(
                        "this store already holds {held} of {} minor units in card payments taken offline",
                        st.offline_card_total
                    ),
                ));
            }
            PaymentStatus::AuthorizedOffline
        }
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

/// The hub's answer to a card charge. Applied once: only a payment still waiting for it changes.
pub fn apply_outcome(
    tx: &Tx,
    st: &Inner,
    o: &edgecart_proto::sync::PaymentOutcomePayload,
) -> Result<()> {
    let id =
        Uuid::parse_str(&o.payment_id).map_err(|_| Error::invalid("payment_id", "not a UUID"))?;
    let Some(p) = store::get(tx, id)? else {
        return Err(Error::NotFound("payment"));
    };
    let now = crate::time::now_ms();
    let waiting = matches!(
        p.status,
        PaymentStatus::Pending | PaymentStatus::AuthorizedOffline
    );
    match (o.status.as_str(), p.status) {
        ("captured", _) if waiting => {
            store::set_status(tx, id, PaymentStatus::Captured, now)?;
            store::record_change(tx, id, &st.clock.now())?;
            orders::transition(
                tx,
                st,
                p.order_id,
                OrderStatus::Paid,
                "hub",
                Some("card charged"),
            )?;
            events::publish(
                tx,
                &Event::PaymentCompleted {
                    user_id: p.user_id,
                    order_id: p.order_id,
                    payment_id: id,
                    amount: orders::format_money(p.amount, &p.currency),
                },
            )?;
        }
        // The order was cancelled while the charge was in flight: give the money back.
        ("captured", PaymentStatus::Voided) => {
            store::set_status(tx, id, PaymentStatus::Captured, now)?;
            refund(
                tx,
                st,
                id,
                p.amount,
                Some("order cancelled before the charge completed"),
            )?;
        }
        ("failed", _) if waiting => {
            let reason = o.reason.clone().unwrap_or_else(|| "declined".into());
            store::set_failed(tx, id, &reason, now)?;
            store::record_change(tx, id, &st.clock.now())?;
            orders::cancel(
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
                    payment_id: id,
                    reason,
                },
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// The outcome of a refund (started here or at the hub). Applied once per refund id.
pub fn apply_refund_outcome(
    tx: &Tx,
    st: &Inner,
    o: &edgecart_proto::sync::RefundOutcomePayload,
) -> Result<()> {
    let refund_id =
        Uuid::parse_str(&o.refund_id).map_err(|_| Error::invalid("refund_id", "not a UUID"))?;
    let payment_id =
        Uuid::parse_str(&o.payment_id).map_err(|_| Error::invalid("payment_id", "not a UUID"))?;
    let Some(p) = store::get(tx, payment_id)? else {
        return Err(Error::NotFound("payment"));
    };
    let status = if o.status == "succeeded" {
        "succeeded"
    } else {
        "failed"
    };
    let now = crate::time::now_ms();
    match store::refund_status(tx, refund_id)? {
        Some(current) if current != "pending" => return Ok(()),
        Some(_) => store::set_refund_status(tx, refund_id, status, now)?,
        None => store::insert_refund(
            tx,
            refund_id,
            payment_id,
            o.amount,
            status,
            o.reason.as_deref(),
            now,
        )?,
    }
    let settled = store::refunded_succeeded(tx, payment_id)?;
    let next = if settled >= p.amount {
        PaymentStatus::Refunded
    } else if settled > 0 {
        PaymentStatus::PartiallyRefunded
    } else {
        p.status
    };
    store::set_status(tx, payment_id, next, now)?;
    store::record_change(tx, payment_id, &st.clock.now())
}
