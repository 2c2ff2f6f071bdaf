//! # edgecart-hub
//!
//! The centre of an edgecart shop: reconciles the store nodes over one gRPC stream each,
//! merges their bounded stock counters, allocates selling rights, arbitrates account emails,
//! keeps read copies of orders, and serves admin services to operators.
//!
//! # Layout
//! - [`config`]: command line / environment (`EDGECART_*`).
//! - [`db`]: the SQLite file (a group-committing writer, a pool of readers, embedded
//!   migrations from `migrations/hub/`).
//! - [`store`]: SQL per kind of data (catalog, users, stock cells, orders, nodes, the outbox).
//! - [`replication`]: applying node changes, receiving and allocating stock, top-ups, snapshots.
//! - [`allocation`]: the allocation policy (pure arithmetic, unit-tested).
//! - [`figures`]: global stock figures in memory, and the per-store digests made of them.
//! - [`sync`]: the `Sync` bidirectional stream service (and the bound on Hellos at once).
//! - [`admin`]: the admin services (catalog, inventory, nodes, orders).
//! - [`payments`]: the payment ledger, providers, the charging worker, `PaymentAdmin`.
//! - [`observability`]: the metrics contract (docs/metrics.md) on `--metrics-addr`.
//! - [`telemetry`]: logging set-up (`--log-format`).
//! - [`auth`]: bearer-token checks. [`error`]: `HubError` → `tonic::Status`, once.

pub mod accounts;
pub mod admin;
pub mod allocation;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod figures;
pub mod node_admin;
pub mod observability;
pub mod payments;
pub mod replication;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::sync::{CategoryPayload, ProductPayload};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

pub use config::Config;
pub use state::Hub;
pub use telemetry::init as init_telemetry;

/// Opens the database and builds the hub's state (seeding the demo catalog when asked).
pub async fn build(config: &Config) -> anyhow::Result<Hub> {
    // Stores present credentials the hub issued (NodeAdmin/EnrollNode), no shared token.
    if config.admin_token.len() < 16 {
        anyhow::bail!("--admin-token must be at least 16 characters");
    }
    // Empty: unset (an orchestrator's way of removing it).
    if config
        .bootstrap_token
        .as_ref()
        .is_some_and(|t| !t.is_empty() && (t.len() < 16 || *t == config.admin_token))
    {
        anyhow::bail!("--bootstrap-token must be at least 16 characters and not the admin token");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = db::Db::open(&config.db_path()).context("opening the hub database")?;
    let hub = Hub::with_hello_concurrency(
        db,
        Clock::new(ActorId::hub()),
        &config.admin_token,
        config.hello_concurrency,
    );
    if config.demo {
        seed_demo(&hub).await?;
    }
    let cells = hub
        .db
        .read(store::stock::figure_cells)
        .await
        .context("reading the stock figures")?;
    hub.figures
        .merge(cells.iter().map(|(p, e)| (p.as_str(), e)));
    tracing::debug!(products = hub.figures.len(), "stock figures loaded");
    Ok(hub)
}

/// Admin services require the admin token on every call.
#[derive(Clone)]
struct AdminAuth(std::sync::Arc<str>);

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        auth::check(req.metadata(), &self.0, "admin")?;
        Ok(req)
    }
}

fn admin_only<S>(hub: &Hub, service: S) -> InterceptedService<S, AdminAuth> {
    InterceptedService::new(service, AdminAuth(hub.admin_token.clone()))
}

/// How long a shutdown waits for open connections to finish after every Sync stream was told
/// to end; then they are dropped (an orchestrator's grace period is typically 30 s: stay well
/// inside it).
const DRAIN: Duration = Duration::from_secs(3);
/// How long a shutdown waits for the payment worker's current step (e.g. a provider call).
const WORKER_STOP: Duration = Duration::from_secs(2);

