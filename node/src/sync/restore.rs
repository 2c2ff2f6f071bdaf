//! Getting back this node's own orders and payments after it was restored from an older copy of
//! its database. The hub keeps a read copy of every order and payment a node reported; when it
//! sees a node behind what it acknowledged, it sends that node its own records with the
//! re-sync snapshot, and they are re-created here as they were last reported. Stock is not
//! touched: the node's stock cells come back in the same snapshot and already count these
//! sales. A record this node still has is brought up to the hub's copy when that copy is newer
//! (both carry this node's own `updated_at`, so no other clock is compared).

use edgecart_proto::sync::{OrderPayload, PaymentPayload};
use rusqlite::{OptionalExtension, params};

use crate::db::Tx;
use crate::error::{Error, Result};
use crate::state::Inner;

fn exists(tx: &Tx, sql: &str, id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn updated_at(tx: &Tx, sql: &str, id: &str) -> Result<Option<i64>> {
    Ok(tx
        .prepare_cached(sql)?
        .query_row([id], |r| r.get(0))
        .optional()?)
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

/// Re-creates one of this node's orders from the hub's copy, unless it is here already.
pub fn order(tx: &Tx, st: &Inner, o: &OrderPayload) -> Result<()> {
    if o.node_id != st.node_id.as_str() {
        return Ok(());
    }
    if let Some(here) = updated_at(tx, "SELECT updated_at FROM orders WHERE id = ?1", &o.id)? {
        if here < o.updated_at {
            tx.prepare_cached(
                "UPDATE orders SET status = ?2, total_amount = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![o.id, o.status, o.total_amount, o.updated_at])?;
            tx.prepare_cached(
                "INSERT INTO order_status_history (order_id, seq, status, at, actor, reason)
                 VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM order_status_history WHERE order_id = ?1),
                         ?2, ?3, 'hub', 'restored from the hub''s copy')",
            )?
            .execute(params![o.id, o.status, o.updated_at])?;
        }
        return Ok(());
    }
    if !exists(tx, "SELECT 1 FROM users WHERE id = ?1", &o.user_id)? {
        return Err(Error::invalid("user_id", "unknown account"));
    }
    whole(tx, || {
        tx.prepare_cached(
            "INSERT INTO orders (id, user_id, node_id, status, total_amount, currency, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            o.id,
            o.user_id,
            o.node_id,
            o.status,
            o.total_amount,
            o.currency,
            o.created_at,
            o.updated_at
        ])?;
        for (line, item) in o.items.iter().enumerate() {
            tx.prepare_cached(
                "INSERT INTO order_items (order_id, line, product_id, product_name, unit_price, quantity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                o.id,
                line as i64 + 1,
                item.product_id,
                item.product_name,
                item.unit_price.amount,
                item.quantity
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO order_status_history (order_id, seq, status, at, actor, reason)
             VALUES (?1, 1, ?2, ?3, 'hub', 'restored from the hub''s copy')",
        )?
        .execute(params![o.id, o.status, o.updated_at])?;
        Ok(())
    })?;
    tracing::info!(order_id = %o.id, status = %o.status, "re-created an order from the hub's copy");
    Ok(())
}

/// Re-creates one of this node's payments (and its refunds) from the hub's copy, unless it is
/// here already. Its order comes first in the same snapshot.
pub fn payment(tx: &Tx, p: &PaymentPayload) -> Result<()> {
    if !exists(tx, "SELECT 1 FROM orders WHERE id = ?1", &p.order_id)? {
        return Ok(());
    }
    if let Some(here) = updated_at(tx, "SELECT updated_at FROM payments WHERE id = ?1", &p.id)? {
        if here < p.updated_at {
            whole(tx, || {
                tx.prepare_cached(
                    "UPDATE payments SET status = ?2, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![p.id, p.status, p.updated_at])?;
                for r in &p.refunds {
                    tx.prepare_cached(
                        "INSERT INTO refunds (id, payment_id, amount, status, reason, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                         ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                    )?
                    .execute(params![r.id, p.id, r.amount.amount, r.status, r.reason, p.updated_at])?;
                }
                Ok(())
            })?;
        }
        return Ok(());
    }
    whole(tx, || {
        tx.prepare_cached(
            "INSERT INTO payments (id, order_id, user_id, method, status, amount, currency, card_token,
                                   created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )?
        .execute(params![
            p.id,
            p.order_id,
            p.user_id,
            p.method,
            p.status,
            p.amount,
            p.currency,
            p.card_token,
            p.updated_at
        ])?;
        for r in &p.refunds {
            tx.prepare_cached(
                "INSERT INTO refunds (id, payment_id, amount, status, reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![
                r.id,
                p.id,
                r.amount.amount,
                r.status,
                r.reason,
                p.updated_at
            ])?;
        }
        Ok(())
    })
}
