//! Replication with the hub. In standalone mode only the change log (the outbox) exists: every
//! replicated write appends to it in its own transaction, ready to ship once a hub is configured.

pub mod changelog;
pub mod routes;
