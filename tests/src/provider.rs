//! A payment provider on loopback, speaking the HTTP provider protocol the hub's
//! `--payment-provider http` client uses (docs/payments.md): one charge per `Idempotency-Key`,
//! `tok_decline` declined with a 402, and a configurable number of 500s first. A test can also
//! make it take the money and hold the answer back ([`Provider::hold_answers`]), and answer 503
//! without taking anything ([`Provider::set_unavailable`]) — the seams of a charge in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// The API key the hub must present (`--provider-key`).
pub const PROVIDER_KEY: &str = "sk_test_key";

/// Shared handle on the provider's books.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Mutex<ProviderState>>,
    /// While true, a charge is taken and its answer waits (the caller sees a slow provider).
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            inner: Arc::default(),
            hold: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

#[derive(Default)]
pub struct ProviderState {
    /// Answer this many next charge requests with a 500.
    pub fail_next: u32,
    /// Answer every request with a 503 (nothing taken) while set.
    pub unavailable: bool,
    /// Requests answered 503 because of `unavailable`.
    pub unavailable_answers: u32,
    /// Charges taken whose answer was held back.
    pub held_answers: u32,
    /// Charge requests received (any outcome).
    pub requests: u32,
    /// Succeeded charges by idempotency key (the hub's payment id).
    pub charges: HashMap<String, Value>,
    /// Charge requests per idempotency key (retries of one payment land on one key).
    pub charge_requests: HashMap<String, u32>,
    /// Succeeded refunds by idempotency key (the hub's refund id).
    pub refunds: HashMap<String, Value>,
}

impl Provider {
    /// Starts the provider; returns its base URL.
    pub async fn start(fail_first: u32) -> (String, Provider) {
        let p = Provider::default();
        p.state().fail_next = fail_first;
        let app = axum::Router::new()
            .route("/v1/charges", post(charge))
            .route("/v1/refunds", post(refund))
            .with_state(p.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let url = format!("http://{}", listener.local_addr().expect("provider addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, p)
    }

    /// Takes charges but holds their answers back until called with `false`.
    pub fn hold_answers(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// Answers 503 to everything (taking nothing) until called with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    pub fn state(&self) -> MutexGuard<'_, ProviderState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hub arguments that route its payments here.
    pub fn hub_args(url: &str) -> Vec<String> {
        [
            "--payment-provider",
            "http",
            "--provider-url",
            url,
            "--provider-key",
            PROVIDER_KEY,
        ]
        .map(str::to_string)
        .to_vec()
    }
}

fn idempotency_key(headers: &HeaderMap) -> String {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn charge(
    State(p): State<Provider>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let answer = {
        let mut s = p.state();
        s.requests += 1;
        let expected = format!("Bearer {PROVIDER_KEY}");
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": "auth", "message": "bad key"}})),
            );
        }
        let key = idempotency_key(&headers);
        *s.charge_requests.entry(key.clone()).or_default() += 1;
        if s.unavailable {
            s.unavailable_answers += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
        }
        if body["source"] == "tok_decline" {
            return (
                StatusCode::PAYMENT_REQUIRED,
                Json(json!({"error": {"code": "card_declined", "message": "no"}})),
            );
        }
        let n = s.charges.len();
        let charge = s.charges.entry(key).or_insert_with(
            || json!({"id": format!("ch_{n}"), "status": "succeeded", "amount": body["amount"]}),
        );
        let charge = charge.clone();
        if *p.hold.borrow() {
            s.held_answers += 1;
        }
        charge
    };
    // The money is taken; the answer may be slow (or never arrive, if the caller dies first).
    let mut hold = p.hold.subscribe();
    let _ = hold.wait_for(|held| !held).await;
    (StatusCode::OK, Json(answer))
}

async fn refund(
    State(p): State<Provider>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut s = p.state();
    if s.unavailable {
        s.unavailable_answers += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let key = idempotency_key(&headers);
    let n = s.refunds.len();
    let r = s.refunds.entry(key).or_insert_with(|| {
        json!({"id": format!("re_{n}"), "status": "succeeded", "amount": body["amount"],
               "charge": body["charge"]})
    });
    (StatusCode::OK, Json(r.clone()))
}
