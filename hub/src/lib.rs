//! # edgecart-hub
//!
//! The centre of an edgecart shop: reconciles the store nodes over one gRPC stream each,
//! merges their bounded stock counters, allocates selling rights, arbitrates account emails,
//! keeps read copies of orders, and serves admin services to operators.
//!
//! # Layout
//! - [`config`]: command line / environment (`EDGECART_*`).
//! - [`db`]: the SQLite file (one connection, embedded migrations from `migrations/hub/`).
//! - [`store`]: SQL per kind of data (catalog, users, stock cells, orders, nodes, the outbox).
//! - [`replication`]: applying node changes, receiving and allocating stock, top-ups, snapshots.
//! - [`allocation`]: the allocation policy (pure arithmetic, unit-tested).
//! - [`sync`]: the `Sync` bidirectional stream service.
//! - [`admin`]: the admin services (catalog, inventory, nodes, orders).
//! - [`payments`]: the payment ledger, providers, the charging worker, `PaymentAdmin`.
//! - [`observability`]: the metrics contract (docs/metrics.md) on `--metrics-addr`.
//! - [`telemetry`]: logging set-up (`--log-format`).
//! - [`auth`]: bearer-token checks. [`error`]: `HubError` → `tonic::Status`, once.

pub mod admin;
pub mod allocation;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
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
    if config.node_token.len() < 16 || config.admin_token.len() < 16 {
        anyhow::bail!("--node-token and --admin-token must be at least 16 characters");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = db::Db::open(&config.db_path()).context("opening the hub database")?;
    let hub = Hub::new(
        db,
        Clock::new(ActorId::hub()),
        &config.node_token,
        &config.admin_token,
    );
    if config.demo {
        seed_demo(&hub).await?;
    }
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

/// Serves the hub on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let hub = build(&config).await?;
    let addr = listener.local_addr()?;
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
    let metrics = match config.metrics_addr {
        Some(addr) => Some(tokio::spawn(observability::serve(
            observability::bind(addr).await?,
            hub.clone(),
            stop_worker.clone(),
        ))),
        None => None,
    };
    let flusher = tokio::spawn(sync::flush_others(hub.clone(), stop_worker.clone()));
    let worker = tokio::spawn(payments::worker::run(
        hub.clone(),
        provider,
        stop_worker.clone(),
    ));
    tracing::info!(%addr, "listening on grpc://{addr}");
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .layer(observability::GrpcLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::sync_server::SyncServer::new(sync::SyncService {
            hub: hub.clone(),
        }))
        .add_service(admin_only(
            &hub,
            pb::catalog_admin_server::CatalogAdminServer::new(admin()),
        ))
        .add_service(admin_only(
            &hub,
            pb::inventory_admin_server::InventoryAdminServer::new(admin()),
        ))
        .add_service(admin_only(
            &hub,
            pb::node_admin_server::NodeAdminServer::new(admin()),
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
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    stop_worker.cancel();
    let _ = worker.await;
    let _ = flusher.await;
    if let Some(task) = metrics {
        let _ = task.await;
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
