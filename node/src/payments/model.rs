//! Payment domain types.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::http::money::MoneyDto;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Card,
    Cash,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::Cash => "cash",
        }
    }
}

/// The status machine lives in the shared contract crate (node, hub and admin API agree).
pub use edgecart_proto::PaymentStatus;

/// A provider card token: 1-256 visible ASCII characters. The token is never returned by the API.
pub struct CardToken(String);

impl CardToken {
    pub fn parse(raw: &str) -> Result<CardToken, Error> {
        if raw.is_empty() || raw.len() > 256 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "card_token",
                "must be 1-256 visible ASCII characters",
            ));
        }
        Ok(CardToken(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentRequest {
    pub method: Method,
    /// Required for `card`: the provider's token for the card.
    pub card_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundRequest {
    /// Minor units; at most what was captured and not yet refunded.
    pub amount: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: MoneyDto,
    /// `pending` (card: waiting for the hub), `succeeded` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub method: Method,
    pub status: PaymentStatus,
    pub amount: MoneyDto,
    /// Sum of refunds that succeeded or are under way.
    pub refunded: MoneyDto,
    pub failure_reason: Option<String>,
    pub refunds: Vec<RefundView>,
    pub created_at: String,
    pub updated_at: String,
}
