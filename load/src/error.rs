//! The load tool's errors, and the error tally a run reports by kind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why a load run (or one of its steps) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A URL given on the command line is not usable.
    #[error("{flag} {url:?}: {why}")]
    BadUrl {
        flag: &'static str,
        url: String,
        why: String,
    },
    /// The hub did not accept a connection.
    #[error("cannot reach the hub at {url}: {why}")]
    HubUnreachable { url: String, why: String },
    /// The hub answered an admin call with an error status.
    #[error("the hub refused {call}: {code:?}: {message}")]
    Rpc {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// A real node's REST API did not answer as expected.
    #[error("node {url}: {why}")]
    Node { url: String, why: String },
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A local hub or node process could not be started (local mode).
    #[error("starting {what}: {why}")]
    Start { what: String, why: String },
    /// Something did not happen within its deadline.
    #[error("timed out after {secs} s: {what}")]
    Timeout { what: String, secs: u64 },
    /// Writing a chart failed.
    #[error("drawing {path}: {why}")]
    Chart { path: PathBuf, why: String },
    /// The settings cannot describe a run (e.g. zero stores).
    #[error("{0}")]
    Settings(String),
}

impl LoadError {
    pub(crate) fn rpc(call: &'static str, status: tonic::Status) -> LoadError {
        LoadError::Rpc {
            call,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LoadError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Errors seen while running, counted by kind (`stream_unavailable`, `order_409`, ...). Cheap
/// to clone; errors are rare next to the traffic, so one mutex is enough.
#[derive(Clone, Debug, Default)]
pub struct ErrorCounts(Arc<Mutex<BTreeMap<String, u64>>>);

impl ErrorCounts {
    pub fn add(&self, kind: impl Into<String>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(kind.into()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// The kind under which a failed gRPC stream is counted, e.g. `stream_unavailable`.
pub fn status_kind(prefix: &str, code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(ch.to_ascii_lowercase());
    }
    format!("{prefix}_{snake}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_kinds_are_snake_case() {
        assert_eq!(
            status_kind("stream", tonic::Code::Unavailable),
            "stream_unavailable"
        );
        assert_eq!(
            status_kind("stream", tonic::Code::PermissionDenied),
            "stream_permission_denied"
        );
    }

    #[test]
    fn counts_add_up_by_kind() {
        let e = ErrorCounts::default();
        e.add("a");
        e.clone().add("a");
        e.add("b");
        assert_eq!(e.snapshot().get("a"), Some(&2));
        assert_eq!(e.total(), 3);
    }
}
