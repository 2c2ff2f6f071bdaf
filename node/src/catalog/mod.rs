//! Catalog and inventory: categories, products, search, and the stock of each product as a
//! bounded counter (see `edgecart_proto::stock`) of which this node owns its own cells.

pub mod inventory;
pub mod model;
pub mod routes;
pub mod store;
