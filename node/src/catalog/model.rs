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
