//! `Idempotency-Key` support: the first successful response to a keyed POST is stored in the
//! same transaction as the work it describes, and replayed for every retry with that key. A retry
//! therefore can never do the work twice, even across a crash or a group-commit batch.
//!
//! Keys are honoured for a [`Retention`] (`--idempotency-retention-secs`, 24 h by default): a
//! retry after that is a new request. Expired keys are pruned on write, a few at a time, so the
//! table holds about one retention's worth of keyed requests and no background task is needed.

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

/// How long a stored response is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    ms: i64,
}

impl Retention {
    pub fn from_secs(secs: u64) -> Retention {
        Retention {
            ms: i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// Records created before this instant (unix ms) have expired.
    fn cutoff(self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.ms)
    }
}

/// Oldest records looked at per keyed write. Rows are appended in time order, so the oldest
/// rowids are the first to expire: looking at only these keeps each write's pruning O(1) (no
/// scan when nothing has expired) while still deleting more than one insert adds.
const PRUNE_BATCH: i64 = 64;

/// Runs `work` at most once per (user, scope, key) within `retention`. `request` is a canonical form of the request;
/// reusing a key for a different request is a 422.
#[allow(clippy::too_many_arguments)]
pub fn once<T: serde::Serialize>(
    tx: &Tx,
    retention: Retention,
    user: Uuid,
    scope: &str,
    key: Option<&str>,
    request: &str,
    status: StatusCode,
    work: impl FnOnce() -> Result<T>,
) -> Result<Stored> {
    let now = crate::time::now_ms();
    let cutoff = retention.cutoff(now);
    if let Some(key) = key {
        // An expired record is forgotten here, whether or not pruning reached it yet: the
        // retry is a new request.
        tx.prepare_cached(
            "DELETE FROM idempotency_keys
             WHERE user_id = ?1 AND scope = ?2 AND key = ?3 AND created_at < ?4",
        )?
        .execute(params![user.to_string(), scope, key, cutoff])?;
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
        prune(tx, cutoff)?;
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
            now
        ])?;
    }
    Ok(Stored {
        status,
        body,
        replayed: false,
    })
}

/// Deletes expired records among the [`PRUNE_BATCH`] oldest (by rowid, i.e. insertion order).
/// A clock that stepped back can leave a younger record among the oldest; pruning then waits
/// for it to expire (at most the step), and lookups stay exact because they check the age.
fn prune(tx: &Tx, cutoff: i64) -> Result<usize> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE rowid IN (
                 SELECT rowid FROM (SELECT rowid, created_at FROM idempotency_keys
                                    ORDER BY rowid LIMIT ?2)
                 WHERE created_at < ?1)",
        )?
        .execute(params![cutoff, PRUNE_BATCH])?)
}
