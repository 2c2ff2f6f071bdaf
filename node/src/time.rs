//! Wall-clock helpers: the API speaks RFC 3339, the database stores unix milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds added to the host's wall clock everywhere this node reads it (timestamps, the
/// HLC, token issue and expiry). Zero in production; the reliability suite sets it (through the
/// hidden `--clock-offset-ms` flag) to run a node whose clock is minutes off.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts this process's wall clock by `ms` (testing only; see [`OFFSET_MS`]).
pub fn set_offset_ms(ms: i64) {
    OFFSET_MS.store(ms, Ordering::Relaxed);
}

/// The node's wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
        + OFFSET_MS.load(Ordering::Relaxed)
}

/// Formats unix milliseconds as RFC 3339 (UTC); out-of-range values fall back to the epoch.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
