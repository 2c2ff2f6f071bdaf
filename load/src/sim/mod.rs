//! Simulated stores: many `Sync/Stream` sessions that behave like nodes, cheap enough to run
//! a thousand of on a laptop next to the hub.
//!
//! A cross-process test connects K stores to a hub and reads what each received, by entity:
//!
//! ```no_run
//! # async fn demo() -> Result<(), edgecart_load::LoadError> {
//! use std::time::Duration;
//! use edgecart_load::hub::{Admin, HubTarget, Secret};
//! use edgecart_load::sim::{Fleet, SimConfig};
//!
//! let hub = HubTarget::new("http://127.0.0.1:50051", None)?;
//! let admin = Admin::connect(&hub, &Secret::new("admin-token")).await?;
//! let ids: Vec<String> = (1..=200).map(|i| format!("sim-{i:04}")).collect();
//! let enrolled = admin.enroll_all(&ids, 8, |_| {}).await?;
//! let mut config = SimConfig::new(hub);
//! config.sale_every = Some(Duration::from_secs(5));
//! let fleet = Fleet::start(config, enrolled)?;
//! fleet.wait_connected(Duration::from_secs(30), |_| {}).await?;
//! let before = fleet.snapshot();
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! for store in fleet.snapshot().rates_since(&before) {
//!     println!("{}: {:?}", store.id, store.received_per_sec.get("stock_others"));
//! }
//! fleet.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - this file: [`SimConfig`], [`Fleet`] (start, snapshots, waits, probe sales, stop).
//! - `store.rs`: one store's task (session, back-off).
//! - `book.rs`: a store's replica and the rules it sells by.
//! - `stats.rs`: counters, [`FleetSnapshot`], [`StoreRates`].
//! - `watch.rs`: [`GlobalWatch`], when stores see a product's global stock reach a value.

mod book;
mod stats;
mod store;
mod watch;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgecart_proto::ids::ActorId;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use stats::{ENTITIES, EntityCounts, FleetSnapshot, StoreRates, StoreSnapshot};
pub use watch::GlobalWatch;

use crate::error::{ErrorCounts, LoadError};
use crate::hub::{Enrolled, HubTarget};

/// How the simulated stores behave.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub hub: HubTarget,
    /// One sale (of one unit, of a random product it holds rights for) per store this often;
    /// `None`: the stores do not sell.
    pub sale_every: Option<Duration>,
    /// Products the stores' own sales leave alone (the load tool's probe product).
    pub exclude_from_sales: Vec<String>,
    /// Streams sharing one HTTP/2 connection; 1 (the default) is what real stores do.
    pub stores_per_connection: usize,
    /// How long opening a stream and getting `Welcome` may take before the store retries. A
    /// node waits as long as its connection lives; this is only a safety net, long enough not
    /// to add retries of its own to a slow hub's load.
    pub welcome_timeout: Duration,
    /// Stores that note when they see this product's global stock reach a target.
    pub watch: Option<Arc<GlobalWatch>>,
}

impl SimConfig {
    pub fn new(hub: HubTarget) -> SimConfig {
        SimConfig {
            hub,
            sale_every: None,
            exclude_from_sales: Vec::new(),
            stores_per_connection: 1,
            welcome_timeout: Duration::from_secs(120),
            watch: None,
        }
    }
}

/// A running fleet of simulated stores; stopped by [`Fleet::stop`] (or aborted on drop).
pub struct Fleet {
    stores: Vec<Arc<store::Store>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    shared: Arc<store::Shared>,
}

impl Fleet {
    /// Starts one task per store; each dials the hub (stores grouped `stores_per_connection`
    /// to a connection) and keeps its stream up until stopped.
    pub fn start(config: SimConfig, enrolled: Vec<Enrolled>) -> Result<Fleet, LoadError> {
        Self::start_counting(config, enrolled, ErrorCounts::default())
    }

