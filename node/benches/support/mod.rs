//! Helpers of the storefront bench: the node process and the load generator.

pub mod loadgen;
pub mod node;
