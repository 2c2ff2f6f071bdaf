//! Orders: capture (one transaction: prices, stock rights, order, items, status, change log,
//! `OrderCreated`), the status machine with its history, and cancellation (the saga's
//! compensation: stock released, payments voided or refunded).

pub mod model;
pub mod routes;
pub mod service;
pub mod store;
