//! The node's metrics contract (docs/metrics.md): every family is described here (its HELP
//! line) and registered at start-up with its known label values at zero, so a scrape shows the
//! whole contract from the first second and `rate()` never starts from a missing series.
//!
//! Counters are bumped where things happen; the gauges that are facts about the database
//! (the unacknowledged change log, offline card payments, waiting notifications) are read at
//! scrape time by [`refresh`] with a few indexed queries, so they are right after a restart and
//! cost nothing between scrapes.
//!
//! Labels are of bounded cardinality only: routes (matched patterns, not paths), methods,
//! statuses, outcomes. Never a user, order or payment id.

use std::time::Instant;

use edgecart_proto::pb;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use prost::Message;

use crate::state::AppState;

/// Outcomes of `POST /v1/orders` (see [`order_outcome`]).
pub const ORDER_OUTCOMES: [&str; 3] = ["created", "replayed", "rejected"];
/// Outcomes of a payment: at the API, and when the hub answers a card charge.
pub const PAYMENT_OUTCOMES: [&str; 5] = [
    "captured",
    "pending",
    "authorized_offline",
    "failed",
    "rejected",
];
const METHODS: [&str; 2] = ["card", "cash"];
const TOP_UP_OUTCOMES: [&str; 5] = ["granted", "partial", "refused", "unanswered", "offline"];
const CHANNELS: [&str; 2] = ["email", "push"];
const DIRECTIONS: [&str; 2] = ["sent", "received"];

/// Describes and zero-registers every family. Called once, when the recorder is installed.
pub fn register() {
    describe_gauge!(
        "edgecart_sync_connected",
        "1 while the sync stream to the hub is established, else 0."
    );
    describe_gauge!(
        "edgecart_sync_unacked_changes",
        "Change-log entries the hub has not acknowledged yet."
    );
    describe_gauge!(
        "edgecart_sync_oldest_unacked_age_seconds",
        "Age of the oldest change-log entry the hub has not acknowledged (0 when none)."
    );
    describe_counter!(
        "edgecart_sync_reconnects_total",
        "Established sync streams that were lost (the node then reconnects with back-off)."
    );
    describe_counter!(
        "edgecart_sync_messages_total",
        "Sync stream messages, by direction (sent to / received from the hub)."
    );
    describe_counter!(
        "edgecart_sync_bytes_total",
        "Encoded protobuf bytes of sync stream messages, by direction."
    );
    describe_counter!(
        "edgecart_sync_skipped_changes_total",
        "Changes from the hub that could not be applied and were skipped."
    );
    describe_counter!(
        "edgecart_orders_total",
        "POST /v1/orders by outcome: created, replayed (idempotency key), rejected (any error)."
    );
    describe_counter!(
        "edgecart_payments_total",
        "Payments by method and outcome: at the API (captured, pending, authorized_offline, \
         rejected) and when the hub answers a card charge (captured, failed)."
    );
    describe_gauge!(
        "edgecart_offline_card_payments",
        "Card payments accepted while offline (authorized_offline) and not charged yet."
    );
    describe_gauge!(
        "edgecart_offline_card_payments_amount",
        "Sum of the offline card payments waiting, in minor units of the store currency."
    );
    describe_gauge!(
        "edgecart_offline_card_payments_oldest_age_seconds",
        "Age of the oldest offline card payment waiting to be charged (0 when none)."
    );
    describe_counter!(
        "edgecart_top_ups_total",
        "Requests for more selling rights to the hub, by outcome."
    );
    describe_histogram!(
        "edgecart_top_up_duration_seconds",
        "Time from asking the hub for selling rights to its answer (or giving up)."
    );
    describe_counter!(
        "edgecart_notifications_queued_total",
        "Email and push notifications queued for webhook delivery, by channel."
    );
    describe_counter!(
        "edgecart_notifications_delivered_total",
        "Notifications delivered by webhook, by channel."
    );
    describe_counter!(
        "edgecart_notifications_dead_lettered_total",
        "Notifications dead-lettered after the last allowed webhook attempt, by channel."
    );
    describe_gauge!(
        "edgecart_notifications_waiting",
        "Notifications queued for webhook delivery now (not yet delivered or dead)."
    );
    describe_gauge!(
        "edgecart_notifications_dead_letters",
        "Dead-lettered notifications now (until an admin requeues them)."
    );
    describe_counter!(
        "edgecart_notification_webhooks_total",
        "Webhook delivery attempts by channel and outcome (delivered, retry, dead)."
    );
    describe_counter!(
        "edgecart_http_requests_total",
        "HTTP requests by method, route (the matched pattern) and status."
    );
    describe_histogram!(
        "edgecart_http_request_duration_seconds",
        "HTTP request latency by method, route and status."
    );
    describe_histogram!(
        "edgecart_db_batch_size",
        "Writes folded into one SQLite transaction by the group-committing writer."
    );
    describe_counter!(
        "edgecart_domain_events_total",
        "Domain events published, by event name."
    );

    gauge!("edgecart_sync_connected").set(0.0);
    gauge!("edgecart_sync_unacked_changes").set(0.0);
    gauge!("edgecart_sync_oldest_unacked_age_seconds").set(0.0);
    counter!("edgecart_sync_reconnects_total").absolute(0);
    counter!("edgecart_sync_skipped_changes_total").absolute(0);
    for d in DIRECTIONS {
        counter!("edgecart_sync_messages_total", "direction" => d).absolute(0);
        counter!("edgecart_sync_bytes_total", "direction" => d).absolute(0);
    }
    for o in ORDER_OUTCOMES {
        counter!("edgecart_orders_total", "outcome" => o).absolute(0);
    }
    for m in METHODS {
        for o in PAYMENT_OUTCOMES {
            // A cash payment is captured at once or rejected: no other series for it.
            if m == "cash" && !matches!(o, "captured" | "rejected") {
                continue;
            }
            counter!("edgecart_payments_total", "method" => m, "outcome" => o).absolute(0);
        }
    }
    gauge!("edgecart_offline_card_payments").set(0.0);
    gauge!("edgecart_offline_card_payments_amount").set(0.0);
    gauge!("edgecart_offline_card_payments_oldest_age_seconds").set(0.0);
    for o in TOP_UP_OUTCOMES {
        counter!("edgecart_top_ups_total", "outcome" => o).absolute(0);
    }
    let _ = histogram!("edgecart_top_up_duration_seconds");
    for c in CHANNELS {
        counter!("edgecart_notifications_queued_total", "channel" => c).absolute(0);
        counter!("edgecart_notifications_delivered_total", "channel" => c).absolute(0);
        counter!("edgecart_notifications_dead_lettered_total", "channel" => c).absolute(0);
    }
    gauge!("edgecart_notifications_waiting").set(0.0);
    gauge!("edgecart_notifications_dead_letters").set(0.0);
}

