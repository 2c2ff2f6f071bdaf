//! The status machines of orders and payments: every state and every allowed transition in one
//! place, used by the node, the hub and the admin API alike (DESIGN.md §4).
//!
//! Parsing is strict: a status string that is not one of these is an error, never a default —
//! a stored row with an unknown status is corruption or a newer release's data, and silently
//! reading it as `pending` would charge or ship the wrong thing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A status string that names no state of the machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {machine} status {value:?}")]
pub struct UnknownStatus {
    pub machine: &'static str,
    pub value: String,
}

/// An order's status: `pending_payment → paid → shipped → delivered`, and
/// `pending_payment | paid → cancelled` (a paid order's cancellation refunds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// The legal transitions.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (PendingPayment, Paid)
                | (Paid, Shipped)
                | (Shipped, Delivered)
                | (PendingPayment, Cancelled)
                | (Paid, Cancelled)
        )
    }

    /// Statuses staff may ask for by command (the rest follow from payments).
    pub fn is_commandable(self) -> bool {
        matches!(
            self,
            OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Cancelled
        )
    }
}

/// A payment as its store sees it.
///
/// ```text
/// pending ─┬─> captured ─> partially_refunded ─> refunded
///          ├─> failed         └──────────────────────^
///          └─> voided ─> captured   (the charge was already in flight: the hub refunds it)
/// authorized_offline: like pending, accepted while the hub was unreachable
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Recorded at the store, waiting for the hub to charge the provider.
    Pending,
    /// Accepted while offline, to be charged when the link is back.
    AuthorizedOffline,
    Captured,
    Failed,
    /// Cancelled at the store before the store heard of a charge. If the hub had already sent
    /// the charge, its outcome can still turn this into `captured` (and the hub refunds it).
    Voided,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::Pending,
        PaymentStatus::AuthorizedOffline,
        PaymentStatus::Captured,
        PaymentStatus::Failed,
        PaymentStatus::Voided,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::AuthorizedOffline => "authorized_offline",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Voided => "voided",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }

    /// The legal transitions.
    pub fn can_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (Pending | AuthorizedOffline, Captured | Failed | Voided)
                // A charge sent before the void reached the hub: money was taken.
                | (Voided, Captured)
                | (Captured, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// Waiting for the hub's answer to a charge.
    pub fn is_awaiting_charge(self) -> bool {
        matches!(
            self,
            PaymentStatus::Pending | PaymentStatus::AuthorizedOffline
        )
    }

    /// Still holds (or may still take) the customer's money.
    pub fn is_live(self) -> bool {
        !matches!(self, PaymentStatus::Failed | PaymentStatus::Voided)
    }

    /// Money has been taken and some of it can be refunded.
    pub fn is_refundable(self) -> bool {
        matches!(
            self,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        )
    }
}

/// A payment in the hub's ledger: the hub alone talks to the provider.
///
/// ```text
/// pending ──> charging ──┬──> captured
///    │           │       └──> failed
///    │           └──> voiding ──┬──> captured (+ a full refund, in the same transaction)
///    └──> voided                └──> voided
/// ```
///
/// `charging` is written (and committed) *before* the charge request leaves, so after any crash
/// the hub knows the provider may hold money for this payment. A void that arrives then cannot
/// be final until the provider's answer for the payment's idempotency key is known: `voiding`
/// keeps asking, and "void" means "refund if charged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    /// Not sent to the provider yet.
    Pending,
    /// Sent at least once; the answer is not known yet.
    Charging,
    /// Voided by the store while a charge's answer was unknown.
    Voiding,
    Captured,
    Failed,
    /// Final: no money was taken.
    Voided,
}

