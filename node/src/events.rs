//! Domain events. A context that changes state publishes an event inside its write transaction;
//! the subscribers (today: notifications) react in that same transaction, so an event and its
//! effects commit or roll back together, and nothing is lost in a crash between them.

use uuid::Uuid;

use crate::db::Tx;
use crate::error::Result;

#[derive(Debug, Clone)]
pub enum Event {
    UserRegistered {
        user_id: Uuid,
        name: String,
    },
    OrderCreated {
        user_id: Uuid,
        order_id: Uuid,
        total: String,
    },
    PaymentCompleted {
        user_id: Uuid,
        order_id: Uuid,
        payment_id: Uuid,
        amount: String,
    },
    PaymentFailed {
        user_id: Uuid,
        order_id: Uuid,
        payment_id: Uuid,
        reason: String,
    },
    OrderCancelled {
        user_id: Uuid,
        order_id: Uuid,
    },
    OrderShipped {
        user_id: Uuid,
        order_id: Uuid,
    },
    OrderDelivered {
        user_id: Uuid,
        order_id: Uuid,
    },
    /// The hub found another store's account already owns this account's email.
    AccountConflicted {
        user_id: Uuid,
    },
    LowStock {
        product_id: Uuid,
        product_name: String,
        available_here: i64,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "UserRegistered",
            Event::OrderCreated { .. } => "OrderCreated",
            Event::PaymentCompleted { .. } => "PaymentCompleted",
            Event::PaymentFailed { .. } => "PaymentFailed",
            Event::OrderCancelled { .. } => "OrderCancelled",
            Event::OrderShipped { .. } => "OrderShipped",
            Event::OrderDelivered { .. } => "OrderDelivered",
            Event::AccountConflicted { .. } => "AccountConflicted",
            Event::LowStock { .. } => "LowStock",
        }
    }
}

/// Delivers `event` to its subscribers inside the caller's transaction.
pub fn publish(tx: &Tx, event: &Event) -> Result<()> {
    tracing::debug!(event = event.name(), "domain event");
    metrics::counter!("edgecart_domain_events_total", "event" => event.name()).increment(1);
    crate::notifications::on_event(tx, event)
}
