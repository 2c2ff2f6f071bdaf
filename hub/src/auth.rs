//! Bearer-token checks for the node stream and the admin services.

use tonic::Status;
use tonic::metadata::MetadataMap;

/// Checks `authorization: Bearer <expected>`; the comparison takes the same time wherever the
/// tokens differ, and nothing about the presented token is logged.
pub fn check(metadata: &MetadataMap, expected: &str, who: &str) -> Result<(), Status> {
    let presented = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) && !expected.is_empty() {
        Ok(())
    } else {
        tracing::warn!(who, "refused a call with a missing or wrong token");
        Err(Status::unauthenticated(format!(
            "a valid {who} token is required"
        )))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_exactly() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
