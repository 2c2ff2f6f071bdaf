//! The hub's error type and its single mapping to gRPC status codes.

use tonic::{Code, Status};

pub type Result<T, E = HubError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// INVALID_ARGUMENT, naming the field.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// NOT_FOUND.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// FAILED_PRECONDITION: the request conflicts with the current state.
    #[error("{0}")]
    Precondition(String),
    /// ALREADY_EXISTS.
    #[error("{0}")]
    Exists(String),
    /// PERMISSION_DENIED: the caller may not do this (e.g. a store writing what it does not own).
    #[error("{0}")]
    Forbidden(String),
    /// UNAVAILABLE: the hub's storage is failing (disk full, I/O error, read-only file, locked):
    /// nothing of the operation was kept; the caller retries later.
    #[error("the hub's storage is failing: {0}")]
    Storage(String),
    /// INTERNAL: logged, not returned in detail (nor is `Storage`'s).
    #[error("internal: {0}")]
    Internal(String),
}

impl HubError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> HubError {
        HubError::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// True when the database could not be read or written (as opposed to a bad request or bad
    /// data): the operation must fail as a whole and be retried later, never be skipped.
    pub fn is_storage(&self) -> bool {
        matches!(self, HubError::Storage(_))
    }
}

/// SQLite result codes that say the file or the disk is failing, not the statement or the data.
/// After these SQLite may have rolled the whole transaction back.
fn is_storage_code(code: rusqlite::ErrorCode) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        code,
        C::DiskFull
            | C::SystemIoFailure
            | C::ReadOnly
            | C::CannotOpen
            | C::PermissionDenied
            | C::DatabaseBusy
            | C::DatabaseLocked
            | C::OutOfMemory
            | C::DatabaseCorrupt
            | C::NotADatabase
            | C::FileLockingProtocolFailed
            | C::NoLargeFileSupport
            | C::OperationAborted
            | C::InternalMalfunction
    )
}

impl From<rusqlite::Error> for HubError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if is_storage_code(f.code) => {
                HubError::Storage(e.to_string())
            }
            _ => HubError::Internal(format!("sqlite: {e}")),
        }
    }
}

impl From<serde_json::Error> for HubError {
    fn from(e: serde_json::Error) -> Self {
        HubError::Internal(format!("json: {e}"))
    }
}

/// What a client is told when the hub's storage fails: no SQLite text, no path (the detail is
/// in the hub's log).
pub const STORAGE_UNAVAILABLE: &str = "storage unavailable: nothing was kept, retry later";
/// What a client is told about any other internal failure.
pub const INTERNAL: &str = "internal error";

/// The one mapping to gRPC statuses. Storage and internal errors carry SQLite's text (and may
/// name files); it is logged here, once, and the client gets a plain message.
impl From<HubError> for Status {
    fn from(e: HubError) -> Status {
        match e {
            HubError::Invalid { field, detail } => {
                Status::new(Code::InvalidArgument, format!("{field}: {detail}"))
            }
            HubError::NotFound(what) => Status::not_found(format!("{what} not found")),
            HubError::Precondition(msg) => Status::failed_precondition(msg),
            HubError::Exists(msg) => Status::already_exists(msg),
            HubError::Forbidden(msg) => Status::permission_denied(msg),
            HubError::Storage(msg) => {
                tracing::error!(error = %msg, "the hub's storage is failing");
                Status::unavailable(STORAGE_UNAVAILABLE)
            }
            HubError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal(INTERNAL)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    /// Words and characters of SQLite's messages and of file paths.
    fn assert_plain(status: &Status) {
        let message = status.message().to_lowercase();
        for leak in [
            "sql", "disk", "database", "syntax", "file", "/", "\\", ".db",
        ] {
            assert!(!message.contains(leak), "{leak:?} leaked in {status:?}");
        }
    }

    fn failure(e: rusqlite::Error) -> Status {
        let text = e.to_string();
        let status = Status::from(HubError::from(e));
        assert_ne!(status.message(), text);
        assert_plain(&status);
        status
    }

    #[test]
    fn storage_and_internal_errors_reach_clients_without_sqlite_text_or_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgecart-hub.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();

        // A full disk: SQLITE_FULL, "database or disk is full".
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
        let full = conn
            .execute("INSERT INTO t VALUES (zeroblob(1000000))", [])
            .unwrap_err();
        assert!(full.to_string().contains("full"), "{full}");
        let status = failure(full);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), STORAGE_UNAVAILABLE);

        // A read-only file.
        conn.pragma_update(None, "query_only", true).unwrap();
        let status = failure(conn.execute("DELETE FROM t", []).unwrap_err());
        assert_eq!(status.code(), Code::Unavailable);

        // A file that cannot be opened (the error names no path here, but the mapping must
        // not depend on that).
        let missing = dir.path().join("no-such-dir").join("x.db");
        let open =
            Connection::open_with_flags(&missing, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .unwrap_err();
        assert_eq!(failure(open).code(), Code::Unavailable);

        // A statement the hub got wrong: INTERNAL, the SQL not echoed.
        let status = failure(conn.execute("SELEC v FROM t", []).unwrap_err());
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), INTERNAL);

        // A storage error wrapped with a path by hand: still nothing of it reaches the client.
        let status = Status::from(HubError::Storage(format!(
            "{}: disk I/O error",
            path.display()
        )));
        assert_plain(&status);
    }
}
