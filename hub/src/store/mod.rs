//! The hub's storage: one module per kind of data. Functions are synchronous and take the
//! connection or the open transaction; the caller owns the transaction.

pub mod catalog;
pub mod changes;
pub mod credentials;
pub mod nodes;
pub mod orders;
pub mod stock;
pub mod users;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