/// The outcome label of a finished `POST /v1/orders`.
pub fn order_outcome(result: &Result<crate::idempotency::Stored, crate::error::Error>) {
    let outcome = match result {
        Ok(s) if s.replayed => "replayed",
        Ok(_) => "created",
        Err(_) => "rejected",
    };
    counter!("edgecart_orders_total", "outcome" => outcome).increment(1);
}

pub fn order_rejected() {
    counter!("edgecart_orders_total", "outcome" => "rejected").increment(1);
}

/// A finished `POST /v1/orders/{id}/payments`: its outcome is the status it answered with
/// (replays are not counted again).
pub fn payment_created(
    method: &'static str,
    result: &Result<crate::idempotency::Stored, crate::error::Error>,
) {
    let outcome = match result {
        Ok(s) if s.replayed => return,
        Ok(s) if s.status.is_success() => {
            #[derive(serde::Deserialize)]
            struct Status {
                status: String,
            }
            // The answer is the payment view the handler just serialised: parsing it back is
            // cheaper than threading the status through the idempotency layer.
            match serde_json::from_str::<Status>(&s.body).map(|s| s.status) {
                Ok(s) if s == "captured" => "captured",
                Ok(s) if s == "pending" => "pending",
                Ok(s) if s == "authorized_offline" => "authorized_offline",
                Ok(s) if s == "failed" => "failed",
                _ => return,
            }
        }
        _ => "rejected",
    };
    payment(method, outcome);
}

/// A payment reached `outcome` (one of [`PAYMENT_OUTCOMES`]).
pub fn payment(method: &'static str, outcome: &'static str) {
    counter!("edgecart_payments_total", "method" => method, "outcome" => outcome).increment(1);
}

pub fn sync_connected(connected: bool) {
    gauge!("edgecart_sync_connected").set(if connected { 1.0 } else { 0.0 });
}

pub fn sync_reconnect() {
    counter!("edgecart_sync_reconnects_total").increment(1);
}

/// A message on its way to the hub.
pub fn sync_sent(m: &pb::NodeMessage) {
    sync_message("sent", m.encoded_len());
}