/// Serves the hub on `listener` until `shutdown` resolves, then stops within a few seconds
/// whatever is connected: no new connections; every Sync stream ends with `UNAVAILABLE` "hub
/// shutting down" (its node reconnects with back-off) after writing down the node's
/// acknowledged cursor; the payment worker stops between steps.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let tls = tls_config(&config, addr)?;
    let hub = build(&config).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::sync_server::SyncServer<sync::SyncService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let admin = || admin::Admin { hub: hub.clone() };
    let provider: std::sync::Arc<dyn payments::Provider> = match config.payment_provider {
        config::ProviderKind::Sim => std::sync::Arc::new(payments::SimulatedProvider::default()),
        config::ProviderKind::Http => {
            let url = config
                .provider_url
                .as_deref()
                .context("--payment-provider http needs --provider-url")?;
            let key = config
                .provider_key
                .as_deref()
                .context("--payment-provider http needs --provider-key")?;
            std::sync::Arc::new(payments::HttpProvider::new(url, key)?)
        }
    };
    let provider: std::sync::Arc<dyn payments::Provider> =
        std::sync::Arc::new(observability::InstrumentedProvider(provider));
    let stop_worker = tokio_util::sync::CancellationToken::new();
    // Long-lived Sync streams never end by themselves: tonic's graceful shutdown would wait for
    // them forever. The signal therefore also cancels this token, which ends them.
    let stop_streams = tokio_util::sync::CancellationToken::new();
    let signal = {
        let stop_streams = stop_streams.clone();
        async move {
            shutdown.await;
            stop_streams.cancel();
        }
    };
    let metrics = match config.metrics_addr {
        Some(addr) => Some(tokio::spawn(observability::serve(
            observability::bind(addr).await?,
            hub.clone(),
            stop_worker.clone(),
        ))),
        None => None,
    };
    let worker = tokio::spawn(payments::worker::run(
        hub.clone(),
        provider,
        stop_worker.clone(),
    ));
    tracing::info!(%addr, tls = tls.is_some(), "listening on grpc://{addr}");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .layer(observability::GrpcLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::sync_server::SyncServer::new(sync::SyncService {
            hub: hub.clone(),
            shutdown: stop_streams.clone(),
        }))
        .add_service(pb::accounts_server::AccountsServer::new(
            accounts::AccountsService::new(hub.clone()),
        ))
        .add_service(admin_only(
            &hub,
            pb::catalog_admin_server::CatalogAdminServer::new(admin()),
        ))
        .add_service(admin_only(
            &hub,
            pb::inventory_admin_server::InventoryAdminServer::new(admin()),
        ))
        // The bootstrap token may call EnrollNode only (checked in each method).
        .add_service(InterceptedService::new(
            pb::node_admin_server::NodeAdminServer::new(admin()),
            auth::NodeAdminAuth::new(&hub.admin_token, config.bootstrap_token.as_deref()),
        ))
        .add_service(admin_only(
            &hub,
            pb::order_admin_server::OrderAdminServer::new(admin()),
        ))
        .add_service(admin_only(
            &hub,
            pb::payment_admin_server::PaymentAdminServer::new(payments::admin::PaymentAdmin {
                hub: hub.clone(),
            }),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    // Boxed, not pinned on the stack: dropping it below must close the listener and the
    // connections still open.
    let mut server = Box::pin(server);
    // A peer that stops reading (or an admin call stuck on a lock) must not hold the exit:
    // past `DRAIN` the remaining connections are dropped with the server.
    tokio::select! {
        served = &mut server => served?,
        _ = async { stop_streams.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!(after_ms = DRAIN.as_millis() as u64, "connections still open: closing them");
        }
    }
    drop(server);
    stop_worker.cancel();
    if tokio::time::timeout(WORKER_STOP, worker).await.is_err() {
        // Its state is in the ledger: the next start resumes (a charge in flight is asked for
        // again under the same idempotency key).
        tracing::warn!("the payment worker did not stop in time; leaving it");
    }
    if let Some(task) = metrics {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The TLS settings of the gRPC port. Without TLS the hub serves plaintext on loopback only,
/// unless `--allow-plaintext`: store credentials and customer data cross that port.
fn tls_config(
    config: &Config,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        if !addr.ip().is_loopback() && !config.allow_plaintext {
            anyhow::bail!(
                "refusing to serve plaintext gRPC on {addr}, a non-loopback address: configure TLS \
                 with --tls-cert PEM --tls-key PEM (or pass --allow-plaintext behind a \
                 TLS-terminating proxy or on a network you trust)"
            );
        }
        return Ok(None);
    };
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
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

/// (category, [(name, description, price in cents, units delivered to the hub)])
type DemoProduct = (&'static str, &'static str, i64, u64);
const DEMO: &[(&str, &[DemoProduct])] = &[
    (
        "Coffee",
        &[
            (
                "Espresso beans 1kg",
                "Dark roast, notes of cocoa and cherry",
                2499,
                120,
            ),
            ("Filter coffee 500g", "Light roast from Ethiopia", 1399, 80),
            ("Decaf 250g", "Swiss-water process", 899, 12),
        ],
    ),
    (
        "Equipment",
        &[
            ("Hand grinder", "Conical steel burrs", 8900, 20),
            ("Pour-over kettle", "Gooseneck, 1 litre", 4500, 30),
        ],
    ),
    ("Snacks", &[("Almond biscotti", "Box of 12", 650, 200)]),
];

async fn seed_demo(hub: &Hub) -> anyhow::Result<()> {
    let clock = hub.clock.clone();
    hub.db
        .write(move |tx| {
            if !store::catalog::all_product_ids(tx)?.is_empty() {
                return Ok(());
            }
            let now = store::now_ms();
            for (category, products) in DEMO {
                let cat = CategoryPayload {
                    id: edgecart_proto::ids::new_id().to_string(),
                    name: category.to_string(),
                    description: String::new(),
                    created_at: now,
                };
                store::catalog::apply_category(tx, &cat, &clock.now().to_string())?;
                for (name, description, price, units) in *products {
                    let p = ProductPayload {
                        id: edgecart_proto::ids::new_id().to_string(),
                        name: name.to_string(),
                        description: description.to_string(),
                        price_amount: *price,
                        currency: "USD".into(),
                        category_id: Some(cat.id.clone()),
                        status: "active".into(),
                        created_at: now,
                        updated_at: now,
                    };
                    store::catalog::apply_product(tx, &p, &clock.now().to_string())?;
                    replication::receive_stock(tx, &clock, &p.id, *units)?;
                }
            }
            tracing::info!("demo catalog seeded at the hub");
            Ok(())
        })
        .await?;
    Ok(())
}
