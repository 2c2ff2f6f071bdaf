//! The node ↔ hub contract: the replication vocabulary both sides share.
//!
//! # Layout
//!
//! - [`ids`]: record ids (UUIDv7, [`new_id`]) and replica identities ([`ActorId`]).
//! - [`money`]: [`Money`] as integer minor units with a [`Currency`]; checked arithmetic.
//! - [`hlc`]: the hybrid logical clock ([`Clock`], [`Timestamp`]) that versions LWW rows;
//!   its text form sorts in SQL the way it sorts in Rust.
//! - [`stock`]: the [`Crdt`] trait and the [`BoundedCounter`] that keeps stock from going
//!   negative across partitions (DESIGN.md §3); [`Entry`] is the delta the sync stream ships.
//!
//! Nothing here does I/O: these are plain values and rules, so node and hub agree on them by
//! construction and they can be property-tested in isolation.

pub mod hlc;
pub mod ids;
pub mod money;
pub mod stock;

pub use hlc::{Clock, HlcError, MAX_DRIFT_MS, Timestamp};
pub use ids::{ActorId, IdError, new_id};
pub use money::{Currency, Money, MoneyError};
pub use stock::{BoundedCounter, Crdt, Entry, EntryKey, StockError};
