//! The one error type of the node's API and its single mapping to RFC 9457 problem JSON.
//!
//! Domain code returns [`Error`]; only [`IntoResponse`] decides the HTTP status. Internal details
//! (SQL errors, panics) are logged once here and never returned to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::db::DbError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request could not be read (malformed JSON, bad query string, bad header).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        field: Option<String>,
    },
    /// 401: missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such record, or one the caller may not see (never reveals which).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: the request conflicts with the current state (duplicate, illegal transition).
    #[error("{detail}")]
    Conflict {
        kind: &'static str,
        detail: String,
        extra: Map<String, Value>,
    },
    /// 413: the body is larger than the limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: the body is not `application/json`.
    #[error("expected a body of type application/json")]
    UnsupportedMediaType,
    /// 422: well-formed but invalid; names the failing field.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// 503: the database is not usable right now.
    #[error("service unavailable")]
    Unavailable,
    /// 503: this store was restored from an older copy of its database and may not sell this
    /// product until the hub has re-synced it (its old copy may count rights already spent).
    #[error("re-syncing with the hub after a restore")]
    Resyncing,
    /// 503: the database could not store the change (a full disk, an I/O error): nothing of
    /// the request was kept and a retry may succeed. Details are logged, not returned.
    #[error("storage failing: {0}")]
    Storage(String),
    /// 500: a bug or an I/O failure; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(field: Option<String>, detail: impl Into<String>) -> Error {
        Error::BadRequest {
            detail: detail.into(),
            field,
        }
    }

    pub fn conflict(kind: &'static str, detail: impl Into<String>) -> Error {
        Error::Conflict {
            kind,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// True when the storage failed (not the request): see [`DbError::is_storage`].
    pub fn is_storage(&self) -> bool {
        matches!(self, Error::Storage(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable | Error::Resyncing | Error::Storage(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::WriterGone => Error::Unavailable,
            e if e.is_storage() => Error::Storage(e.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::from(DbError::from(e))
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field that failed validation, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Problem-specific members (e.g. the stock figures of an insufficient-stock conflict).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:edgecart:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            extensions: Map::new(),
        }
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = match self {
            Error::BadRequest { detail, field } => Problem {
                field,
                ..Problem::new(status, "bad-request", detail)
            },
            Error::Unauthorized(d) => Problem::new(status, "unauthorized", d),
            Error::Forbidden(d) => Problem::new(status, "forbidden", d),
            Error::NotFound(what) => Problem::new(status, "not-found", format!("{what} not found")),
            Error::Conflict {
                kind,
                detail,
                extra,
            } => Problem {
                extensions: extra,
                ..Problem::new(status, kind, detail)
            },
            Error::PayloadTooLarge { limit } => Problem::new(
                status,
                "payload-too-large",
                format!("request body larger than {limit} bytes"),
            ),
            Error::UnsupportedMediaType => Problem::new(
                status,
                "unsupported-media-type",
                "expected a body of type application/json",
            ),
            Error::Invalid { field, detail } => Problem {
                field: Some(field.clone()),
                ..Problem::new(status, "validation", format!("{field}: {detail}"))
            },
            Error::Unavailable => Problem::new(status, "unavailable", "service unavailable"),
            Error::Resyncing => Problem::new(
                status,
                "resyncing",
                "this store was restored from an older copy of its database and is re-syncing \
                 this product's stock with the hub; retry shortly",
            ),
            Error::Storage(message) => {
                tracing::error!(error = %message, "the database could not store a change");
                Problem::new(
                    status,
                    "storage-unavailable",
                    "the store could not save this change (storage failing); nothing was kept, \
                     retry later",
                )
            }
            Error::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Problem::new(status, "internal", "internal error")
            }
        };
        problem.into_response()
    }
}
