//! The payment worker: charges pending card payments and sends pending refunds to the provider,
//! never holding the database while it waits for the provider.
//!
//! Exactly once: the payment id is the provider's idempotency key, so a retry after a timeout, a
//! crash between the provider's answer and our commit, or a replayed payment message can only
//! ever find the same charge. Before the first request leaves, the entry becomes `charging`
//! (committed), so a crash mid-request leaves a trace; an entry that may hold money at the
//! provider (`charging`, or `voiding` once its store voided it) is asked again until the answer
//! is known, and a capture of a voided payment is refunded in full (see `edgecart_proto::status`).
//! An entry is settled once, so an outcome is recorded and sent to the node once.
//!
//! Storage failures: if the ledger cannot be written (a full disk, an I/O error), the provider's
//! answer is kept in memory and written by a later pass, with back-off, before anything new is
//! sent to the provider; the worker never stops and never spins.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use edgecart_proto::LedgerStatus;

use super::ledger;
use super::provider::{ChargeOutcome, ChargeRequest, Provider, RefundOutcome};
use crate::error::Result;
use crate::state::Hub;

const TICK: Duration = Duration::from_millis(250);
const BATCH: i64 = 16;
/// Longest pause between passes while the database fails (a full disk, an I/O error).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A provider's answer (or a decision of ours) not recorded in the ledger yet.
///
/// Kept in memory until its write commits, so a write that fails (e.g. the disk is full) is
/// retried without asking the provider again. Losing it (a restart) is safe: the payment is
/// still `pending`, and charging again with the same idempotency key finds the same charge.
/// Recording it when the entry has left `pending` meanwhile changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settlement {
    /// Final: `captured` with the provider's charge id, or `failed` with the reason.
    Charge {
        payment_id: String,
        charge_id: Option<String>,
        reason: Option<String>,
    },
    /// No answer: still pending, try again later.
    ChargeRetry {
        payment_id: String,
        error: String,
    },
    /// Final: `succeeded` with the provider's refund id, or `failed` with the reason.
    Refund {
        refund_id: String,
        provider_refund_id: Option<String>,
        reason: Option<String>,
    },
    RefundRetry {
        refund_id: String,
        error: String,
    },
}

