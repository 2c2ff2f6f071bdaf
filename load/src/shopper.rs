//! Shoppers against real nodes' REST storefront API: register a customer, place an order,
//! pay it by card, at a modest pace; and the product reads the propagation probes poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng as _};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorCounts, LoadError};

/// A new customer is registered after this many orders of the previous one.
const ORDERS_PER_CUSTOMER: u64 = 25;
const PASSWORD: &str = "load-shopper-pass-1";
/// The simulated provider's always-succeeding test token.
const CARD: &str = "tok_visa";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a storefront call failed; its [`ShopError::kind`] is what the report counts.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("{op}: HTTP {status}")]
    Status { op: &'static str, status: u16 },
    #[error("{op}: {why}")]
    Transport { op: &'static str, why: String },
    #[error("{op}: unexpected answer")]
    Body { op: &'static str },
}

impl ShopError {
    pub fn kind(&self) -> String {
        match self {
            ShopError::Status { op, status } => format!("{op}_{status}"),
            ShopError::Transport { op, .. } => format!("{op}_unreachable"),
            ShopError::Body { op } => format!("{op}_bad_answer"),
        }
    }
}

/// One real node's storefront.
#[derive(Clone, Debug)]
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
}

impl NodeClient {
    /// `url` is the node's base URL (`http://host:port`).
    pub fn new(url: &str) -> Result<NodeClient, LoadError> {
        let bad = |why: &str| LoadError::BadUrl {
            flag: "--node",
            url: url.to_string(),
            why: why.to_string(),
        };
        if !url.starts_with("http://") {
            return Err(bad(
                "must start with http:// (a node serves plain HTTP; put the tool where it can reach it)",
            ));
        }
        reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(NodeClient {
            base: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn post(
        &self,
        op: &'static str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, ShopError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| ShopError::Transport {
            op,
            why: crate::hub::error_chain(&e),
        })?;
        let status = r.status().as_u16();
        if !r.status().is_success() {
            return Err(ShopError::Status { op, status });
        }
        r.json().await.map_err(|_| ShopError::Body { op })
    }

    /// Registers a customer; returns their token.
    pub async fn register(&self, email: &str) -> Result<String, ShopError> {
        let body = json!({"email": email, "name": "Load Shopper", "password": PASSWORD});
        let v = self.post("register", "/v1/users", None, body).await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or(ShopError::Body { op: "register" })
    }

    /// Orders one unit of `product`; returns the order id.
    pub async fn order(&self, token: &str, product: &str) -> Result<String, ShopError> {
        let body = json!({"items": [{"product_id": product, "quantity": 1}]});
        let v = self.post("order", "/v1/orders", Some(token), body).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or(ShopError::Body { op: "order" })
    }

    /// Pays an order by card.
    pub async fn pay(&self, token: &str, order: &str) -> Result<(), ShopError> {
        let body = json!({"method": "card", "card_token": CARD});
        self.post(
            "payment",
            &format!("/v1/orders/{order}/payments"),
            Some(token),
            body,
        )
        .await
        .map(|_| ())
    }

    /// Pays an order in cash (captured at the node at once).
    pub async fn pay_cash(&self, token: &str, order: &str) -> Result<(), ShopError> {
        let body = json!({"method": "cash"});
        self.post(
            "payment",
            &format!("/v1/orders/{order}/payments"),
            Some(token),
            body,
        )
        .await
        .map(|_| ())
    }

    /// `(available_here, global)` of a product; `None` while the node does not know it.
    pub async fn stock(&self, product: &str) -> Result<Option<(i64, i64)>, ShopError> {
        let op = "product";
        let r = self
            .http
            .get(format!("{}/v1/products/{product}", self.base))
            .send()
            .await
            .map_err(|e| ShopError::Transport {
                op,
                why: crate::hub::error_chain(&e),
            })?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(ShopError::Status {
                op,
                status: r.status().as_u16(),
            });
        }
        let v: Value = r.json().await.map_err(|_| ShopError::Body { op })?;
        let here = v["stock"]["available_here"].as_i64();
        let global = v["stock"]["global"].as_i64();
        Ok(here.zip(global))
    }

    /// Waits until the node knows every product (the hub's catalog reached it).
    pub async fn wait_products(
        &self,
        products: &[String],
        timeout: Duration,
    ) -> Result<(), LoadError> {
        let deadline = Instant::now() + timeout;
        for p in products {
            loop {
                match self.stock(p).await {
                    Ok(Some(_)) => break,
                    Ok(None) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(None) => {
                        return Err(LoadError::Timeout {
                            what: format!("node {} to know product {p} from the hub", self.base),
                            secs: timeout.as_secs(),
                        });
                    }
                    Err(e) => {
                        return Err(LoadError::Node {
                            url: self.base.clone(),
                            why: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the shoppers did.
#[derive(Debug, Default)]
pub struct ShopStats {
    pub placed: AtomicU64,
    pub paid: AtomicU64,
    pub registered: AtomicU64,
    /// Seconds from placing an order until its payment was accepted.
    pub latencies: Mutex<Vec<f64>>,
}

/// One shopper at `node` until `stop`: one order (and its payment) every `every`.
pub async fn shop(
    node: NodeClient,
    products: Arc<Vec<String>>,
    every: Duration,
    tag: String,
    stats: Arc<ShopStats>,
    errors: ErrorCounts,
    stop: CancellationToken,
) {
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let first = every.mul_f64(rng.random_range(0.0..1.0));
    let mut pace = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut customer: Option<(String, u64)> = None;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = pace.tick() => {}
        }
        if customer
            .as_ref()
            .is_none_or(|(_, orders)| *orders >= ORDERS_PER_CUSTOMER)
        {
            n += 1;
            match node.register(&format!("load-{tag}-{n}@load.example")).await {
                Ok(token) => {
                    stats.registered.fetch_add(1, Ordering::Relaxed);
                    customer = Some((token, 0));
                }
                Err(e) => {
                    errors.add(e.kind());
                    continue;
                }
            }
        }
        let Some((token, orders)) = customer.as_mut() else {
            continue;
        };
        let Some(product) = products.choose(&mut rng) else {
            return;
        };
        let started = Instant::now();
        let outcome = async {
            let order = node.order(token, product).await?;
            stats.placed.fetch_add(1, Ordering::Relaxed);
            node.pay(token, &order).await
        }
        .await;
        *orders += 1;
        match outcome {
            Ok(()) => {
                stats.paid.fetch_add(1, Ordering::Relaxed);
                stats
                    .latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(started.elapsed().as_secs_f64());
            }
            Err(e) => errors.add(e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_must_be_http() {
        assert!(NodeClient::new("http://127.0.0.1:8080").is_ok());
        let e = NodeClient::new("ftp://x").unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
    }

    #[test]
    fn error_kinds_name_the_call_and_status() {
        assert_eq!(
            ShopError::Status {
                op: "order",
                status: 409
            }
            .kind(),
            "order_409"
        );
    }
}
