//! Tokens and the authenticated caller.
//!
//! JWTs are HS256 only: the decoder accepts exactly that algorithm, so `alg: none` and algorithm
//! confusion are rejected by construction. Every authenticated request re-reads the account, so a
//! deleted account or a changed role takes effect at once, not at token expiry.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::Role;
use super::store;
use crate::error::{Error, Result};
use crate::state::AppState;

pub use super::password::PasswordHasher;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: u64,
    exp: u64,
    iss: String,
}

const ISSUER: &str = "edgecart-node";
/// The store's own signing key, made on first start when no `--jwt-secret` is given.
const KEY_FILE: &str = "jwt.key";

/// This store's JWT signing key: `configured` (`--jwt-secret`, at least 32 bytes) or else the
/// key kept in `data_dir/jwt.key`, made from 32 random bytes on first start (mode 0600). A
/// key of its own per store means a token, or a key read off a stolen kiosk, is worth nothing
/// at any other store.
pub fn signing_key(configured: Option<&str>, data_dir: &std::path::Path) -> Result<Vec<u8>> {
    if let Some(secret) = configured {
        if secret.len() < 32 {
            return Err(Error::invalid("jwt_secret", "must be at least 32 bytes"));
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(KEY_FILE);
    let internal =
        |what: &str, e: std::io::Error| Error::Internal(format!("{what} {}: {e}", path.display()));
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {
            return Err(Error::Internal(format!(
                "{} is shorter than 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(internal("reading", e)),
    }
    let mut raw = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    // Written whole under another name and renamed: a crash leaves either no key or all of it.
    let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| internal("creating", e))?;
        file.write_all(key.as_bytes())
            .map_err(|e| internal("writing", e))?;
        file.sync_all().map_err(|e| internal("writing", e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| internal("writing", e))?;
    tracing::info!(path = %path.display(), "made this store's JWT signing key");
    Ok(key.into_bytes())
}

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
        // Expiry is checked against the node's own clock in `verify`, the same clock that
        // issued the token (jsonwebtoken would read the host clock directly).
        validation.validate_exp = false;
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
        let now = u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0);
        if data.claims.exp.saturating_add(self.validation.leeway) < now {
            return Err(Error::Unauthorized("invalid or expired token"));
        }
        Uuid::parse_str(&data.claims.sub).map_err(|_| Error::Unauthorized("invalid token"))
    }
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
    use super::signing_key;

    #[test]
    fn each_data_dir_makes_its_own_key_once_and_keeps_it_private() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = signing_key(None, a.path()).unwrap();
        assert!(first.len() >= 32);
        assert_eq!(
            signing_key(None, a.path()).unwrap(),
            first,
            "kept across starts"
        );
        assert_ne!(
            signing_key(None, b.path()).unwrap(),
            first,
            "one key per store"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(a.path().join("jwt.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "readable by the store's user only: {mode:o}"
            );
        }
        let configured = "c".repeat(32);
        assert_eq!(
            signing_key(Some(&configured), a.path()).unwrap(),
            configured.as_bytes()
        );
        assert!(signing_key(Some("short"), a.path()).is_err());
    }
}