/// A message from the hub.
pub fn sync_received(m: &pb::HubMessage) {
    sync_message("received", m.encoded_len());
}

fn sync_message(direction: &'static str, bytes: usize) {
    counter!("edgecart_sync_messages_total", "direction" => direction).increment(1);
    counter!("edgecart_sync_bytes_total", "direction" => direction).increment(bytes as u64);
}

/// A top-up asked at `start` for `wanted` units ended with `granted` (`None`: no answer).
pub fn top_up(start: Instant, offline: bool, wanted: u64, granted: Option<i64>) {
    let outcome = match granted {
        _ if offline => "offline",
        None => "unanswered",
        Some(g) if g <= 0 => "refused",
        Some(g) if (g as u64) < wanted => "partial",
        Some(_) => "granted",
    };
    counter!("edgecart_top_ups_total", "outcome" => outcome).increment(1);
    if !offline {
        histogram!("edgecart_top_up_duration_seconds").record(start.elapsed().as_secs_f64());
    }
}

pub fn notification_queued(channel: &'static str) {
    counter!("edgecart_notifications_queued_total", "channel" => channel).increment(1);
}

/// A webhook attempt's outcome (`delivered`, `retry`, `dead`).
pub fn notification_attempt(channel: &'static str, outcome: &'static str) {
    match outcome {
        "delivered" => {
            counter!("edgecart_notifications_delivered_total", "channel" => channel).increment(1)
        }
        "dead" => counter!("edgecart_notifications_dead_lettered_total", "channel" => channel)
            .increment(1),
        _ => {}
    }
}

/// What the database says right now, for the scrape-time gauges.
struct Snapshot {
    unacked: i64,
    oldest_unacked_at: Option<i64>,
    offline_count: i64,
    offline_amount: i64,
    offline_oldest_at: Option<i64>,
    waiting: i64,
    dead: i64,
}

fn snapshot(c: &rusqlite::Connection) -> crate::error::Result<Snapshot> {
    let backlog = crate::sync::changelog::backlog(c)?;
    // `changes` is keyed by seq: the first entry after the acknowledged cursor is one lookup.
    let oldest_unacked_at: Option<i64> = c
        .prepare_cached("SELECT min(created_at) FROM (SELECT created_at FROM changes WHERE seq > ?1 ORDER BY seq LIMIT 1)")?
        .query_row([backlog.acked_seq], |r| r.get(0))?;
    // Served by the partial index `payments_offline` (migration 0005): only the waiting rows.
    let (offline_count, offline_amount, offline_oldest_at) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(amount), 0), min(created_at) FROM payments
             WHERE status = 'authorized_offline'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    // Partial indexes `notifications_due` and `notifications_dead` (migration 0003).
    let waiting = c
        .prepare_cached("SELECT count(*) FROM notifications WHERE status = 'queued'")?
        .query_row([], |r| r.get(0))?;
    let dead = c
        .prepare_cached("SELECT count(*) FROM notifications WHERE status = 'dead'")?
        .query_row([], |r| r.get(0))?;
    Ok(Snapshot {
        unacked: backlog.unacknowledged,
        oldest_unacked_at,
        offline_count,
        offline_amount,
        offline_oldest_at,
        waiting,
        dead,
    })
}

/// Sets the scrape-time gauges from the database. A failed read keeps the last values (and is
/// logged): the scrape itself still answers.
pub async fn refresh(state: &AppState) {
    match state.db.read(snapshot).await {
        Ok(s) => {
            let now = crate::time::now_ms();
            let age = |at: Option<i64>| at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            gauge!("edgecart_sync_unacked_changes").set(s.unacked as f64);
            gauge!("edgecart_sync_oldest_unacked_age_seconds").set(age(s.oldest_unacked_at));
            gauge!("edgecart_offline_card_payments").set(s.offline_count as f64);
            gauge!("edgecart_offline_card_payments_amount").set(s.offline_amount as f64);
            gauge!("edgecart_offline_card_payments_oldest_age_seconds")
                .set(age(s.offline_oldest_at));
            gauge!("edgecart_notifications_waiting").set(s.waiting as f64);
            gauge!("edgecart_notifications_dead_letters").set(s.dead as f64);
        }
        Err(e) => tracing::warn!(error = %e, "reading the gauges for /metrics"),
    }
    // Also set here: the gauge must be right even if no transition was observed yet.
    sync_connected(state.sync.is_connected());
}
