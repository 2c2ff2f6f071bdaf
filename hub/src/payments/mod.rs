//! Payments at the hub: the ledger of what the nodes report, the provider behind a trait, the
//! worker that charges each card payment exactly once (payment id = provider idempotency key)
//! and refunds, the outcomes streamed back to the owning node, and reconciliation.

pub mod admin;
pub mod ledger;
pub mod provider;
pub mod reconcile;
pub mod worker;

#[cfg(test)]
mod machine_tests;

pub use provider::{HttpProvider, Provider, SimulatedProvider};
