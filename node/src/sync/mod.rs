//! Replication with the hub: the change log (the outbox: every replicated write appends to it
//! in its own transaction), the stream client that ships it and applies the hub's changes, and
//! `/v1/sync/status`.

pub mod accounts;
pub mod apply;
pub mod bootstrap;
pub mod changelog;
pub mod client;
pub mod handle;
pub mod restore;
pub mod routes;
pub mod watermark;

pub use handle::SyncHandle;
