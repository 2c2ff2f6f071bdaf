//! Payment rules, run inside the caller's write transaction. Orders are none of this module's
//! business: the saga (`crate::saga`) moves an order when its payment moves.

use uuid::Uuid;

use super::model::{CardToken, Method, PaymentStatus, PaymentView};
pub use super::store::view;
use super::store::{self, PaymentRow};
use crate::db::Tx;
use crate::error::{Error, Result};
use crate::state::Inner;

/// What a payment is for: an order's total, owed by its customer.
pub struct Payable<'a> {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: i64,
    pub currency: &'a str,
}

/// Records a payment. Cash is `captured` at once; a card payment stays `pending` until the hub
/// reports the provider's answer, or is taken offline within the store's limits.
pub fn record(
    tx: &Tx,
    st: &Inner,
    order: &Payable<'_>,
    method: Method,
    card: Option<&CardToken>,
) -> Result<PaymentRow> {
    if store::by_order(tx, order.order_id)?
        .iter()
        .any(|p| p.status.is_live())
    {
        return Err(Error::conflict(
            "payment-in-progress",
            "the order already has a payment in progress",
        ));
    }
    if order.amount <= 0 {
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
            if order.amount > st.offline_card_limit {
                return Err(Error::invalid(
                    "amount",
                    format!(
                        "card payments above {} minor units need the link to the hub, which is down",
                        st.offline_card_limit
                    ),
                ));
            }
            let held = store::offline_total(tx)?;
            if held + order.amount > st.offline_card_total {
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
        order_id: order.order_id,
        user_id: order.user_id,
        method,
        status,
        amount: order.amount,
        currency: order.currency.to_string(),
        failure_reason: None,
        created_at: now,
        updated_at: now,
    };
    store::insert(tx, &payment, card.map(CardToken::as_str))?;
    store::record_change(tx, payment.id, &st.clock.now())?;
    Ok(payment)
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
        move_to(tx, &payment, status, now)?;
    }
    store::record_change(tx, payment_id, &st.clock.now())?;
    let payment = store::get(tx, payment_id)?.ok_or(Error::NotFound("payment"))?;
    store::view(tx, payment)
}

/// Compensation when an order is cancelled: payments not yet charged are voided (the hub
/// refunds a charge that was already in flight when the void reaches it), captured ones are
/// refunded in full.
pub fn compensate(tx: &Tx, st: &Inner, order_id: Uuid) -> Result<()> {
    let now = crate::time::now_ms();
    for p in store::by_order(tx, order_id)? {
        match p.status {
            PaymentStatus::Pending | PaymentStatus::AuthorizedOffline => {
                move_to(tx, &p, PaymentStatus::Voided, now)?;
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

/// What a charge outcome did to its payment; the saga moves the order accordingly.
pub enum Outcome {
    /// Captured while the order waited for it.
    Captured(PaymentRow),
    /// Declined while the order waited for it, with the reason.
    Failed(PaymentRow, String),
    /// Nothing for the order to do: a replay, or the capture of a payment voided meanwhile
    /// (its order is cancelled; the hub refunds the charge and reports the refund).
    Unchanged,
}

/// The hub's answer to a card charge. Applied once: only a payment still waiting for it moves.
pub fn apply_outcome(
    tx: &Tx,
    st: &Inner,
    o: &edgecart_proto::sync::PaymentOutcomePayload,
) -> Result<Outcome> {
    let id =
        Uuid::parse_str(&o.payment_id).map_err(|_| Error::invalid("payment_id", "not a UUID"))?;
    let Some(p) = store::get(tx, id)? else {
        return Err(Error::NotFound("payment"));
    };
    let now = crate::time::now_ms();
    let outcome = match (o.status.as_str(), p.status) {
        ("captured", s) if s.is_awaiting_charge() => {
            move_to(tx, &p, PaymentStatus::Captured, now)?;
            Outcome::Captured(p)
        }
        // The order was cancelled while the charge was in flight: the money was taken. The hub
        // refunds it in full and reports that refund, which settles this payment as refunded.
        ("captured", PaymentStatus::Voided) => {
            move_to(tx, &p, PaymentStatus::Captured, now)?;
            Outcome::Unchanged
        }
        ("failed", s) if s.is_awaiting_charge() => {
            let reason = o.reason.clone().unwrap_or_else(|| "declined".into());
            store::set_failed(tx, id, &reason, now)?;
            Outcome::Failed(p, reason)
        }
        _ => return Ok(Outcome::Unchanged),
    };
    store::record_change(tx, id, &st.clock.now())?;
    Ok(outcome)
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
    move_to(tx, &p, next, now)?;
    store::record_change(tx, payment_id, &st.clock.now())
}

/// Moves a payment along its status machine (`edgecart_proto::PaymentStatus::can_become`);
/// staying where it is is no move. An illegal move is a bug here or a corrupt record, never
/// written.
fn move_to(tx: &Tx, p: &PaymentRow, to: PaymentStatus, now: i64) -> Result<()> {
    if p.status == to {
        return Ok(());
    }
    if !p.status.can_become(to) {
        return Err(Error::Internal(format!(
            "payment {} cannot go from {} to {to}",
            p.id, p.status
        )));
    }
    store::set_status(tx, p.id, to, now)
}