    /// As [`Fleet::start`], counting errors into `errors`.
    pub fn start_counting(
        config: SimConfig,
        enrolled: Vec<Enrolled>,
        errors: ErrorCounts,
    ) -> Result<Fleet, LoadError> {
        let shared = Arc::new(store::Shared {
            epoch: Instant::now(),
            sale_every: config.sale_every.filter(|d| !d.is_zero()),
            welcome_timeout: config.welcome_timeout,
            exclude: Arc::new(
                config
                    .exclude_from_sales
                    .iter()
                    .cloned()
                    .collect::<HashSet<_>>(),
            ),
            errors,
            watch: config.watch.clone(),
        });
        let stop = CancellationToken::new();
        let per_connection = config.stores_per_connection.max(1);
        let mut stores = Vec::with_capacity(enrolled.len());
        let mut tasks = Vec::with_capacity(enrolled.len());
        let mut channel = None;
        for (idx, e) in enrolled.into_iter().enumerate() {
            let id = ActorId::parse(&e.id)
                .map_err(|err| LoadError::Settings(format!("store id {:?}: {err}", e.id)))?;
            if idx % per_connection == 0 || channel.is_none() {
                channel = Some(config.hub.lazy_channel()?);
            }
            let store = Arc::new(store::Store {
                idx,
                id,
                credential: e.credential,
                counters: Default::default(),
                sell: Mutex::new(None),
                wake: Notify::new(),
            });
            tasks.push(tokio::spawn(store::run(
                store.clone(),
                shared.clone(),
                channel.clone().expect("set above"),
                stop.clone(),
            )));
            stores.push(store);
        }
        Ok(Fleet {
            stores,
            tasks: Mutex::new(tasks),
            stop,
            shared,
        })
    }

    pub fn len(&self) -> usize {
        self.stores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    pub fn ids(&self) -> Vec<String> {
        self.stores.iter().map(|s| s.id.to_string()).collect()
    }

    pub fn errors(&self) -> &ErrorCounts {
        &self.shared.errors
    }

    /// Fleet indexes of the stores connected now.
    pub fn connected_indexes(&self) -> Vec<usize> {
        self.stores
            .iter()
            .filter(|s| s.counters.connected.load(Ordering::Acquire))
            .map(|s| s.idx)
            .collect()
    }

    pub fn connected(&self) -> usize {
        self.connected_indexes().len()
    }

    pub fn snapshot(&self) -> FleetSnapshot {
        FleetSnapshot {
            at: Instant::now(),
            stores: self
                .stores
                .iter()
                .map(|s| s.counters.snapshot(s.id.as_str(), self.shared.epoch))
                .collect(),
        }
    }

    /// Waits until every store is connected; returns how long that took from this call.
    /// `progress` gets the count of connected stores as it grows.
    pub async fn wait_connected(
        &self,
        timeout: Duration,
        progress: impl Fn(usize),
    ) -> Result<Duration, LoadError> {
        let start = Instant::now();
        self.wait_all(
            start,
            timeout,
            "every simulated store connected",
            progress,
            |s| s.counters.connected.load(Ordering::Acquire),
        )
        .await
    }

    /// Waits until every store has had a session that began (got `Welcome`) after `since`
    /// (e.g. a hub restart); returns the time from `since` to the last of them.
    pub async fn wait_reconnected(
        &self,
        since: Instant,
        timeout: Duration,
        progress: impl Fn(usize),
    ) -> Result<Duration, LoadError> {
        let epoch = self.shared.epoch;
        let after = since.saturating_duration_since(epoch).as_micros() as u64 + 1;
        self.wait_all(
            since,
            timeout,
            "every simulated store back",
            progress,
            |s| {
                s.counters.welcome_us.load(Ordering::Acquire) > after
                    && s.counters.connected.load(Ordering::Acquire)
            },
        )
        .await?;
        // The last Welcome, not the moment this poll noticed it.
        let last = self
            .stores
            .iter()
            .map(|s| {
                s.counters
                    .welcome_us
                    .load(Ordering::Acquire)
                    .saturating_sub(1)
            })
            .max()
            .unwrap_or(0);
        Ok((epoch + Duration::from_micros(last)).saturating_duration_since(since))
    }

    async fn wait_all(
        &self,
        start: Instant,
        timeout: Duration,
        what: &str,
        progress: impl Fn(usize),
        done: impl Fn(&store::Store) -> bool,
    ) -> Result<Duration, LoadError> {
        let deadline = start + timeout;
        loop {
            let n = self.stores.iter().filter(|s| done(s)).count();
            progress(n);
            if n == self.stores.len() {
                return Ok(start.elapsed());
            }
            if Instant::now() > deadline {
                return Err(LoadError::Timeout {
                    what: format!("{what} ({n} of {})", self.stores.len()),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks store `idx` to sell one unit of `product` now; returns when it did, or `None`
    /// (no rights, not connected in time, no such store).
    pub async fn sell(&self, idx: usize, product: &str, timeout: Duration) -> Option<Instant> {
        let store = self.stores.get(idx)?;
        let (reply, answer) = oneshot::channel();
        *store.sell.lock().unwrap_or_else(|p| p.into_inner()) = Some(store::SellRequest {
            product: product.to_string(),
            reply,
        });
        store.wake.notify_one();
        tokio::time::timeout(timeout, answer).await.ok()?.ok()?
    }

    /// Stops every store (their streams end) and waits for their tasks.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            t.abort();
        }
    }
}
