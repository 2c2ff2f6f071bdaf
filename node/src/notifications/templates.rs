//! One template per event: subject and body.

use uuid::Uuid;

use crate::events::Event;

pub struct Message {
    pub subject: String,
    pub body: String,
}

/// The customer an event is about, or `None` for store-operations events (sent to admins).
pub fn recipient(event: &Event) -> Option<Uuid> {
    match event {
        Event::UserRegistered { user_id, .. }
        | Event::OrderCreated { user_id, .. }
        | Event::PaymentCompleted { user_id, .. }
        | Event::PaymentFailed { user_id, .. }
        | Event::OrderCancelled { user_id, .. }
        | Event::OrderShipped { user_id, .. }
        | Event::OrderDelivered { user_id, .. }
        | Event::AccountConflicted { user_id } => Some(*user_id),
        Event::LowStock { .. } => None,
    }
}

pub fn render(event: &Event) -> Option<Message> {
    let (subject, body) = match event {
        Event::UserRegistered { name, .. } => (
            "Welcome to edgecart".to_string(),
            format!("Hello {name}, your account is ready."),
        ),
        Event::OrderCreated {
            order_id, total, ..
        } => (
            "Order received".to_string(),
            format!("We received your order {order_id} ({total}). It is waiting for payment."),
        ),
        Event::PaymentCompleted {
            order_id, amount, ..
        } => (
            "Payment received".to_string(),
            format!("Thank you: we received {amount} for order {order_id}."),
        ),
        Event::PaymentFailed {
            order_id, reason, ..
        } => (
            "Payment failed".to_string(),
            format!("Payment for order {order_id} failed ({reason}); the order was cancelled."),
        ),
        Event::OrderCancelled { order_id, .. } => (
            "Order cancelled".to_string(),
            format!("Order {order_id} was cancelled. Any payment taken will be refunded."),
        ),
        Event::OrderShipped { order_id, .. } => (
            "Order shipped".to_string(),
            format!("Order {order_id} is on its way."),
        ),
        Event::OrderDelivered { order_id, .. } => (
            "Order delivered".to_string(),
            format!("Order {order_id} was delivered. Enjoy!"),
        ),
        Event::AccountConflicted { .. } => (
            "Your account needs attention".to_string(),
            "Another store already has an account with your email address, so this one was put \
             on hold and cannot sign in. Please sign in with that account or contact the shop."
                .to_string(),
        ),
        Event::LowStock {
            product_id,
            product_name,
            available_here,
        } => (
            format!("Low stock: {product_name}"),
            format!(
                "Only {available_here} units of {product_name} ({product_id}) left to sell at this store."
            ),
        ),
    };
    Some(Message { subject, body })
}
