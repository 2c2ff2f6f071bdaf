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
}

impl From<rusqlite::Error> for HubError {
    fn from(e: rusqlite::Error) -> Self {
        HubError::Internal(format!("sqlite: {e}"))
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
            HubError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
