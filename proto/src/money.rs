//! Money as integer minor units plus a currency; never floating point.

use std::fmt;

use serde::{Deserialize, Serialize};

/// ISO-4217-shaped code: exactly three ASCII uppercase letters.
///
/// Only the shape is checked, not membership in ISO 4217: the list changes, and a store that
/// sells in a code we have not heard of should not be blocked by this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// Why a money value could not be built or computed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    #[error("invalid currency code {0:?}: expected three uppercase ASCII letters")]
    InvalidCurrency(String),
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount out of range")]
    Overflow,
}

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Result<Currency, MoneyError> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(MoneyError::InvalidCurrency(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Every constructor admits only ASCII uppercase bytes, so this never falls back; the
        // fallback exists only to avoid a panic path.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// Integer minor units (cents) + currency. serde shape: `{"amount": <i64>, "currency": "USD"}`.
///
/// Signed so that refunds and adjustments are representable; whether a negative amount is
/// acceptable is a rule of the context using it (a price must not be negative, a refund is).
/// Every operation is checked: an overflow is an error, never a wrap or a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    /// Unit price times a quantity.
    pub fn checked_mul(self, qty: u64) -> Result<Money, MoneyError> {
        // i64 × u64 always fits in i128, so only the narrowing back can fail.
        let amount = i128::from(self.amount) * i128::from(qty);
        let amount = i64::try_from(amount).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currency_shape() {
        assert_eq!(Currency::parse("USD"), Ok(Currency::USD));
        assert_eq!(Currency::USD.to_string(), "USD");
        for bad in ["usd", "US", "USDX", "", "U$D", "ÉUR", "12A"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::InvalidCurrency(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn money_json_shape_is_exact() {
        let m = Money::new(1999, Currency::USD);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":1999,"currency":"USD"}"#
        );
        let back: Money = serde_json::from_str(r#"{"amount":-5,"currency":"EUR"}"#).unwrap();
        assert_eq!(back, Money::new(-5, eur()));
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"usd"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1.5,"currency":"USD"}"#).is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(250, Currency::USD);
        assert_eq!(a.checked_mul(3), Ok(Money::new(750, Currency::USD)));
        assert_eq!(a.checked_add(a), Ok(Money::new(500, Currency::USD)));
        assert_eq!(
            a.checked_sub(Money::new(300, Currency::USD))
                .map(|m| m.amount),
            Ok(-50)
        );
        assert_eq!(
            Money::zero(Currency::USD).checked_mul(u64::MAX),
            Ok(Money::zero(Currency::USD))
        );
        assert_eq!(
            Money::new(-1, Currency::USD).checked_mul(1 << 63),
            Ok(Money::new(i64::MIN, Currency::USD))
        );
        assert_eq!(a.checked_mul(u64::MAX / 2), Err(MoneyError::Overflow));
        assert_eq!(
            Money::new(i64::MAX, Currency::USD).checked_add(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MIN, Currency::USD).checked_sub(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            a.checked_add(Money::new(1, eur())),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::USD,
                right: eur()
            })
        );
    }
}
