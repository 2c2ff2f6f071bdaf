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
//! - [`pb`]: the gRPC wire contract generated from `proto/edgecart/v1/*.proto` (package
//!   `edgecart.v1`): the `Sync` stream and the hub's admin services.
//! - [`status`]: the order, payment and ledger status machines (states and transitions, strict
//!   parsing) that node, hub and admin API share.
//! - [`sync`]: protocol constants and the payload shapes carried in `Change.payload_json`.
//!
//! Apart from the generated gRPC stubs nothing here does I/O: these are plain values and rules,
//! so node and hub agree on them by construction and they can be property-tested in isolation.

pub mod backoff;
pub mod hlc;
pub mod ids;
pub mod money;
pub mod status;
pub mod stock;
pub mod sync;
#[cfg(feature = "telemetry")]
pub mod telemetry;

/// Generated gRPC code for package `edgecart.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("edgecart.v1");

    /// Encoded descriptors of every message and service, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("edgecart_descriptor");
}

pub use hlc::{Clock, HlcError, MAX_DRIFT_MS, Timestamp};
pub use ids::{ActorId, IdError, new_id};
pub use money::{Currency, Money, MoneyError};
pub use status::{LedgerStatus, OnVoid, OrderStatus, PaymentStatus, UnknownStatus};
pub use stock::{BoundedCounter, Crdt, Entry, EntryKey, StockError};
