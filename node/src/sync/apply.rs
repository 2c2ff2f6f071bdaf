//! Applying the hub's changes at this node, one batch per transaction, strictly (see
//! [`apply_batch`]). Every entry is applied idempotently (LWW by version, max-merge for stock cells, commands once by id), so a batch
//! delivered twice changes nothing twice. Entries this node owns (its orders) are never taken
//! from the hub.

use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::EntryKey;
use edgecart_proto::sync::{
    CategoryPayload, Command, ProductPayload, StockOthersPayload, StockPayload, UserPayload, entity,
};
use rusqlite::params;
use uuid::Uuid;

use crate::catalog::inventory::{self, StockCtx};
use crate::catalog::store as catalog;
use crate::db::Tx;
use crate::error::{Error, Result};
use crate::events::{self, Event};
use crate::orders::model::OrderStatus;
use crate::state::Inner;
use crate::users::store as users;

/// Applies a batch; returns the highest hub sequence in it (to acknowledge after commit).
///
/// Strict, as the hub is: each entry runs in its own savepoint and applies whole or not at all.
/// A bad entry (a payload this node cannot use) is rolled back to its savepoint, logged and
/// skipped, and its siblings still apply. A storage error (full disk, I/O error, read-only
/// file), or SQLite having rolled the transaction back, fails the whole batch: nothing of it is
/// kept, the cursor does not move, no Ack goes out, and the hub sends it again after the
/// reconnect.
pub fn apply_batch(tx: &Tx, st: &Inner, batch: &[pb::Change]) -> Result<i64> {
    let mut cursor = 0;
    for change in batch {
        cursor = cursor.max(change.seq);
        // A traced hub entry (a payment's outcome) is applied in a span of the checkout's
        // trace; an untraced one costs nothing more.
        let applied = if change.traceparent.is_empty() || !crate::telemetry::exporting() {
            whole(tx, "hub_change", || apply_one(tx, st, change))
        } else {
            let span = tracing::info_span!("apply_hub_change", seq = change.seq,
                entity = %change.entity.chars().take(32).collect::<String>());
            crate::telemetry::continue_from(&span, &change.traceparent, &change.tracestate);
            span.in_scope(|| whole(tx, "hub_change", || apply_one(tx, st, change)))
        };
        match applied {
            Ok(()) => {}
            Err(e) if fatal(tx, &e) => return Err(as_storage(tx, e, change.seq)),
            Err(e) => {
                metrics::counter!("edgecart_sync_skipped_changes_total").increment(1);
                tracing::warn!(seq = change.seq, entity = %change.entity, error = %e, "skipped a hub change");
            }
        }
    }
    crate::sync::changelog::set_hub_cursor(tx, cursor)?;
    Ok(cursor)
}

/// An error that must fail the whole batch: the storage failed, not the entry.
fn fatal(tx: &Tx, e: &Error) -> bool {
    e.is_storage() || tx.is_autocommit()
}

fn as_storage(tx: &Tx, e: Error, seq: i64) -> Error {
    if e.is_storage() {
        return e;
    }
    debug_assert!(tx.is_autocommit());
    Error::Storage(format!(
        "the transaction was rolled back while applying hub seq {seq}: {e}"
    ))
}

/// Runs `work` inside SAVEPOINT `name`: kept whole when it succeeds, undone whole when it
/// fails. When SQLite rolled the whole transaction back there is no savepoint left to undo;
/// the error goes up as it is (the caller's `fatal` sees the autocommit connection).
fn whole<T>(tx: &Tx, name: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    tx.execute_batch(&format!("SAVEPOINT {name}"))?;
    match work() {
        Ok(v) => {
            tx.execute_batch(&format!("RELEASE {name}"))?;
            Ok(v)
        }
        Err(e) if tx.is_autocommit() => Err(e),
        Err(e) => {
            tx.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))?;
            Err(e)
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::invalid("payload_json", e.to_string()))
}

fn product_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| Error::invalid("product_id", "not a UUID"))
}

