//! The reconciliation report: where orders, the ledger and refunds disagree.

use std::collections::{BTreeMap, HashMap};

use edgecart_proto::{LedgerStatus, pb};
use rusqlite::Connection;

use super::ledger;
use crate::error::Result;
use crate::store::{now_ms, orders};

pub fn report(conn: &Connection, offline_threshold_ms: i64) -> Result<pb::ReconciliationReport> {
    let payments = ledger::all(conn)?;
    let all_orders = orders::list(conn, None, "", i64::MAX)?;
    let order_by_id: HashMap<&str, &edgecart_proto::sync::OrderPayload> =
        all_orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut issues = Vec::new();
    let mut per_node: BTreeMap<String, pb::NodeReconciliation> = BTreeMap::new();
    let issue = |kind: &str, node: &str, order: &str, payment: &str, detail: String| {
        pb::ReconciliationIssue {
            kind: kind.into(),
            node_id: node.into(),
            order_id: order.into(),
            payment_id: payment.into(),
            detail,
        }
    };
    let threshold = now_ms() - offline_threshold_ms.max(0);
    let mut settled_orders = std::collections::HashSet::new();
    for p in &payments {
        let entry = per_node
            .entry(p.node_id.clone())
            .or_insert_with(|| pb::NodeReconciliation {
                node_id: p.node_id.clone(),
                ..Default::default()
            });
        let refunded: i64 = ledger::refunds_of(conn, &p.payment_id)?
            .iter()
            .filter(|r| r.status == "succeeded")
            .map(|r| r.amount)
            .sum();
        if p.status == LedgerStatus::Captured {
            entry.captured_amount += p.amount;
            entry.refunded_amount += refunded;
            settled_orders.insert(p.order_id.clone());
        }
        match order_by_id.get(p.order_id.as_str()) {
            None => issues.push(issue(
                "payment_without_order",
                &p.node_id,
                &p.order_id,
                &p.payment_id,
                format!(
                    "{} payment of {} {} for an order the hub does not know",
                    p.status, p.amount, p.currency
                ),
            )),
            Some(o) if p.status == LedgerStatus::Captured && o.total_amount != p.amount => issues
                .push(issue(
                    "amount_mismatch",
                    &p.node_id,
                    &p.order_id,
                    &p.payment_id,
                    format!("order total {} but captured {}", o.total_amount, p.amount),
                )),
            _ => {}
        }
        if refunded > p.amount {
            issues.push(issue(
                "refund_exceeds_capture",
                &p.node_id,
                &p.order_id,
                &p.payment_id,
                format!("refunded {refunded} of {}", p.amount),
            ));
        }
        if p.offline && p.status.needs_provider() && p.created_at < threshold {
            issues.push(issue(
                "offline_payment_waiting",
                &p.node_id,
                &p.order_id,
                &p.payment_id,
                format!(
                    "accepted offline {} ms ago and not charged yet",
                    now_ms() - p.created_at
                ),
            ));
        }
    }
    for o in &all_orders {
        if matches!(o.status.as_str(), "paid" | "shipped" | "delivered")
            && !settled_orders.contains(&o.id)
        {
            issues.push(issue(
                "order_without_settled_payment",
                &o.node_id,
                &o.id,
                "",
                format!(
                    "order is {} but no captured payment is in the ledger",
                    o.status
                ),
            ));
        }
    }
    for i in &issues {
        if let Some(n) = per_node.get_mut(&i.node_id) {
            n.issues += 1;
        }
    }
    let nodes: Vec<_> = per_node.into_values().collect();
    Ok(pb::ReconciliationReport {
        captured_total: nodes.iter().map(|n| n.captured_amount).sum(),
        refunded_total: nodes.iter().map(|n| n.refunded_amount).sum(),
        clean: issues.is_empty(),
        issues,
        nodes,
    })
}
