//! The `Accounts` service: a store asks the hub to verify a sign-in with an email it does not
//! hold (least data per store, docs/security.md).
//!
//! The caller is authenticated with its store credential, like the Sync stream. On a match the
//! store becomes a holder of the account (`user_stores`) and gets its current state; from then
//! on the account's changes are sent to it too. Each store may ask only so often
//! ([`PER_STORE`] per [`WINDOW`]): a stolen credential must not become a password-guessing
//! oracle for the whole chain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordVerifier as _;
use argon2::password_hash::phc::PasswordHash;
use edgecart_proto::pb::{self, accounts_server::Accounts};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::state::Hub;
use crate::store::users;
use crate::{observability, sync};

/// Verifications one store may ask for per [`WINDOW`].
pub const PER_STORE: u32 = 30;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Password hashes verified at once, hub-wide (argon2 is deliberately slow).
const VERIFIERS: usize = 2;
/// Longest email and password accepted (the store's own limits are tighter).
const MAX_INPUT: usize = 1024;
/// Verified instead of a stored hash when the email is unknown, so an unknown email costs
/// the same time as a wrong password (same parameters as the stores' hashes).
const DUMMY_HASH: &str = "$argon2id$v=19$m=7168,t=5,p=1$AAAAAAAAAAAAAAAAAAAAAA$\
                          AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

pub struct AccountsService {
    hub: Hub,
    verifiers: Arc<Semaphore>,
    /// Per store: when its current window started and how many verifications it asked for.
    asked: Mutex<HashMap<String, (Instant, u32)>>,
}

impl AccountsService {
    pub fn new(hub: Hub) -> AccountsService {
        AccountsService {
            hub,
            verifiers: Arc::new(Semaphore::new(VERIFIERS)),
            asked: Mutex::default(),
        }
    }

    /// Counts one verification for `node`; false once it used up its window.
    fn admit(&self, node: &str) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Forget windows that are over, so the map stays as small as the active stores.
        asked.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        let (_, n) = asked.entry(node.to_string()).or_insert((now, 0));
        *n += 1;
        *n <= PER_STORE
    }
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[tonic::async_trait]
impl Accounts for AccountsService {
    async fn verify_sign_in(
        &self,
        request: Request<pb::VerifySignInRequest>,
    ) -> Result<Response<pb::VerifySignInResponse>, Status> {
        let (node, credential, decommissioned) =
            sync::authenticate(&self.hub, request.metadata()).await?;
        if decommissioned {
            return Err(sync::decommissioned(&node));
        }
        let req = request.into_inner();
        if req.email.len() > MAX_INPUT || req.password.len() > MAX_INPUT {
            return Err(Status::invalid_argument(
                "email, password: at most 1024 bytes",
            ));
        }
        if !self.admit(node.as_str()) {
            observability::sign_in_verification("throttled");
            tracing::warn!(node = %node, "refused a sign-in verification: the store asked too often");
            return Err(Status::resource_exhausted(format!(
                "sign-in verifications: at most {PER_STORE} per {} s per store; retry later",
                WINDOW.as_secs()
            )));
        }
        let email = req.email.trim().to_string();
        let candidate = self
            .hub
            .db
            .read(move |c| users::sign_in_candidate(c, &email))
            .await?;
        let _slot = self
            .verifiers
            .acquire()
            .await
            .map_err(|_| Status::unavailable("hub shutting down"))?;
        let (id, hash) = match candidate {
            Some((id, hash)) => (Some(id), hash),
            None => (None, DUMMY_HASH.to_string()),
        };
        let password = req.password;
        let matched = tokio::task::spawn_blocking(move || verify(&password, &hash))
            .await
            .map_err(|_| Status::internal("internal error"))?;
        let Some(id) = id.filter(|_| matched) else {
            observability::sign_in_verification("denied");
            return Ok(Response::new(pb::VerifySignInResponse { user: None }));
        };
        let store = node.to_string();
        let user = sync::write_as_active(&self.hub, &node, &credential, move |tx| {
            users::hold(tx, &id, &store)
        })
        .await?;
        observability::sign_in_verification(if user.is_some() { "verified" } else { "denied" });
        if let Some(u) = &user {
            tracing::info!(node = %node, user_id = %u.entity_id, "verified a sign-in: the store now holds the account");
        }
        Ok(Response::new(pb::VerifySignInResponse { user }))
    }
}
