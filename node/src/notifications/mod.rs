//! Notifications: domain events become messages from per-event templates, on up to three
//! channels. `in_app` is stored and read through the API. `email` and `push` are queued when the
//! node has a webhook for them (`--email-webhook`, `--push-webhook`) and POSTed by the
//! [`webhook`] worker, with retries and a dead letter after the last attempt. Every channel's row
//! is written in the same transaction as the event, so a committed order always has its
//! notifications, and a queued one survives a crash or restart.
//!
//! # Layout
//! - [`model`]: channels and the retry schedule (exponential back-off with jitter).
//! - [`templates`]: subject and body per event, and who receives it.
//! - [`store`]: SQL for the history, the delivery queue and the dead letters.
//! - [`registry`]: which channels have webhooks, per database; wakes the worker.
//! - [`webhook`]: the delivery worker.
//! - [`routes`]: `/v1/notifications` (the caller's history) and the admin dead-letter routes.

pub mod model;
pub mod registry;
pub mod routes;
pub mod store;
pub mod templates;
pub mod webhook;

use crate::db::Tx;
use crate::error::Result;
use crate::events::Event;
use model::Channel;

/// Subscriber to every domain event (called by `events::publish`).
pub fn on_event(tx: &Tx, event: &Event) -> Result<()> {
    let Some(message) = templates::render(event) else {
        return Ok(());
    };
    let recipients = match templates::recipient(event) {
        Some(user) => vec![user],
        // Operational events go to every admin of the store.
        None => crate::users::store::admin_ids(tx)?,
    };
    let webhooks = registry::lookup(tx);
    let channels = webhooks.as_ref().map_or(&[][..], |w| &w.channels[..]);
    let now = crate::time::now_ms();
    let mut queued = false;
    for user_id in recipients {
        store::insert(tx, user_id, Channel::InApp, event.name(), &message, now)?;
        for &channel in channels {
            // No address, no email: the account was erased, or its email is held back as
            // conflicted. (The address itself is looked up again at delivery.)
            if channel == Channel::Email && crate::users::store::email_of(tx, user_id)?.is_none() {
                continue;
            }
            store::insert(tx, user_id, channel, event.name(), &message, now)?;
            queued = true;
        }
    }
    if queued && let Some(webhooks) = webhooks {
        // Rung before this transaction commits: the worker reads the queue through the writer,
        // which runs its read only after this transaction's batch has committed.
        webhooks.wake.notify_one();
    }
    Ok(())
}
