//! Request extractors whose rejections are problem JSON naming the failing field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The request body limit (1 MiB); larger bodies get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body. Syntax errors are 400; a wrong type or a missing field is 422 naming the field
/// path (e.g. `items[0].quantity`).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge { limit: BODY_LIMIT }
                } else {
                    Error::bad_request(None, "could not read the request body")
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                Error::invalid(field_name(&path, &inner.to_string()), inner.to_string())
            }
            _ => Error::bad_request(None, format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| Error::bad_request(None, format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The failing field's path; for a missing field serde reports the enclosing object, so the
/// missing member's name (from the message "missing field `x`") is appended.
fn field_name(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_string(),
        (".", None) => "body".to_string(),
        (p, Some(name)) => format!("{p}.{name}"),
        (p, None) => p.to_string(),
    }
}

/// A query string. A value of the wrong type is 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let field = e.path().to_string();
                Error::bad_request(
                    Some(field.clone()),
                    format!("query parameter {field}: {}", e.into_inner()),
                )
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// A path id that must be a UUID; anything else is 400 naming `id`.
pub struct PathId(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| Error::bad_request(Some("id".into()), "missing id in path"))?;
        uuid::Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| Error::bad_request(Some("id".into()), "id must be a UUID"))
    }
}

/// The optional `Idempotency-Key` header: 1-255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Error::bad_request(
                    Some("Idempotency-Key".into()),
                    "Idempotency-Key must be 1-255 visible ASCII characters",
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_string())))
    }
}
