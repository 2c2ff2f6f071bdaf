//! Notifications: domain events become messages from per-event templates. The `in_app` channel
//! is stored and read through the API; it is written in the same transaction as the event, so a
//! committed order always has its notification.

pub mod routes;
pub mod store;
pub mod templates;

use crate::db::Tx;
use crate::error::Result;
use crate::events::Event;

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
    let now = crate::time::now_ms();
    for user_id in recipients {
        store::insert(tx, user_id, "in_app", event.name(), &message, now)?;
    }
    Ok(())
}
