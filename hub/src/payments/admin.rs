//! The `PaymentAdmin` gRPC service.

use edgecart_proto::pb;
use tonic::{Request, Response, Status};

use super::{ledger, reconcile};
use crate::error::{HubError, Result};
use crate::state::Hub;

pub struct PaymentAdmin {
    pub hub: Hub,
}

fn money(amount: i64, currency: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount,
        currency: currency.to_string(),
    })
}

fn view(conn: &rusqlite::Connection, p: ledger::LedgerRow) -> Result<pb::Payment> {
    let refunds = ledger::refunds_of(conn, &p.payment_id)?;
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r.status == "succeeded")
        .map(|r| r.amount)
        .sum();
    Ok(pb::Payment {
        refunds: refunds
            .into_iter()
            .map(|r| pb::Refund {
                id: r.refund_id,
                payment_id: r.payment_id,
                amount: money(r.amount, &p.currency),
                status: r.status,
                provider_refund_id: r.provider_refund_id.unwrap_or_default(),
            })
            .collect(),
        amount: money(p.amount, &p.currency),
        refunded: money(refunded, &p.currency),
        id: p.payment_id,
        order_id: p.order_id,
        node_id: p.node_id,
        method: p.method,
        status: p.status.to_string(),
        provider_charge_id: p.provider_charge_id.unwrap_or_default(),
        attempts: i32::try_from(p.attempts).unwrap_or(i32::MAX),
        last_error: p.last_error.unwrap_or_default(),
        offline: p.offline,
        created_at_unix_ms: p.created_at,
    })
}

fn parse_id(field: &str, raw: &str) -> Result<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| HubError::invalid(field, "must be a UUID"))
}

#[tonic::async_trait]
impl pb::payment_admin_server::PaymentAdmin for PaymentAdmin {
    async fn get_payment(
        &self,
        req: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let id = parse_id("payment_id", &req.into_inner().payment_id)?;
        let payment = self
            .hub
            .db
            .read(move |c| ledger::get(c, &id)?.map(|p| view(c, p)).transpose())
            .await?
            .ok_or(HubError::NotFound("payment"))?;
        Ok(Response::new(payment))
    }

    async fn list_payments(
        &self,
        req: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let r = req.into_inner();
        let size = if r.page_size <= 0 {
            50
        } else {
            i64::from(r.page_size).min(500)
        };
        if !r.page_token.is_empty() {
            parse_id("page_token", &r.page_token)?;
        }
        let node = (!r.node_id.is_empty()).then_some(r.node_id);
        let after = r.page_token;
        let payments = self
            .hub
            .db
            .read(move |c| {
                ledger::list(c, node.as_deref(), &after, size)?
                    .into_iter()
                    .map(|p| view(c, p))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let next_page_token = if payments.len() as i64 == size {
            payments.last().map(|p| p.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListPaymentsResponse {
            payments,
            next_page_token,
        }))
    }

    async fn refund_payment(
        &self,
        req: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::Refund>, Status> {
        let r = req.into_inner();
        let payment_id = parse_id("payment_id", &r.payment_id)?;
        if r.amount <= 0 {
            return Err(HubError::invalid("amount", "must be positive").into());
        }
        let refund_id = if r.refund_id.is_empty() {
            edgecart_proto::ids::new_id().to_string()
        } else {
            parse_id("refund_id", &r.refund_id)?
        };
        let reason = (!r.reason.is_empty()).then_some(r.reason);
        let clock = self.hub.clock.clone();
        let (id, pid) = (refund_id.clone(), payment_id.clone());
        let refund = self
            .hub
            .db
            .write(move |tx| {
                if let Some(existing) = ledger::get_refund(tx, &id)? {
                    // The same refund retried: refunded once.
                    if existing.payment_id != pid || existing.amount != r.amount {
                        return Err(HubError::invalid(
                            "refund_id",
                            "already used for a different refund",
                        ));
                    }
                    return Ok(existing);
                }
                ledger::add_refund(tx, &pid, &id, r.amount, reason.as_deref())?;
                let created = ledger::get_refund(tx, &id)?.ok_or(HubError::NotFound("refund"))?;
                // The node learns of refunds started here through the same outcome message;
                // cash refunds complete at once.
                if created.status == "succeeded" {
                    ledger::notify_refund(
                        tx,
                        &pid,
                        &id,
                        created.amount,
                        "succeeded",
                        reason.as_deref(),
                        &clock.now().to_string(),
                    )?;
                }
                Ok(created)
            })
            .await?;
        let currency = {
            let pid = payment_id.clone();
            self.hub
                .db
                .read(move |c| {
                    Ok(ledger::get(c, &pid)?
                        .map(|p| p.currency)
                        .unwrap_or_default())
                })
                .await?
        };
        Ok(Response::new(pb::Refund {
            id: refund.refund_id,
            payment_id: refund.payment_id,
            amount: money(refund.amount, &currency),
            status: refund.status,
            provider_refund_id: refund.provider_refund_id.unwrap_or_default(),
        }))
    }

    async fn get_reconciliation_report(
        &self,
        req: Request<pb::ReconciliationRequest>,
    ) -> Result<Response<pb::ReconciliationReport>, Status> {
        let threshold = match req.into_inner().offline_threshold_ms {
            t if t <= 0 => 15 * 60 * 1000,
            t => t,
        };
        let report = self
            .hub
            .db
            .read(move |c| reconcile::report(c, threshold))
            .await?;
        Ok(Response::new(report))
    }
}
