//! A webhook receiver standing in for the email relay: it records every delivery by
//! `Idempotency-Key` and accepts each key once, as docs/notifications.md asks of receivers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

#[derive(Clone, Default)]
pub struct Sink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
pub struct SinkState {
    /// Requests per idempotency key (a key seen twice is a redelivery).
    pub deliveries: HashMap<String, u32>,
    /// The first accepted body per key.
    pub accepted: HashMap<String, Value>,
    /// Deliveries whose body differed from the first one accepted under the same key.
    pub conflicting: Vec<String>,
}

impl Sink {
    /// Starts the receiver; returns its URL (for `--email-webhook`).
    pub async fn start() -> (String, Sink) {
        let sink = Sink::default();
        let app = axum::Router::new()
            .route("/email", post(deliver))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let url = format!("http://{}/email", listener.local_addr().expect("sink addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, sink)
    }

    pub fn state(&self) -> MutexGuard<'_, SinkState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn deliver(
    State(sink): State<Sink>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return StatusCode::BAD_REQUEST;
    };
    let mut s = sink.state();
    *s.deliveries.entry(key.clone()).or_default() += 1;
    match s.accepted.get(&key) {
        Some(first) if *first != body => s.conflicting.push(key),
        Some(_) => {}
        None => {
            s.accepted.insert(key, body);
        }
    }
    StatusCode::NO_CONTENT
}
