//! SQL for the payment ledger and refunds.

use edgecart_proto::sync::{PaymentOutcomePayload, PaymentPayload, RefundOutcomePayload, entity};
use edgecart_proto::{LedgerStatus, OnVoid};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{HubError, Result};
use crate::store::{changes, now_ms};

#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub payment_id: String,
    pub node_id: String,
    pub order_id: String,
    pub method: String,
    pub amount: i64,
    pub currency: String,
    pub card_token: Option<String>,
    pub status: LedgerStatus,
    pub offline: bool,
    pub provider_charge_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// The W3C trace context (`traceparent`, `tracestate`) of the store's change that reported
    /// the payment; empty when the store does not export traces.
    pub traceparent: String,
    pub tracestate: String,
}

const COLUMNS: &str =
    "payment_id, node_id, order_id, method, amount, currency, card_token, status, offline,
    provider_charge_id, attempts, last_error, created_at, coalesce(traceparent, ''),
    coalesce(tracestate, '')";

/// Keeps the trace context of the change that reported payment `id` (the first traced one: the
/// checkout's), so the provider call joins that trace.
pub fn keep_trace(conn: &Connection, id: &str, traceparent: &str, tracestate: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE ledger SET traceparent = ?2, tracestate = nullif(?3, '')
         WHERE payment_id = ?1 AND traceparent IS NULL",
    )?
    .execute(params![id, traceparent, tracestate])?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerRow> {
    Ok(LedgerRow {
        payment_id: r.get(0)?,
        node_id: r.get(1)?,
        order_id: r.get(2)?,
        method: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        card_token: r.get(6)?,
        status: {
            let s: String = r.get(7)?;
            s.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    7,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?
        },
        offline: r.get::<_, i64>(8)? != 0,
        provider_charge_id: r.get(9)?,
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        traceparent: r.get(13)?,
        tracestate: r.get(14)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<LedgerRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM ledger WHERE payment_id = ?1"
        ))?
        .query_row([id], row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    node: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<Vec<LedgerRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM ledger WHERE payment_id > ?1 AND (?2 IS NULL OR node_id = ?2)
         ORDER BY payment_id LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![after, node, limit], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn all(conn: &Connection) -> Result<Vec<LedgerRow>> {
    list(conn, None, "", i64::MAX)
}

/// Takes in a payment as its node reports it. The first report creates the ledger entry (card
/// payments start `pending`: the worker charges them); a later report of `voided` moves the
/// entry as [`LedgerStatus::on_void`] says — final only if no charge was ever sent, otherwise
/// `voiding` until the provider's answer is known — and the refunds the node asks for are added.
pub fn record(conn: &Connection, node: &str, p: &PaymentPayload) -> Result<()> {
    let now = now_ms();
    let existing = get(conn, &p.id)?;
    match &existing {
        None => {
            let status = match (p.method.as_str(), p.status.as_str()) {
                (_, "voided") => LedgerStatus::Voided,
                (_, "failed") => LedgerStatus::Failed,
                ("cash", _) => LedgerStatus::Captured,
                _ => LedgerStatus::Pending,
            };
            conn.prepare_cached(
                "INSERT INTO ledger (payment_id, node_id, order_id, method, amount, currency, card_token, status,
                                     offline, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(params![
                p.id,
                node,
                p.order_id,
                if p.method == "cash" { "cash" } else { "card" },
                p.amount,
                p.currency,
                p.card_token,
                status.as_str(),
                (p.status == "authorized_offline") as i64,
                now
            ])?;
        }
        Some(row) if p.status == "voided" => match row.status.on_void() {
            OnVoid::Become(next) => {
                if set_status(conn, &p.id, row.status, next)? {
                    tracing::info!(payment_id = %p.id, from = %row.status, to = %next, "payment voided by its store");
                }
            }
            OnVoid::RefundTheRest => {
                refund_the_rest(conn, row, "voided by its store after the charge")?
            }
            OnVoid::Nothing => {}
        },
        Some(_) => {}
    }
    for r in p.refunds.iter().filter(|r| r.status == "pending") {
        let known = conn
            .prepare_cached("SELECT 1 FROM ledger_refunds WHERE refund_id = ?1")?
            .exists([&r.id])?;
        if !known {
            add_refund(conn, &p.id, &r.id, r.amount.amount, r.reason.as_deref())?;
        }
    }
    Ok(())
}

/// Moves an entry from `from` to `to`, checked against the machine. Returns false (and changes
/// nothing) if the entry has left `from` meanwhile.
fn set_status(conn: &Connection, id: &str, from: LedgerStatus, to: LedgerStatus) -> Result<bool> {
    if !from.can_become(to) {
        return Err(HubError::Internal(format!(
            "ledger transition {from} -> {to}"
        )));
    }
    let moved = conn
        .prepare_cached(
            "UPDATE ledger SET status = ?3, updated_at = ?4 WHERE payment_id = ?1 AND status = ?2",
        )?
        .execute(params![id, from.as_str(), to.as_str(), now_ms()])?;
    Ok(moved == 1)
}

/// Marks a `pending` charge as sent — committed *before* the request leaves, so after any crash
/// the ledger knows the provider may hold money for it (a void then waits for the answer).
/// False if the entry is no longer `pending` (voided since it was read): then nothing is sent.
pub fn begin_charge(conn: &Connection, id: &str) -> Result<bool> {
    set_status(conn, id, LedgerStatus::Pending, LedgerStatus::Charging)
}

/// Records a refund to be sent to the provider, refusing what exceeds the captured amount.
pub fn add_refund(
    conn: &Connection,
    payment_id: &str,
    refund_id: &str,
    amount: i64,
    reason: Option<&str>,
) -> Result<()> {
    let payment = get(conn, payment_id)?.ok_or(HubError::NotFound("payment"))?;
    if payment.status != LedgerStatus::Captured {
        return Err(HubError::Precondition(format!(
            "a {} payment cannot be refunded",
            payment.status
        )));
    }
    if amount <= 0 {
        return Err(HubError::invalid("amount", "must be positive"));
    }
    let refunded = refunded(conn, payment_id)?;
    if amount > payment.amount - refunded {
        return Err(HubError::invalid(
            "amount",
            format!(
                "exceeds what can still be refunded ({} minor units)",
                payment.amount - refunded
            ),
        ));
    }
    // Cash is refunded at the till by the node; only card refunds go to the provider.
    let status = if payment.method == "cash" {
        "succeeded"
    } else {
        "pending"
    };
    conn.prepare_cached(
        "INSERT INTO ledger_refunds (refund_id, payment_id, amount, status, reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![refund_id, payment_id, amount, status, reason, now_ms()])?;
    Ok(())
}

/// Refunded or being refunded.
pub fn refunded(conn: &Connection, payment_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(sum(amount), 0) FROM ledger_refunds WHERE payment_id = ?1 AND status != 'failed'")?
        .query_row([payment_id], |r| r.get(0))?)
}

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: i64,
    pub status: String,
    pub provider_refund_id: Option<String>,
    pub attempts: i64,
}

fn refund_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefundRow> {
    Ok(RefundRow {
        refund_id: r.get(0)?,
        payment_id: r.get(1)?,
        amount: r.get(2)?,
        status: r.get(3)?,
        provider_refund_id: r.get(4)?,
        attempts: r.get(5)?,
    })
}

const REFUND_COLUMNS: &str = "refund_id, payment_id, amount, status, provider_refund_id, attempts";

pub fn refunds_of(conn: &Connection, payment_id: &str) -> Result<Vec<RefundRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM ledger_refunds WHERE payment_id = ?1 ORDER BY created_at, refund_id"
    ))?;
    let rows = stmt
        .query_map([payment_id], refund_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn get_refund(conn: &Connection, refund_id: &str) -> Result<Option<RefundRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {REFUND_COLUMNS} FROM ledger_refunds WHERE refund_id = ?1"
        ))?
        .query_row([refund_id], refund_row)
        .optional()?)
}

