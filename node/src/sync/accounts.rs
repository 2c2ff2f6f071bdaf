//! Least data per store (docs/security.md): this store holds only the customer accounts
//! registered or signed in here. Signing in with an email it does not hold, it asks the hub
//! (`edgecart.v1.Accounts/VerifySignIn`, with this store's credential) while connected, and
//! keeps the account from then on; the hub then sends it the account's later changes too.
//! Offline, only the accounts held here sign in.

use std::time::Duration;

use edgecart_proto::pb::{self, accounts_client::AccountsClient};
use edgecart_proto::sync::{UserPayload, entity};

use crate::error::Result;
use crate::events::{self, Event};
use crate::state::AppState;
use crate::users::store as users;

/// How long a sign-in waits for the hub before it is refused like a wrong password.
const VERIFY_WAIT: Duration = Duration::from_secs(3);

/// Asks the hub whether `email` and `password` are a customer account of the chain; on a match
/// the account is stored here (as the hub's replicated copy) and `true` is answered. `false`
/// when offline, on no match, or when the hub does not answer in time (logged).
pub async fn fetch_verified(state: &AppState, email: &str, password: &str) -> Result<bool> {
    let Some((channel, credential)) = state.sync.hub() else {
        return Ok(false);
    };
    let mut request = tonic::Request::new(pb::VerifySignInRequest {
        email: email.to_string(),
        password: password.to_string(),
    });
    request.set_timeout(VERIFY_WAIT);
    let Ok(bearer) = format!("Bearer {credential}").parse() else {
        return Ok(false);
    };
    request.metadata_mut().insert("authorization", bearer);
    let answer = tokio::time::timeout(
        VERIFY_WAIT,
        AccountsClient::new(channel).verify_sign_in(request),
    )
    .await;
    let change = match answer {
        Ok(Ok(r)) => r.into_inner().user,
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), message = %status.message(), "the hub did not verify a sign-in");
            None
        }
        Err(_) => {
            tracing::warn!("the hub did not answer a sign-in verification in time");
            None
        }
    };
    let Some(change) = change else {
        return Ok(false);
    };
    let Ok(user) = serde_json::from_str::<UserPayload>(&change.payload_json) else {
        tracing::warn!("the hub answered a sign-in verification with an unreadable account");
        return Ok(false);
    };
    // Only what was asked for: a customer account with this email.
    let asked = user
        .email
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(email));
    if change.entity != entity::USER
        || user.role != "customer"
        || user.id != change.entity_id
        || !asked
    {
        tracing::warn!("the hub answered a sign-in verification with another account");
        return Ok(false);
    }
    let version = change.version;
    if let Ok(ts) = version.parse() {
        state.clock.observe(&ts);
    }
    state
        .db
        .write(move |tx| {
            for user_id in users::apply_remote(tx, &user, &version)? {
                events::publish(tx, &Event::AccountConflicted { user_id })?;
            }
            Ok::<_, crate::error::Error>(())
        })
        .await?;
    tracing::info!(user_id = %change.entity_id, "signed in a customer verified by the hub: the account is kept here");
    Ok(true)
}
