//! Tokens and password hashes.
//!
//! JWTs are HS256 only: the decoder accepts exactly that algorithm, so `alg: none` and algorithm
//! confusion are rejected by construction. Every authenticated request re-reads the account, so a
//! deleted account or a changed role takes effect at once, not at token expiry.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::model::Role;
use super::store;
use crate::error::{Error, Result};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: u64,
    exp: u64,
    iss: String,
}

const ISSUER: &str = "edgecart-node";

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Arc<Validation>,
    ttl_secs: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_secs: u64) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: Arc::new(validation),
            ttl_secs,
        }
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> Result<String> {
        let now = u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0);
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_string(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))
    }

    fn verify(&self, token: &str) -> Result<Uuid> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthorized("invalid or expired token"))?;
        Uuid::parse_str(&data.claims.sub).map_err(|_| Error::Unauthorized("invalid token"))
    }
}

/// argon2id with m=7168 KiB, t=5, p=1 — one of OWASP's equivalent recommended configurations
/// (alongside m=19456, t=2). The smaller memory cost matters on kiosks: the allocator keeps a
/// hash's work area per thread after it is freed, so 19 MiB areas would double a node's idle
/// memory. Verification reads the parameters from the stored hash, so older hashes still verify.
/// Hashing runs on the blocking pool, at most `limit` at once: each costs its work area and tens
/// of ms of CPU, so an unbounded burst of logins would starve the server.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the email is unknown so that a
    /// login for a missing account takes as long as one with a wrong password.
    dummy: Arc<String>,
}

impl PasswordHasher {
    pub fn new(limit: usize) -> Result<PasswordHasher> {
        let dummy = hash_blocking(&Uuid::new_v4().to_string())?;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// True if `password` matches `hash`; with `None` it burns the same time and says false.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable)?;
        let password = password.to_string();
        let (hash, known) = match hash {
            Some(h) => (h, true),
            None => (self.dummy.to_string(), false),
        };
        tokio::task::spawn_blocking(move || {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    hasher()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            ok && known
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
    }
}

/// OWASP's m=7168 KiB, t=5, p=1 argon2id configuration.
fn hasher() -> Argon2<'static> {
    match argon2::Params::new(7168, 5, 1, None) {
        Ok(params) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        // Unreachable with these constants; the defaults are OWASP's too.
        Err(_) => Argon2::default(),
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// The authenticated caller: a valid token for an active account.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins only; everyone else gets 403.
    pub fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden("admin role required"))
        }
    }

    /// The caller may see records of `owner`: their own, or any if admin.
    pub fn may_access(&self, owner: Uuid) -> bool {
        self.is_admin() || self.id == owner
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(Error::Unauthorized("missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or(Error::Unauthorized(
                "expected 'Authorization: Bearer <token>'",
            ))?;
        let id = state.jwt.verify(token.trim())?;
        let user = state
            .db
            .read(move |c| store::get(c, id))
            .await?
            .filter(|u| !u.deleted && !u.conflicted)
            .ok_or(Error::Unauthorized("account does not exist"))?;
        Ok(AuthUser {
            id: user.id,
            role: user.role,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = super::hash_blocking("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        let parsed = argon2::password_hash::phc::PasswordHash::new(&hash).unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(
            super::hasher()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(super::hasher().verify_password(b"wrong", &parsed).is_err());
    }
}
