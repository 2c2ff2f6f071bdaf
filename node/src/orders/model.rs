//! Order domain types and the status machine.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::http::money::MoneyDto;
use crate::payments::model::PaymentView;

/// The status machine lives in the shared contract crate (node, hub and admin API agree).
pub use edgecart_proto::OrderStatus;

/// Most lines in one order, and most units on one line.
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: u64 = 10_000;

/// A validated order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: u64,
}

/// Parses requested lines: 1..=MAX_LINES, each quantity 1..=MAX_QUANTITY. Lines for the same
/// product are merged (in first-seen order), so stock is checked against the total; a merged
/// line is a line too and holds at most MAX_QUANTITY.
///
/// These bounds are what makes an order total safe: at most MAX_LINES × MAX_QUANTITY units at
/// a price of at most `MAX_AMOUNT` (10^2 × 10^4 × 10^12 = 10^18 < i64::MAX), and the total is
/// computed with checked arithmetic besides.
pub fn parse_lines(items: &[ItemRequest]) -> Result<Vec<Line>, Error> {
    if items.is_empty() || items.len() > MAX_LINES {
        return Err(Error::invalid(
            "items",
            format!("must have 1-{MAX_LINES} lines"),
        ));
    }
    let mut lines: Vec<Line> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let quantity = u64::try_from(item.quantity)
            .ok()
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .ok_or_else(|| {
                Error::invalid(
                    format!("items[{i}].quantity"),
                    format!("must be 1-{MAX_QUANTITY}"),
                )
            })?;
        match lines.iter_mut().find(|l| l.product_id == item.product_id) {
            Some(line) => {
                line.quantity = line
                    .quantity
                    .checked_add(quantity)
                    .filter(|q| *q <= MAX_QUANTITY)
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("items[{i}].quantity"),
                            format!(
                                "lines for the same product add up to more than {MAX_QUANTITY}"
                            ),
                        )
                    })?
            }
            None => lines.push(Line {
                product_id: item.product_id,
                quantity,
            }),
        }
    }
    Ok(lines)
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemRequest {
    pub product_id: Uuid,
    /// 1-10000 (lines for the same product together, too).
    #[schema(minimum = 1, maximum = 10_000)]
    pub quantity: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateOrderRequest {
    pub items: Vec<ItemRequest>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderItemView {
    pub product_id: Uuid,
    pub product_name: String,
    pub unit_price: MoneyDto,
    pub quantity: i64,
    pub line_total: MoneyDto,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusChangeView {
    pub status: OrderStatus,
    pub at: String,
    /// Who made the change: `user:<id>`, `node:<id>` or `hub`.
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The node that took the order (its owner).
    pub node_id: String,
    pub status: OrderStatus,
    pub total: MoneyDto,
    pub items: Vec<OrderItemView>,
    pub payments: Vec<PaymentView>,
    pub status_history: Vec<StatusChangeView>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StatusRequest {
    /// `shipped` or `delivered`.
    pub status: OrderStatus,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_validated_and_merged() {
        let p = Uuid::nil();
        let q = Uuid::max();
        let items = vec![
            ItemRequest {
                product_id: p,
                quantity: 2,
            },
            ItemRequest {
                product_id: q,
                quantity: 1,
            },
            ItemRequest {
                product_id: p,
                quantity: 3,
            },
        ];
        let lines = parse_lines(&items).unwrap();
        assert_eq!(
            lines,
            vec![
                Line {
                    product_id: p,
                    quantity: 5
                },
                Line {
                    product_id: q,
                    quantity: 1
                }
            ]
        );
        let over = parse_lines(&[
            ItemRequest {
                product_id: p,
                quantity: 10_000,
            },
            ItemRequest {
                product_id: p,
                quantity: 1,
            },
        ])
        .unwrap_err();
        assert!(matches!(over, Error::Invalid { ref field, .. } if field == "items[1].quantity"));
        for bad in [0, -1, 10_001, i64::MAX, i64::MIN, i64::from(u32::MAX)] {
            let err = parse_lines(&[ItemRequest {
                product_id: p,
                quantity: bad,
            }])
            .unwrap_err();
            assert!(
                matches!(err, Error::Invalid { ref field, .. } if field == "items[0].quantity")
            );
        }
        assert!(parse_lines(&[]).is_err());
    }
}
