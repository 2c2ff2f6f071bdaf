//! # edgecart-node
//!
//! One store's whole shop — users, catalog and inventory, orders, payments, notifications — in
//! one SQLite file, behind the REST storefront API. Runs standalone (offline) or, later, synced
//! with the hub.
//!
//! # Layout
//! - [`config`]: the command line / environment (`EDGECART_*`).
//! - [`db`]: one group-committing writer thread + a pool of readers; embedded migrations.
//! - [`error`]: the API's error type and its single mapping to RFC 9457 problem JSON.
//! - [`http`]: router assembly, extractors, pagination, health, metrics, OpenAPI.
//! - [`users`], [`catalog`], [`orders`], [`payments`], [`notifications`]: the bounded contexts,
//!   each `model` (domain types and rules), `store` (SQL), `routes` (HTTP).
//! - [`events`]: domain events, delivered to subscribers inside the publishing transaction.
//! - [`idempotency`]: `Idempotency-Key` replay for POSTs.
//! - [`sync`]: the change log (outbox) the hub will consume, and `/v1/sync/status`.
//! - [`demo`]: the demo catalog seeded by `--demo`.
//! - [`observability`]: the metrics contract (docs/metrics.md) and the scrape-time gauges.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod catalog;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod notifications;
pub mod observability;
pub mod orders;
pub mod payments;
pub mod saga;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod time;
pub mod users;

use std::future::{Future, IntoFuture};

use anyhow::Context;
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::money::Currency;
use tokio::net::TcpListener;

pub use config::Config;

use crate::db::{Db, DbConfig};
use crate::state::{AppState, Inner};
use crate::users::auth::{JwtKeys, PasswordHasher};

/// Opens the database and builds the application state (bootstrap admin and demo data included).
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let node_id = ActorId::parse(&config.node_id).context("--node-id")?;
    let currency = Currency::parse(&config.currency).context("--currency")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let secret = crate::users::auth::signing_key(config.jwt_secret.as_deref(), &config.data_dir)
        .map_err(|e| {
            anyhow::anyhow!("the JWT signing key (--jwt-secret or DATA_DIR/jwt.key): {e}")
        })?;
    let db = Db::open(&DbConfig {
        path: config.db_path(),
        durability: config.sqlite_synchronous,
        max_batch: config.group_commit_max,
        readers: config.readers,
    })
    .context("opening the database")?;
    time::set_offset_ms(config.clock_offset_ms);
    let (_, last_seq) = db.read(sync::changelog::cursors).await?;
    // Only a node with a hub can be re-synced; a standalone one goes on from its copy.
    let marker = sync::watermark::marker(&config.data_dir);
    let restored = config.hub_url.is_some()
        && sync::watermark::restore_noticed(&config.data_dir, last_seq).await;
    if restored {
        // Kept across restarts until the hub has re-synced this node: the change log's
        // numbers alone cannot tell once new entries pass the watermark.
        sync::watermark::set_marker(&marker, last_seq)
            .await
            .with_context(|| format!("writing {}", marker.display()))?;
        tracing::warn!(
            last_seq,
            "this database is older than what this node had written (restored from a copy?): \
             products it sold before wait for the hub's re-sync before selling again"
        );
    }
    let me = node_id.clone();
    db.write(move |tx| catalog::inventory::remember_boot_cells(tx, &me, restored))
        .await?;
    let clock = Clock::with_time_source(node_id.clone(), || {
        u64::try_from(time::now_ms()).unwrap_or(0)
    });
    // The clock must never run behind what this node already wrote (e.g. after a restart on a
    // machine whose wall clock went back).
    if let Some(last) = db.read(sync::changelog::last_version).await?
        && let Ok(ts) = last.parse()
    {
        clock.observe(&ts);
    }
    let state = AppState::new(Inner {
        db,
        node_id,
        clock,
        jwt: JwtKeys::new(&secret, config.jwt_ttl_secs),
        passwords: PasswordHasher::new(2)?,
        currency,
        low_stock_threshold: config.low_stock_threshold,
        offline_card_limit: config.offline_card_limit,
        offline_card_total: config.offline_card_total,
        hub_configured: config.hub_url.is_some(),
        kiosk_idle_secs: config.kiosk_idle_secs,
        idempotency: idempotency::Retention::from_secs(config.idempotency_retention_secs),
        data_dir: config.data_dir.clone(),
        sync: Default::default(),
        metrics: http::health::metrics_handle(),
    });
    state.sync.set_holding_for_restore(restored);
    demo::bootstrap(&state, config).await?;
    Ok(state)
}

