//! Catalog domain types.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::http::money::MoneyDto;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Active,
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Active => "active",
            ProductStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> ProductStatus {
        if s == "archived" {
            ProductStatus::Archived
        } else {
            ProductStatus::Active
        }
    }
}

/// Most units one stock receipt (or write-off) may move: far above any real delivery, and small
/// enough that its size never overflows (`i64::MIN` has no positive twin) and a counter cell
/// (at most `i64::MAX`, the storage bound) takes billions of receipts to fill.
pub const MAX_DELTA: u64 = 1_000_000_000;

/// A parsed `delta` of `POST /v1/products/{id}/stock`: a non-zero number of units, at most
/// [`MAX_DELTA`] either way. Deserializing is the parse, so an out-of-range value (including
/// `i64::MIN`, `i64::MAX` and numbers outside i64) is a 422 naming `delta` and never reaches
/// arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub enum StockDelta {
    /// Units received at this store.
    Receive(u64),
    /// Units written off, within what this store may sell.
    WriteOff(u64),
}

impl StockDelta {
    /// The signed delta, as stated in the request (for idempotency fingerprints).
    pub fn signed(self) -> i64 {
        // Both arms are at most MAX_DELTA, which fits i64 either way.
        match self {
            StockDelta::Receive(n) => n as i64,
            StockDelta::WriteOff(n) => -(n as i64),
        }
    }
}

/// Why a number is not a [`StockDelta`].
#[derive(Debug, thiserror::Error)]
#[error("must be non-zero and at most {MAX_DELTA} in size")]
pub struct DeltaOutOfRange;

impl TryFrom<i64> for StockDelta {
    type Error = DeltaOutOfRange;
    fn try_from(raw: i64) -> Result<StockDelta, DeltaOutOfRange> {
        // `unsigned_abs` is total (i64::MIN included), unlike `abs`, which wraps or panics.
        let size = raw.unsigned_abs();
        if size == 0 || size > MAX_DELTA {
            return Err(DeltaOutOfRange);
        }
        Ok(if raw > 0 {
            StockDelta::Receive(size)
        } else {
            StockDelta::WriteOff(size)
        })
    }
}

/// Text of a name-like field: trimmed, 1..=max characters, no control characters.
pub fn parse_text(field: &str, raw: &str, max: usize, allow_empty: bool) -> Result<String, Error> {
    let s = raw.trim();
    if (!allow_empty && s.is_empty()) || s.chars().count() > max {
        let min = if allow_empty { 0 } else { 1 };
        return Err(Error::invalid(
            field,
            format!("must be {min}-{max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(s.to_string())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoryView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct StockView {
    /// Units this store may sell now (its rights in the bounded counter).
    pub available_here: i64,
    /// Units in stock across every store, as last known here.
    pub global: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub price: MoneyDto,
    pub category_id: Option<Uuid>,
    pub status: ProductStatus,
    pub stock: StockView,
    pub created_at: String,
    pub updated_at: String,
}

/// Search filters of `GET /v1/products`, validated.
#[derive(Debug, Default, Clone)]
pub struct ProductFilter {
    pub q: Option<String>,
    pub category: Option<Uuid>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    pub include_archived: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_delta_is_bounded_both_ways() {
        assert_eq!(StockDelta::try_from(5).unwrap(), StockDelta::Receive(5));
        assert_eq!(StockDelta::try_from(-5).unwrap(), StockDelta::WriteOff(5));
        let max = MAX_DELTA as i64;
        assert_eq!(StockDelta::try_from(max).unwrap().signed(), max);
        assert_eq!(StockDelta::try_from(-max).unwrap().signed(), -max);
        for bad in [0, max + 1, -max - 1, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert!(StockDelta::try_from(bad).is_err(), "{bad}");
        }
    }
}