pub async fn run(hub: Hub, provider: Arc<dyn Provider>, stop: CancellationToken) {
    let mut generation = hub.db.subscribe();
    let mut unrecorded: Vec<Settlement> = Vec::new();
    let mut backoff = TICK;
    loop {
        match pass(&hub, provider.as_ref(), &mut unrecorded).await {
            Ok(n) => {
                backoff = TICK;
                if n > 0 {
                    continue;
                }
            }
            Err(e) => {
                // Never a hot loop and never an exit: wait, longer each time, and try again.
                tracing::warn!(error = %e, unrecorded = unrecorded.len(), retry_in_ms = backoff.as_millis() as u64,
                    "payment worker pass failed; will retry");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = generation.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Writes the settlements in order, dropping each once committed; stops at the first failure
/// (the rest stay for the next pass).
async fn record(hub: &Hub, unrecorded: &mut Vec<Settlement>) -> Result<()> {
    while let Some(s) = unrecorded.first().cloned() {
        let clock = hub.clock.clone();
        let written = hub
            .db
            .write(move |tx| apply(tx, &s, &clock.now().to_string()))
            .await;
        match written {
            Ok(()) => {
                unrecorded.remove(0);
            }
            Err(e) if e.is_storage() => return Err(e),
            Err(e) => {
                // Not the disk: retrying this write would wedge every later payment behind it.
                // Dropped; the entry stays pending and is charged again with the same key.
                let dropped = unrecorded.remove(0);
                tracing::error!(error = %e, settlement = ?dropped, "could not record a provider answer; dropped");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Writes one settlement into the ledger (in the caller's transaction).
pub(super) fn apply(tx: &rusqlite::Connection, s: &Settlement, version: &str) -> Result<()> {
    match s {
        Settlement::Charge {
            payment_id,
            charge_id,
            reason,
        } => ledger::settle_charge(
            tx,
            payment_id,
            charge_id.as_deref(),
            reason.as_deref(),
            version,
        ),
        Settlement::ChargeRetry { payment_id, error } => {
            ledger::retry_charge(tx, payment_id, error)
        }
        Settlement::Refund {
            refund_id,
            provider_refund_id,
            reason,
        } => ledger::settle_refund(
            tx,
            refund_id,
            provider_refund_id.as_deref(),
            reason.as_deref(),
            version,
        ),
        Settlement::RefundRetry { refund_id, error } => ledger::retry_refund(tx, refund_id, error),
    }
}

/// The settlement a provider's answer to a charge makes.
pub(super) fn charge_settlement(payment_id: &str, outcome: ChargeOutcome) -> Settlement {
    let payment_id = payment_id.to_string();
    match outcome {
        ChargeOutcome::Succeeded { charge_id } => Settlement::Charge {
            payment_id,
            charge_id: Some(charge_id),
            reason: None,
        },
        ChargeOutcome::Declined { code, message } => Settlement::Charge {
            payment_id,
            charge_id: None,
            reason: Some(format!("{code}: {message}")),
        },
        ChargeOutcome::Retry { error } => Settlement::ChargeRetry { payment_id, error },
    }
}

/// The settlement a provider's answer to a refund makes.
pub(super) fn refund_settlement(refund_id: &str, outcome: RefundOutcome) -> Settlement {
    let refund_id = refund_id.to_string();
    match outcome {
        RefundOutcome::Succeeded { refund_id: id } => Settlement::Refund {
            refund_id,
            provider_refund_id: Some(id),
            reason: None,
        },
        RefundOutcome::Failed { message } => Settlement::Refund {
            refund_id,
            provider_refund_id: None,
            reason: Some(message),
        },
        RefundOutcome::Retry { error } => Settlement::RefundRetry { refund_id, error },
    }
}

/// One round over what is due; returns how many items it handled. Answers not recorded by an
/// earlier pass are written first; nothing new is sent to the provider until they are.
async fn pass(
    hub: &Hub,
    provider: &dyn Provider,
    unrecorded: &mut Vec<Settlement>,
) -> Result<usize> {
    let earlier = unrecorded.len();
    record(hub, unrecorded).await?;
    let charges = hub.db.read(|c| ledger::due_charges(c, BATCH)).await?;
    let refunds = hub.db.read(|c| ledger::due_refunds(c, BATCH)).await?;
    let handled = earlier + charges.len() + refunds.len();
    for p in charges {
        if p.status == LedgerStatus::Pending && p.card_token.is_some() {
            // Committed before the request leaves: from here on a void waits for the
            // provider's answer. If this write fails, or the entry was voided since it was
            // read, nothing is sent.
            let id = p.payment_id.clone();
            if !hub
                .db
                .write(move |tx| ledger::begin_charge(tx, &id))
                .await?
            {
                continue;
            }
        }
        let settlement = match p.card_token.as_deref() {
            None => Settlement::Charge {
                payment_id: p.payment_id.clone(),
                charge_id: None,
                reason: Some("no card token".into()),
            },
            Some(source) => {
                // The provider call continues the trace of the checkout that reported the
                // payment (its context came with the store's change and is kept on the entry).
                let span = tracing::info_span!("provider.charge", payment_id = %p.payment_id,
                    node = %p.node_id, attempt = p.attempts + 1);
                crate::telemetry::continue_from(&span, &p.traceparent, &p.tracestate);
                let outcome = provider
                    .charge(&ChargeRequest {
                        payment_id: &p.payment_id,
                        order_id: &p.order_id,
                        node_id: &p.node_id,
                        amount: p.amount,
                        currency: &p.currency,
                        source,
                    })
                    .instrument(span)
                    .await;
                match &outcome {
                    ChargeOutcome::Succeeded { .. } => {
                        tracing::info!(payment_id = %p.payment_id, node = %p.node_id, "card charged")
                    }
                    ChargeOutcome::Declined { code, .. } => {
                        tracing::info!(payment_id = %p.payment_id, %code, "card declined")
                    }
                    ChargeOutcome::Retry { error } => {
                        tracing::warn!(payment_id = %p.payment_id, %error, "no answer from the provider; will retry")
                    }
                }
                charge_settlement(&p.payment_id, outcome)
            }
        };
        unrecorded.push(settlement);
        record(hub, unrecorded).await?;
    }
    for r in refunds {
        let payment_id = r.payment_id.clone();
        let payment = hub.db.read(move |c| ledger::get(c, &payment_id)).await?;
        let settlement = match payment.and_then(|p| p.provider_charge_id) {
            None => Settlement::Refund {
                refund_id: r.refund_id.clone(),
                provider_refund_id: None,
                reason: Some("payment was never charged".into()),
            },
            Some(charge_id) => refund_settlement(
                &r.refund_id,
                provider.refund(&r.refund_id, &charge_id, r.amount).await,
            ),
        };
        unrecorded.push(settlement);
        record(hub, unrecorded).await?;
    }
    Ok(handled)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use edgecart_proto::hlc::Clock;
    use edgecart_proto::ids::ActorId;
    use edgecart_proto::sync::PaymentPayload;

    use super::*;
    use crate::db::Db;

    /// Succeeds and counts the calls per idempotency key.
    #[derive(Default)]
    struct Counting(Mutex<HashMap<String, u32>>);

    impl Counting {
        fn calls(&self, id: &str) -> u32 {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .copied()
                .unwrap_or(0)
        }
    }

    #[tonic::async_trait]
    impl Provider for Counting {
        async fn charge(&self, req: &ChargeRequest<'_>) -> ChargeOutcome {
            *self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(req.payment_id.to_string())
                .or_default() += 1;
            ChargeOutcome::Succeeded {
                charge_id: format!("ch_{}", req.payment_id),
            }
        }

        async fn refund(&self, refund_id: &str, _charge_id: &str, _amount: i64) -> RefundOutcome {
            RefundOutcome::Succeeded {
                refund_id: format!("re_{refund_id}"),
            }
        }
    }

    async fn status_and_outcomes(hub: &Hub, id: &str) -> (String, i64) {
        let id = id.to_string();
        hub.db
            .read(move |c| {
                let status = ledger::get(c, &id)?
                    .map(|p| p.status.as_str().to_string())
                    .unwrap_or_default();
                let outcomes = c.query_row(
                    "SELECT count(*) FROM changes WHERE entity = 'payment_outcome' AND entity_id = ?1",
                    [&id],
                    |r| r.get(0),
                )?;
                Ok((status, outcomes))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_charge_whose_outcome_cannot_be_recorded_is_recorded_later_without_charging_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("hub.db")).unwrap();
        let hub = Hub::new(db, Clock::new(ActorId::hub()), "a");
        let id = edgecart_proto::ids::new_id().to_string();
        let payment = PaymentPayload {
            id: id.clone(),
            order_id: edgecart_proto::ids::new_id().to_string(),
            user_id: edgecart_proto::ids::new_id().to_string(),
            method: "card".into(),
            status: "pending".into(),
            amount: 1250,
            currency: "USD".into(),
            card_token: Some("tok_visa".into()),
            refunds: Vec::new(),
            updated_at: 1,
        };
        // Sent once already (as before a crash): the next send needs no write first.
        let sent = id.clone();
        hub.db
            .write(move |tx| {
                ledger::record(tx, "store-a", &payment)?;
                ledger::begin_charge(tx, &sent)
            })
            .await
            .unwrap();

        // Every write fails (as on a full or read-only disk) while the worker runs.
        hub.db.set_query_only(true).await.unwrap();
        let provider = Arc::new(Counting::default());
        let stop = CancellationToken::new();
        let worker = tokio::spawn(run(hub.clone(), provider.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!worker.is_finished(), "the worker must not give up");
        assert_eq!(provider.calls(&id), 1, "charged once, the answer kept");
        assert_eq!(status_and_outcomes(&hub, &id).await, ("charging".into(), 0));

        // Writes work again: the kept answer is recorded, once, without a second charge.
        hub.db.set_query_only(false).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        while status_and_outcomes(&hub, &id).await.0 == "charging" {
            assert!(tokio::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status_and_outcomes(&hub, &id).await, ("captured".into(), 1));
        assert_eq!(provider.calls(&id), 1);
        stop.cancel();
        worker.await.unwrap();
    }
}
