//! Email and push notifications delivered by webhook: real local HTTP receivers, the node through
//! its public API (and, for the restart, as a real process).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::helpers::{TestApp, TestNode, json_of, problem, register, wait_healthy};

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    key: Option<String>,
    body: Value,
    status: u16,
}

#[derive(Clone, Default)]
struct Inbox {
    hits: Arc<Mutex<Vec<Hit>>>,
    failing: Arc<AtomicBool>,
}

/// A webhook receiver on a real local port: answers 200, or 500 while `failing`.
struct Receiver {
    inbox: Inbox,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    async fn start(addr: SocketAddr, failing: bool) -> Receiver {
        let inbox = Inbox::default();
        inbox.failing.store(failing, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(inbox.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver { inbox, _stop: stop }
    }

    fn set_failing(&self, failing: bool) {
        self.inbox.failing.store(failing, Ordering::SeqCst);
    }

    fn hits(&self) -> Vec<Hit> {
        self.inbox.hits.lock().unwrap().clone()
    }

    fn hits_for(&self, id: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.key.as_deref() == Some(id))
            .collect()
    }
}

async fn receive(
    State(inbox): State<Inbox>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = if inbox.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    inbox.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: status.as_u16(),
    });
    status
}

/// An address nothing listens on (yet): a receiver that is down.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Polls `check` until it returns `Ok`; on timeout panics with the last state it reported.
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) if Instant::now() > deadline => panic!("timed out: {what}; last: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The caller's notifications (one page is plenty here).
async fn notifications(client: &Client, base: &str, token: &str) -> Vec<Value> {
    let r = client
        .get(format!("{base}/v1/notifications?page_size=100"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/notifications");
    json_of(r, 200).await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn on_webhooks(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|n| n["channel"] != "in_app")
        .cloned()
        .collect()
}

fn summary(items: &[Value]) -> String {
    items
        .iter()
        .map(|n| {
            format!(
                "{}/{}/{}x{}",
                n["event"], n["channel"], n["status"], n["attempts"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn receiver_down_then_up_gets_each_notification_once() {
    let addr = free_addr();
    let (email_url, push_url) = (
        format!("http://{addr}/email"),
        format!("http://{addr}/push"),
    );
    let app = TestApp::spawn_with(&[
        "--email-webhook",
        &email_url,
        "--push-webhook",
        &push_url,
        "--webhook-backoff-ms",
        "20",
        "--webhook-backoff-max-ms",
        "200",
        "--webhook-max-attempts",
        "100",
    ])
    .await;
    let base = app.url("");
    let users = [
        ("ana@shop.test", app.register("ana@shop.test").await),
        ("ben@shop.test", app.register("ben@shop.test").await),
    ];
    let tea = app.product("Tea", 450, 10).await;
    json_of(app.order(&users[0].1.0, &tea, 1).await, 201).await;

    // While the receiver is down every webhook notification stays queued and is retried.
    for (_, (token, _)) in &users {
        wait_until("failed attempts while the receiver is down", || async {
            let items = on_webhooks(&notifications(&app.client, &base, token).await);
            let retried = items
                .iter()
                .all(|n| n["status"] == "queued" && n["attempts"].as_i64() >= Some(2));
            if retried && !items.is_empty() {
                Ok(())
            } else {
                Err(summary(&items))
            }
        })
        .await;
    }

    let receiver = Receiver::start(addr, false).await;
    let mut expected: HashMap<String, (Value, &str, String)> = HashMap::new();
    for (email, (token, user_id)) in &users {
        let items = wait_until("delivery once the receiver is up", || async {
            let all = notifications(&app.client, &base, token).await;
            let items = on_webhooks(&all);
            if items.iter().all(|n| n["status"] == "delivered") {
                Ok(all)
            } else {
                Err(summary(&items))
            }
        })
        .await;
        // in_app works as before, next to the webhook channels.
        let in_app = items.iter().filter(|n| n["channel"] == "in_app").count();
        assert_eq!(
            in_app * 3,
            items.len(),
            "in_app, email and push per event: {}",
            summary(&items)
        );
        assert!(items.iter().all(|n| n["status"] == "delivered"));
        for n in on_webhooks(&items) {
            expected.insert(
                n["id"].as_str().unwrap().to_string(),
                (n, email, user_id.clone()),
            );
        }
    }
    assert_eq!(
        expected.len(),
        6,
        "UserRegistered x2 and OrderCreated x1, on email and push"
    );

    let hits = receiver.hits();
    assert_eq!(
        hits.len(),
        expected.len(),
        "each delivered once, nothing more: {hits:#?}"
    );
    let keys: HashSet<_> = hits.iter().filter_map(|h| h.key.clone()).collect();
    assert_eq!(keys, expected.keys().cloned().collect::<HashSet<_>>());
    for hit in hits {
        assert_eq!(hit.status, 200);
        let (n, email, user_id) = &expected[hit.key.as_deref().unwrap()];
        let b = &hit.body;
        assert_eq!(b["id"], n["id"], "Idempotency-Key is the notification id");
        assert_eq!(b["channel"], n["channel"]);
        assert_eq!(hit.path, format!("/{}", n["channel"].as_str().unwrap()));
        assert_eq!(b["event"], n["event"]);
        assert_eq!(b["subject"], n["subject"]);
        assert_eq!(b["body"], n["body"]);
        assert_eq!(b["user_id"].as_str(), Some(user_id.as_str()));
        let to = if n["channel"] == "email" {
            *email
        } else {
            user_id.as_str()
        };
        assert_eq!(b["to"].as_str(), Some(to), "{b}");
    }
    let dead = json_of(
        app.get(
            "/v1/notifications/dead-letters",
            Some(&app.admin_token().await),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(dead["items"], json!([]));
}

#[tokio::test]
async fn receiver_always_failing_dead_letters_after_max_attempts() {
    let addr = free_addr();
    let receiver = Receiver::start(addr, true).await;
    let app = TestApp::spawn_with(&[
        "--email-webhook",
        &format!("http://{addr}/hook"),
        "--webhook-max-attempts",
        "3",
        "--webhook-backoff-ms",
        "10",
        "--webhook-backoff-max-ms",
        "50",
    ])
    .await;
    let (token, user_id) = app.register("dora@shop.test").await;
    let base = app.url("");
    let dead = wait_until("the email is dead-lettered", || async {
        let items = on_webhooks(&notifications(&app.client, &base, &token).await);
        match items.as_slice() {
            [n] if n["status"] == "dead" => Ok(n.clone()),
            _ => Err(summary(&items)),
        }
    })
    .await;
    assert_eq!(
        dead["channel"], "email",
        "no push webhook, no push notifications"
    );
    assert_eq!(dead["attempts"], 3);
    let id = dead["id"].as_str().unwrap().to_string();
    let hits = receiver.hits_for(&id);
    assert_eq!(hits.len(), 3, "{hits:#?}");
    assert!(hits.iter().all(|h| h.status == 500));

    // Visible to admins as a dead letter, with the reason; not to customers.
    let admin = app.admin_token().await;
    let letters = json_of(
        app.get("/v1/notifications/dead-letters", Some(&admin))
            .await,
        200,
    )
    .await;
    let letters = letters["items"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(letters[0]["user_id"].as_str(), Some(user_id.as_str()));
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["event"], "UserRegistered");
    let reason = letters[0]["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("500"), "{reason}");
    problem(
        app.get("/v1/notifications/dead-letters", Some(&token))
            .await,
        403,
        None,
    )
    .await;
    let retry = format!("/v1/notifications/{id}/retry");
    problem(app.post(&retry, Some(&token), &json!({})).await, 403, None).await;

    // An admin requeues it once the receiver is fixed: delivered, with the same key.
    receiver.set_failing(false);
    let requeued = json_of(app.post(&retry, Some(&admin), &json!({})).await, 200).await;
    assert_eq!(requeued["status"], "queued");
    wait_until("the retried dead letter is delivered", || async {
        let items = on_webhooks(&notifications(&app.client, &base, &token).await);
        match items.as_slice() {
            [n] if n["status"] == "delivered" => Ok(()),
            _ => Err(summary(&items)),
        }
    })
    .await;
    let hits = receiver.hits_for(&id);
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    problem(app.post(&retry, Some(&admin), &json!({})).await, 409, None).await;
    let unknown = format!(
        "/v1/notifications/{}/retry",
        "01900000-0000-7000-8000-000000000000"
    );
    problem(
        app.post(&unknown, Some(&admin), &json!({})).await,
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn queued_notifications_are_delivered_after_a_restart() {
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    let args = [
        "--email-webhook",
        &url,
        "--webhook-backoff-ms",
        "50",
        "--webhook-backoff-max-ms",
        "300",
        "--webhook-max-attempts",
        "100",
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let client = Client::new();
    let mut node = TestNode::start_with(dir.path(), &args);
    let base = node.base();
    wait_healthy(&client, &format!("{base}/readyz")).await;
    let (token, _) = register(&client, &base, "eve@shop.test").await;
    let pending = wait_until("a failed attempt while the receiver is down", || async {
        let items = on_webhooks(&notifications(&client, &base, &token).await);
        match items.as_slice() {
            [n] if n["status"] == "queued" && n["attempts"].as_i64() >= Some(1) => Ok(n.clone()),
            _ => Err(summary(&items)),
        }
    })
    .await;
    node.kill9();
    drop(node);

    let receiver = Receiver::start(addr, false).await;
    let node = TestNode::start_with(dir.path(), &args);
    let base = node.base();
    wait_healthy(&client, &format!("{base}/readyz")).await;
    wait_until("delivery after the restart", || async {
        let items = on_webhooks(&notifications(&client, &base, &token).await);
        match items.as_slice() {
            [n] if n["status"] == "delivered" => Ok(()),
            _ => Err(summary(&items)),
        }
    })
    .await;
    let hits = receiver.hits_for(pending["id"].as_str().unwrap());
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0].body["to"], "eve@shop.test");
    assert_eq!(hits[0].body["event"], "UserRegistered");
}
