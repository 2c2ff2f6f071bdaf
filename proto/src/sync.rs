//! The sync protocol's constants and the JSON payloads carried in `pb::Change.payload_json`.
//!
//! Both sides (de)serialize these same types, so a field added here is added on both ends; new
//! fields must be optional (`#[serde(default)]`) so a hub of release N reads payloads of N−1.

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::stock::Entry;

/// The protocol version this release speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// This release, sent in `Hello` / `Welcome`.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// A hub accepts the protocol version of its own release and of the release before it, so
/// nodes can be upgraded one by one after the hub (version 0 is protobuf's "unset": refused).
pub fn is_supported(version: u32) -> bool {
    version >= 1 && (version == PROTOCOL_VERSION || version + 1 == PROTOCOL_VERSION)
}

/// Most changes in one `ChangeBatch`.
pub const MAX_BATCH: usize = 256;

/// Entity names used in `Change.entity`.
pub mod entity {
    pub const USER: &str = "user";
    pub const CATEGORY: &str = "category";
    pub const PRODUCT: &str = "product";
    /// One cell of a product's bounded counter.
    pub const STOCK: &str = "stock";
    /// Hub → node: the net stock of every other actor (so the node can show global stock).
    pub const STOCK_OTHERS: &str = "stock_others";
    pub const ORDER: &str = "order";
    pub const PAYMENT: &str = "payment";
    /// Hub → node: something only the node may do (it owns the record), e.g. ship an order.
    pub const COMMAND: &str = "command";
    /// Hub → node: the provider's answer to a card payment (owned by the hub).
    pub const PAYMENT_OUTCOME: &str = "payment_outcome";
    /// Hub → node: the outcome of a refund (owned by the hub).
    pub const REFUND_OUTCOME: &str = "refund_outcome";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPayload {
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    pub password_hash: Option<String>,
    pub role: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Set by the hub when another account already owns this email: the account cannot log in.
    #[serde(default)]
    pub conflicted: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryPayload {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPayload {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price_amount: i64,
    pub currency: String,
    pub category_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockPayload {
    pub product_id: String,
    pub entry: Entry,
}

/// Σ over every actor but the receiving node of (inc − dec): the receiving node adds its own
/// net to get the global stock. Keeps what each node receives O(products), not O(products × nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockOthersPayload {
    pub product_id: String,
    pub others_net: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItemPayload {
    pub product_id: String,
    pub product_name: String,
    pub unit_price: Money,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayload {
    pub id: String,
    pub user_id: String,
    pub node_id: String,
    pub status: String,
    pub total_amount: i64,
    pub currency: String,
    pub items: Vec<OrderItemPayload>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A payment as the node records it (node → hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentPayload {
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    /// `card` or `cash`.
    pub method: String,
    /// pending | authorized_offline | captured | failed | voided | partially_refunded | refunded
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub card_token: Option<String>,
    #[serde(default)]
    pub refunds: Vec<RefundPayload>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayload {
    pub id: String,
    pub amount: Money,
    /// pending | succeeded | failed
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The provider's answer to a card charge, decided at the hub (hub → owning node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentOutcomePayload {
    pub payment_id: String,
    pub order_id: String,
    /// `captured` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    pub charge_id: Option<String>,
}

/// A refund's outcome, decided at the hub (hub → owning node). Refunds started at the hub reach
/// the node this way too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOutcomePayload {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: i64,
    /// `succeeded` or `failed`.
    pub status: String,
    pub reason: Option<String>,
}

/// Hub → node commands on records the node owns. Each has an id; the node applies it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Move an order along its status machine (`shipped`, `delivered`, `cancelled`).
    OrderStatus {
        id: String,
        order_id: String,
        status: String,
    },
    /// Hand back up to `quantity` unused selling rights of a product to the hub.
    HandBack {
        id: String,
        product_id: String,
        quantity: u64,
    },
}

impl Command {
    pub fn id(&self) -> &str {
        match self {
            Command::OrderStatus { id, .. } | Command::HandBack { id, .. } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supports_this_and_the_previous_version_only() {
        assert!(is_supported(PROTOCOL_VERSION));
        assert!(!is_supported(0));
        assert!(!is_supported(PROTOCOL_VERSION + 1));
    }

    #[test]
    fn command_json_is_tagged() {
        let c = Command::HandBack {
            id: "c1".into(),
            product_id: "p".into(),
            quantity: 3,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"hand_back","id":"c1","product_id":"p","quantity":3}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c);
    }

    #[test]
    fn old_user_payloads_without_conflicted_still_parse() {
        let json = r#"{"id":"u","email":"a@b.c","name":"A","password_hash":null,"role":"customer",
                       "status":"active","created_at":1,"updated_at":2}"#;
        let u: UserPayload = serde_json::from_str(json).unwrap();
        assert!(!u.conflicted);
    }
}
