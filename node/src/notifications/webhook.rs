//! The webhook delivery worker: POSTs queued `email` and `push` notifications to their channel's
//! URL, marks 2xx as delivered, retries everything else with exponential back-off and jitter, and
//! dead-letters a notification after `--webhook-max-attempts`.
//!
//! Delivery is at least once: a crash between the receiver's 2xx and our commit sends the
//! notification again after restart, with the same `Idempotency-Key` (the notification id), so
//! receivers can drop the duplicate.
//!
//! The writer is never held during HTTP: one short write reads the due rows, the requests run
//! with no transaction open, and one more write records every outcome of the batch.

use std::time::Duration;

use rand::Rng;
use reqwest::{Client, Url};
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::model::{Backoff, Channel};
use super::registry::{self, Registration};
use super::store::{self, Due};
use crate::config::Config;
use crate::error::Error;
use crate::state::AppState;

/// Most notifications sent concurrently in one pass.
const BATCH: usize = 32;
/// Longest sleep between passes with nothing due (a safety net: new rows ring the bell).
const IDLE: Duration = Duration::from_secs(5);
/// Pause after the database failed a pass.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A webhook setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("--{flag}: not a valid URL: {reason}")]
    BadUrl { flag: &'static str, reason: String },
    #[error("--{flag}: only http:// URLs are supported by this build")]
    Scheme { flag: &'static str },
    #[error("webhook HTTP client: {0}")]
    Client(String),
    #[error("registering the webhooks: {0}")]
    Db(#[from] Error),
}

/// The webhook settings of a node (from [`Config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub email: Option<Url>,
    pub push: Option<Url>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout: Duration,
}

impl Settings {
    /// `None` when no channel has a webhook.
    pub fn from_config(config: &Config) -> Result<Option<Settings>, WebhookConfigError> {
        let settings = Settings {
            email: parse_url("email-webhook", config.email_webhook.as_deref())?,
            push: parse_url("push-webhook", config.push_webhook.as_deref())?,
            max_attempts: config.webhook_max_attempts.max(1),
            backoff: Backoff {
                base_ms: config.webhook_backoff_ms,
                max_ms: config.webhook_backoff_max_ms.max(config.webhook_backoff_ms),
            },
            timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
        };
        Ok((settings.email.is_some() || settings.push.is_some()).then_some(settings))
    }

    fn channels(&self) -> Vec<Channel> {
        [
            (Channel::Email, self.email.is_some()),
            (Channel::Push, self.push.is_some()),
        ]
        .into_iter()
        .filter_map(|(c, on)| on.then_some(c))
        .collect()
    }

    fn url(&self, channel: Channel) -> Option<&Url> {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Push => self.push.as_ref(),
            Channel::InApp => None,
        }
    }
}

fn parse_url(flag: &'static str, raw: Option<&str>) -> Result<Option<Url>, WebhookConfigError> {
    let Some(raw) = raw.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let url = Url::parse(raw.trim()).map_err(|e| WebhookConfigError::BadUrl {
        flag,
        reason: e.to_string(),
    })?;
    // reqwest is built without TLS here: an https URL would fail every attempt, so refuse to
    // start rather than dead-letter everything.
    if url.scheme() != "http" {
        return Err(WebhookConfigError::Scheme { flag });
    }
    Ok(Some(url))
}

/// The URL as it may appear in logs: without a password, should it carry one.
fn loggable(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url.to_string()
}