/// Card payments due for a charge attempt: never sent, or sent with no answer known yet
/// (voided or not).
pub fn due_charges(conn: &Connection, limit: i64) -> Result<Vec<LedgerRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM ledger WHERE status IN ('pending', 'charging', 'voiding') AND method = 'card'
         AND next_attempt_at <= ?1
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![now_ms(), limit], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn due_refunds(conn: &Connection, limit: i64) -> Result<Vec<RefundRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REFUND_COLUMNS} FROM ledger_refunds WHERE status = 'pending' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![now_ms(), limit], refund_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn backoff_ms(attempts: i64) -> i64 {
    (500i64 << attempts.clamp(0, 6)).min(30_000)
}

/// Records the provider's final answer to a charge (`captured` with its charge id, or declined
/// with the reason) as [`LedgerStatus::on_answer`] says, and tells the owning node. A replayed
/// or late answer for a settled entry changes nothing. A capture of a payment its store voided
/// meanwhile (`voiding`) is recorded as captured and refunded in full in the same transaction:
/// the money was taken, and the customer gets it back without waiting on the store.
pub fn settle_charge(
    conn: &Connection,
    id: &str,
    captured: Option<&str>,
    reason: Option<&str>,
    version: &str,
) -> Result<()> {
    let Some(p) = get(conn, id)? else {
        return Ok(());
    };
    let next = match p.status {
        // Never sent (no card token): fails without the provider.
        LedgerStatus::Pending if captured.is_none() => Some((LedgerStatus::Failed, false)),
        s => s.on_answer(captured.is_some()),
    };
    let Some((status, refund_all)) = next else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE ledger SET status = ?2, provider_charge_id = ?3, last_error = ?4, attempts = attempts + 1,
             updated_at = ?5 WHERE payment_id = ?1",
    )?
    .execute(params![id, status.as_str(), captured, reason, now_ms()])?;
    let outcome = PaymentOutcomePayload {
        payment_id: id.to_string(),
        order_id: p.order_id.clone(),
        status: status.as_str().to_string(),
        reason: reason.map(str::to_string),
        charge_id: captured.map(str::to_string),
    };
    changes::append_traced(
        conn,
        Some(&p.node_id),
        entity::PAYMENT_OUTCOME,
        id,
        version,
        &serde_json::to_string(&outcome)?,
        (&p.traceparent, &p.tracestate),
    )?;
    if refund_all {
        let p = LedgerRow {
            status,
            provider_charge_id: captured.map(str::to_string),
            ..p
        };
        refund_the_rest(conn, &p, "order cancelled while the charge was in flight")?;
    }
    Ok(())
}