fn apply_one(tx: &Tx, st: &Inner, change: &pb::Change) -> Result<()> {
    if let Ok(ts) = change.version.parse() {
        st.clock.observe(&ts);
    } else {
        return Err(Error::invalid("version", "not an HLC timestamp"));
    }
    let version = change.version.as_str();
    let json = change.payload_json.as_str();
    match change.entity.as_str() {
        entity::USER => {
            let u: UserPayload = parse(json)?;
            // Admin and staff accounts stay local to the store that made them; a hub holding
            // one (from before stores were restricted) must not make it an admin here.
            if u.role != "customer" {
                return Err(Error::invalid(
                    "user.role",
                    "only customer accounts replicate",
                ));
            }
            for user_id in users::apply_remote(tx, &u, version)? {
                events::publish(tx, &Event::AccountConflicted { user_id })?;
            }
        }
        entity::CATEGORY => {
            catalog::apply_remote_category(tx, &parse::<CategoryPayload>(json)?, version)?
        }
        entity::PRODUCT => {
            catalog::apply_remote_product(tx, &parse::<ProductPayload>(json)?, version)?
        }
        entity::STOCK => {
            let s: StockPayload = parse(json)?;
            let concerns_us = match &s.entry.key {
                EntryKey::Inc(a) | EntryKey::Dec(a) => *a == st.node_id,
                EntryKey::Xfer { from, to } => *from == st.node_id || *to == st.node_id,
            };
            if !concerns_us {
                return Err(Error::invalid("entry", "a cell of another actor"));
            }
            let pid = product_id(&s.product_id)?;
            if catalog::sellable(tx, pid)?.is_none() {
                return Err(Error::invalid("product_id", "unknown product"));
            }
            inventory::merge_remote(tx, &st.node_id, pid, &s.entry, || st.clock.now())?;
        }
        entity::STOCK_OTHERS => {
            let o: StockOthersPayload = parse(json)?;
            let pid = product_id(&o.product_id)?;
            if catalog::sellable(tx, pid)?.is_none() {
                return Err(Error::invalid("product_id", "unknown product"));
            }
            inventory::set_others(tx, &st.node_id, pid, o.others_net, version)?;
        }
        entity::COMMAND => apply_command(tx, st, &parse::<Command>(json)?)?,
        entity::PAYMENT_OUTCOME => crate::saga::apply_payment_outcome(tx, st, &parse(json)?)?,
        entity::REFUND_OUTCOME => {
            crate::payments::service::apply_refund_outcome(tx, st, &parse(json)?)?
        }
        // Orders and payments are owned here; the hub only holds read copies of them.
        // Only ever this node's own records, sent after it was restored from an older copy.
        entity::ORDER => super::restore::order(tx, st, &parse(json)?)?,
        entity::PAYMENT => super::restore::payment(tx, &parse(json)?)?,
        other => return Err(Error::invalid("entity", format!("unknown entity {other}"))),
    }
    Ok(())
}

/// Applies a hub command once. Its id is recorded in the same transaction, after the command
/// ran to its outcome: took effect, or was refused by this node's rules (e.g. an illegal order
/// transition — final, so a late replay cannot apply a stale command). A bad payload or a
/// storage error records nothing: the entry is undone whole.
fn apply_command(tx: &Tx, st: &Inner, command: &Command) -> Result<()> {
    let done: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sync_commands WHERE id = ?1)")?
        .query_row(params![command.id()], |r| r.get(0))?;
    if done {
        return Ok(());
    }
    match command {
        Command::OrderStatus {
            order_id, status, ..
        } => {
            let id =
                Uuid::parse_str(order_id).map_err(|_| Error::invalid("order_id", "not a UUID"))?;
            let status: OrderStatus = status
                .parse()
                .map_err(|_| Error::invalid("status", "unknown"))?;
            let hub = ActorId::hub().to_string();
            // In its own savepoint: a refused command leaves nothing half-done behind.
            let outcome = whole(tx, "hub_command", || {
                crate::saga::change_status(
                    tx,
                    st,
                    id,
                    status,
                    &hub,
                    (status == OrderStatus::Cancelled).then_some("cancelled by the hub"),
                )
            });
            match outcome {
                Ok(()) => {}
                // An order the hub's copy thought could move but this (owning) node refuses
                // stays as it is; the node's next report corrects the hub's copy.
                Err(
                    e @ (Error::Conflict { .. }
                    | Error::NotFound(_)
                    | Error::Invalid { .. }
                    | Error::Forbidden(_)),
                ) => {
                    tracing::warn!(order_id = %id, error = %e, "hub command refused");
                }
                Err(e) => return Err(e),
            }
        }
        Command::HandBack {
            product_id: p,
            quantity,
            ..
        } => {
            let pid = product_id(p)?;
            let version = st.clock.now();
            let ctx = StockCtx::new(st, &version);
            let given = inventory::hand_back(tx, &ctx, pid, *quantity)?;
            tracing::info!(product_id = %pid, asked = quantity, given, "handed rights back to the hub");
        }
    }
    tx.prepare_cached("INSERT INTO sync_commands (id, applied_at) VALUES (?1, ?2)")?
        .execute(params![command.id(), crate::time::now_ms()])?;
    Ok(())
}
