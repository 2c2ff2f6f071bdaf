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
    /// UNAVAILABLE: the hub's storage is failing (disk full, I/O error, read-only file, locked):
    /// nothing of the operation was kept; the caller retries later.
    #[error("the hub's storage is failing: {0}")]
    Storage(String),
    /// INTERNAL: logged, not returned in detail.
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

impl From<HubError> for Status {
    fn from(e: HubError) -> Status {
        match e {
            HubError::Invalid { field, detail } => {
                Status::new(Code::InvalidArgument, format!("{field}: {detail}"))
            }
            HubError::NotFound(what) => Status::not_found(format!("{what} not found")),
            HubError::Precondition(msg) => Status::failed_precondition(msg),
            HubError::Storage(msg) => {
                tracing::warn!(error = %msg, "the hub's storage is failing");
                Status::unavailable(format!(
                    "the hub's storage is failing ({msg}); nothing was kept, retry later"
                ))
            }
            HubError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
