//! The API's money shape: `{"amount": <integer minor units>, "currency": "USD"}`.

use edgecart_proto::money::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoneyDto {
    /// Integer minor units (cents).
    #[schema(example = 1999)]
    pub amount: i64,
    /// ISO 4217 code; must be the store's currency.
    #[schema(example = "USD")]
    pub currency: String,
}

impl From<Money> for MoneyDto {
    fn from(m: Money) -> Self {
        MoneyDto {
            amount: m.amount,
            currency: m.currency.as_str().to_string(),
        }
    }
}

/// Largest amount accepted anywhere (10 billion in major units): far above any real price, far
/// below where sums of many lines could overflow i64.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

impl MoneyDto {
    /// Parses a price: 0..=MAX_AMOUNT in the store's currency. `field` names it in errors.
    pub fn parse_price(&self, field: &str, store: Currency) -> Result<Money, Error> {
        let currency = Currency::parse(&self.currency).map_err(|_| {
            Error::invalid(
                format!("{field}.currency"),
                "must be a 3-letter ISO 4217 code",
            )
        })?;
        if currency != store {
            return Err(Error::invalid(
                format!("{field}.currency"),
                format!("this store sells in {store}"),
            ));
        }
        if !(0..=MAX_AMOUNT).contains(&self.amount) {
            return Err(Error::invalid(
                format!("{field}.amount"),
                format!("must be between 0 and {MAX_AMOUNT} minor units"),
            ));
        }
        Ok(Money::new(self.amount, currency))
    }
}

pub fn money(amount: i64, currency: &str) -> MoneyDto {
    MoneyDto {
        amount,
        currency: currency.to_string(),
    }
}
