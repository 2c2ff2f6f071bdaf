//! `Idempotency-Key` support: the first successful response to a keyed POST is stored in the
//! same transaction as the work it describes, and replayed for every retry with that key. A retry
//! therefore can never do the work twice, even across a crash or a group-commit batch.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use crate::db::Tx;
use crate::error::{Error, PROBLEM_JSON, Result};

/// A response that can be stored and replayed byte for byte.
pub struct Stored {
    pub status: StatusCode,
    pub body: String,
    pub replayed: bool,
}

impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        let content_type = if self.status.is_success() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if self.replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// Runs `work` at most once per (user, scope, key). `request` is a canonical form of the request;
/// reusing a key for a different request is a 422.
pub fn once<T: serde::Serialize>(
    tx: &Tx,
    user: Uuid,
    scope: &str,
    key: Option<&str>,
    request: &str,
    status: StatusCode,
    work: impl FnOnce() -> Result<T>,
) -> Result<Stored> {
    if let Some(key) = key {
        let found: Option<(String, u16, String)> = tx
            .prepare_cached(
                "SELECT request_hash, status, body FROM idempotency_keys
                 WHERE user_id = ?1 AND scope = ?2 AND key = ?3",
            )?
            .query_row(params![user.to_string(), scope, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((stored_request, stored_status, body)) = found {
            if stored_request != request {
                return Err(Error::invalid(
                    "Idempotency-Key",
                    "this key was already used for a different request",
                ));
            }
            return Ok(Stored {
                status: StatusCode::from_u16(stored_status).unwrap_or(StatusCode::OK),
                body,
                replayed: true,
            });
        }
    }
    let value = work()?;
    let body = serde_json::to_string(&value).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(key) = key {
        tx.prepare_cached(
            "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, status, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            user.to_string(),
            scope,
            key,
            request,
            status.as_u16(),
            body,
            crate::time::now_ms()
        ])?;
    }
    Ok(Stored {
        status,
        body,
        replayed: false,
    })
}
