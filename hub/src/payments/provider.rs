//! Payment providers: a deterministic simulation and a JSON-over-HTTP client.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

pub struct ChargeRequest<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub node_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub source: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        charge_id: String,
    },
    /// The card was refused: final.
    Declined {
        code: String,
        message: String,
    },
    /// Timeout, connection error or 5xx: not an answer. Left pending and retried later with the
    /// same idempotency key — never reported as declined.
    Retry {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded { refund_id: String },
    Failed { message: String },
    Retry { error: String },
}

#[tonic::async_trait]
pub trait Provider: Send + Sync {
    async fn charge(&self, req: &ChargeRequest<'_>) -> ChargeOutcome;
    async fn refund(&self, refund_id: &str, charge_id: &str, amount: i64) -> RefundOutcome;
}

/// Deterministic provider: `tok_visa` (and any other `tok_…` but the ones below) succeeds,
/// `tok_decline` declines, `tok_timeout` times out once per payment and then succeeds.
#[derive(Default)]
pub struct SimulatedProvider {
    // A std Mutex: held for one set operation, never across an await.
    timed_out: Mutex<HashSet<String>>,
}

#[tonic::async_trait]
impl Provider for SimulatedProvider {
    async fn charge(&self, req: &ChargeRequest<'_>) -> ChargeOutcome {
        match req.source {
            "tok_decline" => ChargeOutcome::Declined {
                code: "card_declined".into(),
                message: "the card was declined".into(),
            },
            "tok_timeout"
                if self
                    .timed_out
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(req.payment_id.to_string()) =>
            {
                ChargeOutcome::Retry {
                    error: "simulated timeout".into(),
                }
            }
            _ => ChargeOutcome::Succeeded {
                charge_id: format!("sim_ch_{}", req.payment_id),
            },
        }
    }

    async fn refund(&self, refund_id: &str, _charge_id: &str, _amount: i64) -> RefundOutcome {
        RefundOutcome::Succeeded {
            refund_id: format!("sim_re_{refund_id}"),
        }
    }
}

/// A provider reached over HTTP: `POST {url}/v1/charges` and `POST {url}/v1/refunds`, with
/// `Authorization: Bearer KEY` and `Idempotency-Key`. 5xx, timeouts and connection errors are
/// retried a few times with back-off and the same key, then left for a later attempt.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
    key: String,
    attempts: u32,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

enum Answer {
    Ok(Created),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Retry(String),
}

impl HttpProvider {
    pub fn new(url: &str, key: &str) -> anyhow::Result<HttpProvider> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(HttpProvider {
            client,
            url: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            attempts: 3,
        })
    }

    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> Answer {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let sent = self
                .client
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.key)
                .header("Idempotency-Key", idempotency_key)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("request failed: {e}");
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                last = format!("provider answered {status}");
                continue;
            }
            if status.is_success() {
                return match response.json::<Created>().await {
                    Ok(c) => Answer::Ok(c),
                    Err(e) => Answer::Retry(format!("unreadable success body: {e}")),
                };
            }
            let (code, message) = match response.json::<ErrorBody>().await {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (format!("http_{}", status.as_u16()), String::new()),
            };
            return Answer::Refused {
                status: status.as_u16(),
                code,
                message,
            };
        }
        Answer::Retry(last)
    }
}

#[tonic::async_trait]
impl Provider for HttpProvider {
    async fn charge(&self, req: &ChargeRequest<'_>) -> ChargeOutcome {
        let body = json!({
            "amount": req.amount,
            "currency": req.currency,
            "source": req.source,
            "metadata": {"payment_id": req.payment_id, "order_id": req.order_id, "node_id": req.node_id},
        });
        match self.post("/v1/charges", req.payment_id, body).await {
            Answer::Ok(c) if c.status == "succeeded" => {
                ChargeOutcome::Succeeded { charge_id: c.id }
            }
            Answer::Ok(c) => ChargeOutcome::Retry {
                error: format!("charge {} is {}", c.id, c.status),
            },
            Answer::Refused { code, message, .. } => ChargeOutcome::Declined { code, message },
            Answer::Retry(error) => ChargeOutcome::Retry { error },
        }
    }

    async fn refund(&self, refund_id: &str, charge_id: &str, amount: i64) -> RefundOutcome {
        let body = json!({"charge": charge_id, "amount": amount});
        match self.post("/v1/refunds", refund_id, body).await {
            Answer::Ok(r) if r.status == "succeeded" => {
                RefundOutcome::Succeeded { refund_id: r.id }
            }
            Answer::Ok(r) => RefundOutcome::Retry {
                error: format!("refund {} is {}", r.id, r.status),
            },
            Answer::Refused {
                status,
                code,
                message,
            } => RefundOutcome::Failed {
                message: format!("{status} {code}: {message}"),
            },
            Answer::Retry(error) => RefundOutcome::Retry { error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(payment_id: &'a str, source: &'a str) -> ChargeRequest<'a> {
        ChargeRequest {
            payment_id,
            order_id: "o",
            node_id: "n",
            amount: 100,
            currency: "USD",
            source,
        }
    }

    #[tokio::test]
    async fn simulated_tokens_behave_as_documented() {
        let p = SimulatedProvider::default();
        assert!(matches!(
            p.charge(&req("p1", "tok_visa")).await,
            ChargeOutcome::Succeeded { .. }
        ));
        assert!(matches!(
            p.charge(&req("p2", "tok_decline")).await,
            ChargeOutcome::Declined { .. }
        ));
        assert!(matches!(
            p.charge(&req("p3", "tok_timeout")).await,
            ChargeOutcome::Retry { .. }
        ));
        assert!(matches!(
            p.charge(&req("p3", "tok_timeout")).await,
            ChargeOutcome::Succeeded { .. }
        ));
    }
}