/// Refunds what of a captured payment is not refunded (or being refunded) yet: its store voided
/// it, so the customer owes nothing. The refund is the hub's; its outcome reaches the store.
fn refund_the_rest(conn: &Connection, p: &LedgerRow, reason: &str) -> Result<()> {
    let rest = p.amount - refunded(conn, &p.payment_id)?;
    if rest <= 0 {
        return Ok(());
    }
    let refund_id = edgecart_proto::new_id().to_string();
    tracing::warn!(payment_id = %p.payment_id, %refund_id, rest, reason, "refunding a voided payment's capture");
    add_refund(conn, &p.payment_id, &refund_id, rest, Some(reason))
}

/// A charge attempt got no answer: keep it pending and try again later (same idempotency key).
pub fn retry_charge(conn: &Connection, id: &str, error: &str) -> Result<()> {
    let attempts = get(conn, id)?.map_or(0, |p| p.attempts);
    conn.prepare_cached(
        "UPDATE ledger SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
         WHERE payment_id = ?1 AND status IN ('charging', 'voiding')",
    )?
    .execute(params![id, error, now_ms() + backoff_ms(attempts)])?;
    Ok(())
}

pub fn settle_refund(
    conn: &Connection,
    refund_id: &str,
    succeeded: Option<&str>,
    reason: Option<&str>,
    version: &str,
) -> Result<()> {
    let Some(r) = get_refund(conn, refund_id)? else {
        return Ok(());
    };
    if r.status != "pending" {
        return Ok(());
    }
    let status = if succeeded.is_some() {
        "succeeded"
    } else {
        "failed"
    };
    conn.prepare_cached(
        "UPDATE ledger_refunds SET status = ?2, provider_refund_id = ?3, last_error = ?4, attempts = attempts + 1,
             updated_at = ?5 WHERE refund_id = ?1",
    )?
    .execute(params![refund_id, status, succeeded, reason, now_ms()])?;
    notify_refund(
        conn,
        &r.payment_id,
        refund_id,
        r.amount,
        status,
        reason,
        version,
    )
}

pub fn notify_refund(
    conn: &Connection,
    payment_id: &str,
    refund_id: &str,
    amount: i64,
    status: &str,
    reason: Option<&str>,
    version: &str,
) -> Result<()> {
    let p = get(conn, payment_id)?.ok_or(HubError::NotFound("payment"))?;
    let outcome = RefundOutcomePayload {
        refund_id: refund_id.to_string(),
        payment_id: payment_id.to_string(),
        amount,
        status: status.to_string(),
        reason: reason.map(str::to_string),
    };
    changes::append(
        conn,
        Some(&p.node_id),
        entity::REFUND_OUTCOME,
        refund_id,
        version,
        &serde_json::to_string(&outcome)?,
    )?;
    Ok(())
}

pub fn retry_refund(conn: &Connection, refund_id: &str, error: &str) -> Result<()> {
    let attempts: i64 = conn
        .prepare_cached("SELECT attempts FROM ledger_refunds WHERE refund_id = ?1")?
        .query_row([refund_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    conn.prepare_cached(
        "UPDATE ledger_refunds SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
         WHERE refund_id = ?1 AND status = 'pending'",
    )?
    .execute(params![refund_id, error, now_ms() + backoff_ms(attempts)])?;
    Ok(())
}