impl LedgerStatus {
    pub const ALL: [LedgerStatus; 6] = [
        LedgerStatus::Pending,
        LedgerStatus::Charging,
        LedgerStatus::Voiding,
        LedgerStatus::Captured,
        LedgerStatus::Failed,
        LedgerStatus::Voided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Pending => "pending",
            LedgerStatus::Charging => "charging",
            LedgerStatus::Voiding => "voiding",
            LedgerStatus::Captured => "captured",
            LedgerStatus::Failed => "failed",
            LedgerStatus::Voided => "voided",
        }
    }

    /// The legal transitions.
    pub fn can_become(self, next: LedgerStatus) -> bool {
        use LedgerStatus::*;
        matches!(
            (self, next),
            (Pending, Charging | Voided | Failed)
                | (Charging, Captured | Failed | Voiding)
                | (Voiding, Captured | Voided)
        )
    }

    /// The provider may have to be asked (again) for this payment's charge.
    pub fn needs_provider(self) -> bool {
        matches!(
            self,
            LedgerStatus::Pending | LedgerStatus::Charging | LedgerStatus::Voiding
        )
    }

    /// No further transition.
    pub fn is_final(self) -> bool {
        !self.needs_provider()
    }

    /// What a void from the store does to this entry. "Void" means "refund if charged": the
    /// store may void a payment whose capture it has not heard of yet.
    pub fn on_void(self) -> OnVoid {
        match self {
            LedgerStatus::Pending => OnVoid::Become(LedgerStatus::Voided),
            LedgerStatus::Charging => OnVoid::Become(LedgerStatus::Voiding),
            LedgerStatus::Captured => OnVoid::RefundTheRest,
            LedgerStatus::Voiding | LedgerStatus::Failed | LedgerStatus::Voided => OnVoid::Nothing,
        }
    }

    /// What the provider's final answer (`captured` or declined) does to an entry whose charge
    /// was sent: the next status, and whether the capture must be refunded in full at once.
    /// `None`: the entry is settled already (a replayed or late answer changes nothing).
    pub fn on_answer(self, captured: bool) -> Option<(LedgerStatus, bool)> {
        match (self, captured) {
            (LedgerStatus::Charging, true) => Some((LedgerStatus::Captured, false)),
            (LedgerStatus::Charging, false) => Some((LedgerStatus::Failed, false)),
            (LedgerStatus::Voiding, true) => Some((LedgerStatus::Captured, true)),
            (LedgerStatus::Voiding, false) => Some((LedgerStatus::Voided, false)),
            _ => None,
        }
    }
}

/// What a store's void does to a ledger entry ([`LedgerStatus::on_void`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnVoid {
    /// Move to this status.
    Become(LedgerStatus),
    /// Captured before the void arrived: refund what is not refunded yet.
    RefundTheRest,
    /// Voided, voiding or failed already.
    Nothing,
}

macro_rules! text_form {
    ($ty:ty, $machine:literal) => {
        impl FromStr for $ty {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownStatus {
                        machine: $machine,
                        value: s.chars().take(40).collect(),
                    })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_form!(OrderStatus, "order");
text_form!(PaymentStatus, "payment");
text_form!(LedgerStatus, "ledger");

#[cfg(test)]
mod tests {
    use super::*;

    fn legal<T: Copy>(all: &[T], can: impl Fn(T, T) -> bool) -> Vec<(T, T)> {
        all.iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| can(*a, *b))
            .collect()
    }

    #[test]
    fn order_machine() {
        use OrderStatus::*;
        assert_eq!(
            legal(&OrderStatus::ALL, OrderStatus::can_become),
            vec![
                (PendingPayment, Paid),
                (PendingPayment, Cancelled),
                (Paid, Shipped),
                (Paid, Cancelled),
                (Shipped, Delivered)
            ]
        );
    }

    #[test]
    fn text_forms_round_trip_and_unknown_is_an_error() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(serde_json_str(&s), s.as_str());
        }
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(s));
            assert_eq!(serde_json_str(&s), s.as_str());
        }
        for s in LedgerStatus::ALL {
            assert_eq!(s.as_str().parse::<LedgerStatus>(), Ok(s));
        }
        assert!("".parse::<OrderStatus>().is_err());
        assert!("Pending".parse::<PaymentStatus>().is_err());
        assert!("refunded".parse::<LedgerStatus>().is_err());
    }

    fn serde_json_str<T: Serialize>(v: &T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn ledger_events_follow_the_machine() {
        for s in LedgerStatus::ALL {
            if let OnVoid::Become(next) = s.on_void() {
                assert!(s.can_become(next), "{s} -> {next} on void");
            }
            for captured in [true, false] {
                if let Some((next, _)) = s.on_answer(captured) {
                    assert!(s.can_become(next), "{s} -> {next} on answer");
                }
            }
            // Final states take nothing.
            if s.is_final() {
                assert_ne!(s.on_void(), OnVoid::Become(s));
                assert_eq!(s.on_answer(true), None);
                assert!(LedgerStatus::ALL.iter().all(|n| !s.can_become(*n)));
            }
        }
        // A void never loses a charge in flight.
        assert_eq!(
            LedgerStatus::Charging.on_void(),
            OnVoid::Become(LedgerStatus::Voiding)
        );
        assert_eq!(LedgerStatus::Captured.on_void(), OnVoid::RefundTheRest);
        assert_eq!(
            LedgerStatus::Voiding.on_answer(true),
            Some((LedgerStatus::Captured, true))
        );
    }
}
