//! The node's API tests: one integration-test binary (see `helpers` for the harness).

mod helpers;

mod bad_input;
mod changelog;
mod concurrency;
mod crash;
mod extremes;
mod idempotency;
mod operations;
mod shop_day;
mod storage_full;
mod users;
mod webhooks;
