//! Bearer-token checks for the admin services, and the stores' credentials.
//!
//! A store credential is `ecn_<id>_<secret>`: `id` (16 hex digits) names the row the hub looks
//! up, `secret` is 32 random bytes in unpadded base64url. The hub keeps only SHA-256(secret):
//! a fast hash is enough for a secret nobody can guess (nothing to brute-force), and a leaked
//! hub database then holds no usable credential.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

const PREFIX: &str = "ecn_";
const ID_LEN: usize = 16;
const SECRET_BYTES: usize = 32;

/// The `Bearer` token of a call ("" when there is none).
pub fn bearer(metadata: &MetadataMap) -> &str {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Checks `authorization: Bearer <expected>`; the comparison takes the same time wherever the
/// tokens differ, and nothing about the presented token is logged.
pub fn check(metadata: &MetadataMap, expected: &str, who: &str) -> Result<(), Status> {
    let presented = bearer(metadata);
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) && !expected.is_empty() {
        Ok(())
    } else {
        tracing::warn!(who, "refused a call with a missing or wrong token");
        Err(Status::unauthenticated(format!(
            "a valid {who} token is required"
        )))
    }
}

/// Who called a NodeAdmin method (a request extension set by [`NodeAdminAuth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// Holds the bootstrap token: may enroll a store not enrolled yet, nothing else.
    Bootstrap,
}

/// The NodeAdmin service's interceptor: the admin token, or the bootstrap token when set.
#[derive(Clone)]
pub struct NodeAdminAuth {
    admin: std::sync::Arc<str>,
    bootstrap: Option<std::sync::Arc<str>>,
}

impl NodeAdminAuth {
    pub fn new(admin: &str, bootstrap: Option<&str>) -> NodeAdminAuth {
        NodeAdminAuth {
            admin: admin.into(),
            bootstrap: bootstrap.filter(|b| !b.is_empty()).map(Into::into),
        }
    }
}

impl tonic::service::Interceptor for NodeAdminAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let presented = bearer(req.metadata()).as_bytes();
        let caller = if constant_time_eq(presented, self.admin.as_bytes()) {
            Caller::Admin
        } else if self
            .bootstrap
            .as_ref()
            .is_some_and(|b| constant_time_eq(presented, b.as_bytes()))
        {
            Caller::Bootstrap
        } else {
            return check(req.metadata(), &self.admin, "admin").map(|()| req);
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// Refuses a NodeAdmin call that did not present the admin token.
pub fn require_admin<T>(req: &tonic::Request<T>) -> Result<(), Status> {
    match req.extensions().get::<Caller>() {
        Some(Caller::Admin) => Ok(()),
        _ => {
            tracing::warn!("refused a NodeAdmin call made with the bootstrap token");
            Err(Status::permission_denied(
                "the bootstrap token may only enroll a new store",
            ))
        }
    }
}

/// A freshly issued credential: `text` goes to the operator once, `hash` to the database.
pub struct Issued {
    pub id: String,
    pub text: String,
    pub hash: [u8; 32],
}

pub fn issue() -> Issued {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_LEN / 2];
    rng.fill_bytes(&mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    Issued {
        text: format!("{PREFIX}{id}_{secret}"),
        hash: hash_secret(&secret),
        id,
    }
}

/// A presented credential, split: its id and the hash of its secret. `None` when it does not
/// have the credential's shape.
pub fn parse(credential: &str) -> Option<(&str, [u8; 32])> {
    let rest = credential.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?.strip_prefix('_')?);
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || secret.is_empty() {
        return None;
    }
    Some((id, hash_secret(secret)))
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn an_issued_credential_parses_back_to_its_id_and_hash_and_nothing_else_does() {
        let a = issue();
        let b = issue();
        assert_ne!(a.text, b.text);
        assert_ne!(a.id, b.id);
        let (id, hash) = parse(&a.text).expect("parses");
        assert_eq!((id, hash), (a.id.as_str(), a.hash));
        // 43 base64url characters carry the 32 bytes.
        assert_eq!(a.text.len(), PREFIX.len() + ID_LEN + 1 + 43);
        // One character changed in the secret: same id, another hash.
        let mut forged = a.text.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_ne!(parse(&forged).unwrap().1, a.hash);
        for bad in [
            "",
            "test-node-token-0123456789",
            "ecn_",
            "ecn_0123456789abcdef",
            "ecn_0123456789abcdef_",
            "ecn_0123456789abcdeX_secret",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
