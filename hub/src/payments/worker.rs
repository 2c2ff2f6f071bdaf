//! The payment worker: charges pending card payments and sends pending refunds to the provider,
//! never holding the database while it waits for the provider.
//!
//! Exactly once: the payment id is the provider's idempotency key, so a retry after a timeout, a
//! crash between the provider's answer and our commit, or a replayed payment message can only
//! ever find the same charge. A ledger entry leaves `pending` once, so an outcome is recorded
//! and sent to the node once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ledger;
use super::provider::{ChargeOutcome, ChargeRequest, Provider, RefundOutcome};
use crate::state::Hub;

const TICK: Duration = Duration::from_millis(250);
const BATCH: i64 = 16;

pub async fn run(hub: Hub, provider: Arc<dyn Provider>, stop: CancellationToken) {
    let mut generation = hub.db.subscribe();
    loop {
        let busy = match pass(&hub, provider.as_ref()).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "payment worker pass failed");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = generation.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One round over what is due; returns how many items it handled.
async fn pass(hub: &Hub, provider: &dyn Provider) -> crate::error::Result<usize> {
    let charges = hub.db.read(|c| ledger::due_charges(c, BATCH)).await?;
    let refunds = hub.db.read(|c| ledger::due_refunds(c, BATCH)).await?;
    let handled = charges.len() + refunds.len();
    for p in charges {
        let Some(source) = p.card_token.as_deref() else {
            let (clock, id) = (hub.clock.clone(), p.payment_id.clone());
            hub.db
                .write(move |tx| {
                    ledger::settle_charge(
                        tx,
                        &id,
                        None,
                        Some("no card token"),
                        &clock.now().to_string(),
                    )
                })
                .await?;
            continue;
        };
        let outcome = provider
            .charge(&ChargeRequest {
                payment_id: &p.payment_id,
                order_id: &p.order_id,
                node_id: &p.node_id,
                amount: p.amount,
                currency: &p.currency,
                source,
            })
            .await;
        let (clock, id) = (hub.clock.clone(), p.payment_id.clone());
        match outcome {
            ChargeOutcome::Succeeded { charge_id } => {
                tracing::info!(payment_id = %id, node = %p.node_id, "card charged");
                hub.db
                    .write(move |tx| {
                        ledger::settle_charge(
                            tx,
                            &id,
                            Some(&charge_id),
                            None,
                            &clock.now().to_string(),
                        )
                    })
                    .await?;
            }
            ChargeOutcome::Declined { code, message } => {
                tracing::info!(payment_id = %id, %code, "card declined");
                let reason = format!("{code}: {message}");
                hub.db
                    .write(move |tx| {
                        ledger::settle_charge(
                            tx,
                            &id,
                            None,
                            Some(&reason),
                            &clock.now().to_string(),
                        )
                    })
                    .await?;
            }
            ChargeOutcome::Retry { error } => {
                tracing::warn!(payment_id = %id, %error, "no answer from the provider; will retry");
                hub.db
                    .write(move |tx| ledger::retry_charge(tx, &id, &error))
                    .await?;
            }
        }
    }
    for r in refunds {
        let payment_id = r.payment_id.clone();
        let payment = hub.db.read(move |c| ledger::get(c, &payment_id)).await?;
        let Some(charge_id) = payment.and_then(|p| p.provider_charge_id) else {
            let (clock, id) = (hub.clock.clone(), r.refund_id.clone());
            hub.db
                .write(move |tx| {
                    ledger::settle_refund(
                        tx,
                        &id,
                        None,
                        Some("payment was never charged"),
                        &clock.now().to_string(),
                    )
                })
                .await?;
            continue;
        };
        let outcome = provider.refund(&r.refund_id, &charge_id, r.amount).await;
        let (clock, id) = (hub.clock.clone(), r.refund_id.clone());
        match outcome {
            RefundOutcome::Succeeded { refund_id } => {
                hub.db
                    .write(move |tx| {
                        ledger::settle_refund(
                            tx,
                            &id,
                            Some(&refund_id),
                            None,
                            &clock.now().to_string(),
                        )
                    })
                    .await?;
            }
            RefundOutcome::Failed { message } => {
                hub.db
                    .write(move |tx| {
                        ledger::settle_refund(
                            tx,
                            &id,
                            None,
                            Some(&message),
                            &clock.now().to_string(),
                        )
                    })
                    .await?;
            }
            RefundOutcome::Retry { error } => {
                hub.db
                    .write(move |tx| ledger::retry_refund(tx, &id, &error))
                    .await?;
            }
        }
    }
    Ok(handled)
}
