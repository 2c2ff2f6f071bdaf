//! Payments at the node. Cash is captured at once and the order becomes `paid`; a card payment is
//! recorded `pending` and put in the change log for the hub to charge (the hub replies with the
//! outcome). Refunds of captured payments: cash refunds complete at the till, card refunds wait
//! for the hub like card charges do.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;