/// How long a shutdown waits for in-flight requests (the request timeout is longer) before
/// dropping them: a stop must stay well inside an orchestrator's grace period.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a shutdown waits for the webhook sender's current delivery.
const WEBHOOKS_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the API on `listener` until `shutdown` resolves, then stops within a few seconds:
/// no new connections, in-flight requests finish (for up to `DRAIN`), the sync stream closes
/// (the hub resumes from the acknowledged cursors at the next start), the background tasks end.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node_id = %state.node_id, "listening on http://{addr}");
    if config.demo && config.hub_url.is_none() {
        demo::print_banner(addr);
    }
    // Before the sync task: on a bad webhook setting, nothing has been spawned yet.
    let stop_webhooks = tokio_util::sync::CancellationToken::new();
    let webhook_task =
        notifications::webhook::start(&state, &config, stop_webhooks.clone()).await?;
    let stop_sync = tokio_util::sync::CancellationToken::new();
    let watermark_task = tokio::spawn(sync::watermark::keep(
        state.clone(),
        sync::watermark::path(&config.data_dir),
        stop_sync.clone(),
    ));
    // A standalone node gets no acknowledgements to trim its change log by: it compacts it.
    let compact_task = config.hub_url.is_none().then(|| {
        tokio::spawn(sync::changelog::compact_periodically(
            state.db.clone(),
            std::time::Duration::from_secs(config.changelog_compact_secs),
            stop_sync.clone(),
        ))
    });
    let hub_ca = match &config.hub_ca {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("reading --hub-ca {}", path.display()))?,
        ),
        None => None,
    };
    let link = |url: &String| sync::client::HubLink {
        url: url.clone(),
        ca_pem: hub_ca.clone(),
    };
    let sync_task = match (&config.hub_url, &config.hub_token) {
        (Some(url), Some(token)) => Some(tokio::spawn(sync::client::run(
            state.clone(),
            link(url),
            token.clone(),
            stop_sync.clone(),
        ))),
        // Enrolled with a bootstrap token (now, or before: the credential is kept).
        (Some(url), None) => {
            let bootstrap = config.hub_bootstrap_token.clone().unwrap_or_default();
            if bootstrap.is_empty() && !sync::bootstrap::credential_path(&config.data_dir).exists()
            {
                anyhow::bail!("--hub-url needs --hub-token (or --hub-bootstrap-token)");
            }
            Some(tokio::spawn(sync::bootstrap::run(
                state.clone(),
                link(url),
                bootstrap,
                stop_sync.clone(),
            )))
        }
        _ => None,
    };
    let stopping = tokio_util::sync::CancellationToken::new();
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    };
    let server = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(signal)
        .into_future();
    // Boxed, not pinned on the stack: dropping it below must close the listener and the
    // connections still open.
    let mut server = Box::pin(server);
    // The sync stream stays up while requests drain: an order may be waiting for a top-up.
    tokio::select! {
        served = &mut server => served?,
        _ = async { stopping.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!(after_ms = DRAIN.as_millis() as u64, "requests still in flight: dropping them");
        }
    }
    drop(server);
    stop_sync.cancel();
    if let Some(task) = sync_task {
        let _ = task.await;
    }
    let _ = watermark_task.await;
    if let Some(task) = compact_task {
        let _ = task.await;
    }
    stop_webhooks.cancel();
    if let Some(task) = webhook_task
        && tokio::time::timeout(WEBHOOKS_STOP, task).await.is_err()
    {
        // Undelivered notifications stay in the outbox and go out at the next start.
        tracing::warn!("the webhook sender did not stop in time; leaving it");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