/// Starts the worker when a webhook is configured; it stops when `stop` is cancelled. Call before
/// serving requests: from then on, every event also queues its `email` / `push` notifications.
pub async fn start(
    state: &AppState,
    config: &Config,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, WebhookConfigError> {
    let Some(settings) = Settings::from_config(config)? else {
        return Ok(None);
    };
    let client = Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        // A redirect is not a delivery (and would turn the POST into a GET).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("edgecart-node/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookConfigError::Client(e.to_string()))?;
    let channels = settings.channels();
    // Registered from the writer's own connection: `on_event` looks it up by that connection.
    let (registration, guard) = state
        .db
        .write(move |tx| Ok::<_, Error>(registry::register(tx, channels)))
        .await?;
    tracing::info!(
        email_webhook = settings.email.as_ref().map(loggable),
        push_webhook = settings.push.as_ref().map(loggable),
        max_attempts = settings.max_attempts,
        backoff_ms = settings.backoff.base_ms,
        "webhook delivery on"
    );
    let worker = Worker {
        state: state.clone(),
        settings,
        client,
        registration,
    };
    Ok(Some(tokio::spawn(async move {
        worker.run(stop).await;
        drop(guard);
    })))
}

struct Worker {
    state: AppState,
    settings: Settings,
    client: Client,
    registration: std::sync::Arc<Registration>,
}

/// What one attempt came to.
struct Attempt {
    item: Due,
    result: Result<(), String>,
}

impl Worker {
    async fn run(self, stop: CancellationToken) {
        loop {
            let pause = match self.pass(&stop).await {
                Ok(Some(next_due)) => Duration::from_millis(
                    u64::try_from(next_due - crate::time::now_ms()).unwrap_or(0),
                )
                .min(IDLE),
                Ok(None) => IDLE,
                Err(e) => {
                    tracing::error!(error = %e, "webhook delivery pass failed");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.registration.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("webhook delivery stopped");
    }

    /// Delivers everything due now; returns when the next queued notification falls due.
    async fn pass(&self, stop: &CancellationToken) -> Result<Option<i64>, Error> {
        let channels = self.registration.channels.clone();
        loop {
            let batch = self.claim().await?;
            let full = batch.len() == BATCH;
            if batch.is_empty() {
                break;
            }
            let attempts = self.send_all(batch).await;
            self.record(attempts).await?;
            // In-flight requests always finish and are recorded; a new batch is not started
            // once shutdown is asked for.
            if !full || stop.is_cancelled() {
                break;
            }
        }
        self.state
            .db
            .read(move |c| store::next_due_at(c, &channels))
            .await
    }

    /// The due notifications with their recipient address. A write, not a read, on purpose:
    /// the writer runs it after the transaction that rang the bell has committed, so that
    /// transaction's rows are seen. Emails whose account has no address any more are
    /// dead-lettered here, without an attempt.
    async fn claim(&self) -> Result<Vec<(Due, String)>, Error> {
        let channels = self.registration.channels.clone();
        self.state
            .db
            .write(move |tx| {
                let now = crate::time::now_ms();
                let mut out = Vec::new();
                for item in store::due(tx, &channels, now, BATCH)? {
                    let to = match item.channel {
                        Channel::Email => crate::users::store::email_of(tx, item.user_id)?,
                        _ => Some(item.user_id.to_string()),
                    };
                    match to {
                        Some(to) => out.push((item, to)),
                        None => {
                            tracing::warn!(id = %item.id, "email recipient has no address; dead-lettered");
                            store::mark_failed(
                                tx,
                                item.id,
                                item.attempts,
                                "recipient has no email address",
                                None,
                            )?;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn send_all(&self, batch: Vec<(Due, String)>) -> Vec<Attempt> {
        let mut tasks = JoinSet::new();
        for (item, to) in batch {
            let Some(url) = self.settings.url(item.channel).cloned() else {
                continue;
            };
            let client = self.client.clone();
            tasks.spawn(async move {
                let result = post(&client, url, &item, &to).await;
                Attempt { item, result }
            });
        }
        let mut done = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(attempt) => done.push(attempt),
                // Not recorded: the row stays queued and due, and is tried again next pass.
                Err(e) => tracing::error!(error = %e, "a webhook request task failed"),
            }
        }
        done
    }

    async fn record(&self, attempts: Vec<Attempt>) -> Result<(), Error> {
        let now = crate::time::now_ms();
        // Decide (and log) each outcome here; the write only applies them. (The thread-local
        // rng is not `Send`: it must be gone before the await below.)
        let outcomes: Vec<Outcome> = {
            let mut rng = rand::rng();
            attempts
                .into_iter()
                .map(|a| self.decide(a, now, &mut rng))
                .collect()
        };
        self.state
            .db
            .write(move |tx| {
                for o in &outcomes {
                    match &o.failure {
                        None => store::mark_delivered(tx, o.id, o.attempts)?,
                        Some((error, retry_at)) => {
                            store::mark_failed(tx, o.id, o.attempts, error, *retry_at)?
                        }
                    }
                }
                Ok(())
            })
            .await
    }

    /// Delivered, retried after a back-off, or dead after the last allowed attempt.
    fn decide(&self, Attempt { item, result }: Attempt, now: i64, rng: &mut impl Rng) -> Outcome {
        let attempts = item.attempts + 1;
        let channel = item.channel.as_str();
        let (label, failure) = match result {
            Ok(()) => {
                tracing::debug!(id = %item.id, channel, attempts, "notification delivered");
                ("delivered", None)
            }
            Err(error) if attempts >= self.settings.max_attempts => {
                tracing::warn!(id = %item.id, channel, attempts, %error, "notification dead-lettered");
                ("dead", Some((error, None)))
            }
            Err(error) => {
                let delay = self.settings.backoff.delay_ms(attempts, rng);
                tracing::info!(id = %item.id, channel, attempts, %error, retry_in_ms = delay,
                    "webhook failed; will retry");
                let at = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
                ("retry", Some((error, Some(at))))
            }
        };
        metrics::counter!("edgecart_notification_webhooks_total",
            "channel" => channel, "outcome" => label)
        .increment(1);
        crate::observability::notification_attempt(channel, label);
        Outcome {
            id: item.id,
            attempts,
            failure,
        }
    }
}

/// What to record for one attempt.
struct Outcome {
    id: Uuid,
    /// Attempts so far, this one included.
    attempts: u32,
    /// The reason, and when to try again (`None`: dead-lettered); `None` when delivered.
    failure: Option<(String, Option<i64>)>,
}

/// The JSON body POSTed to a webhook.
#[derive(Serialize)]
struct Payload<'a> {
    id: Uuid,
    user_id: Uuid,
    channel: &'static str,
    /// The email address (email) or the user id (push).
    to: &'a str,
    subject: &'a str,
    body: &'a str,
    event: &'a str,
}

/// One attempt: `Ok` on a 2xx, otherwise a short reason (no URL, no body: it is stored and
/// shown to admins).
async fn post(client: &Client, url: Url, item: &Due, to: &str) -> Result<(), String> {
    let payload = Payload {
        id: item.id,
        user_id: item.user_id,
        channel: item.channel.as_str(),
        to,
        subject: &item.subject,
        body: &item.body,
        event: &item.event,
    };
    let response = client
        .post(url)
        .header("Idempotency-Key", item.id.to_string())
        .json(&payload)
        .send()
        .await
        .map_err(describe)?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    if e.is_timeout() {
        return "timed out".to_string();
    }
    if e.is_connect() {
        return "connection failed".to_string();
    }
    // Without the URL: the reason is stored and shown to admins; the URL is in the config.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}
