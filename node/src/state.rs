//! Shared state handed to every request handler.

use std::sync::Arc;

use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::money::Currency;

use crate::db::Db;
use crate::users::auth::{JwtKeys, PasswordHasher};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub node_id: ActorId,
    pub clock: Clock,
    pub jwt: JwtKeys,
    pub passwords: PasswordHasher,
    pub currency: Currency,
    pub low_stock_threshold: u64,
    pub offline_card_limit: i64,
    pub offline_card_total: i64,
    pub hub_configured: bool,
    /// Seconds without a touch before the kiosk app signs its shopper out (`--kiosk-idle-secs`).
    pub kiosk_idle_secs: u64,
    /// How long idempotency keys are honoured (`--idempotency-retention-secs`).
    pub idempotency: crate::idempotency::Retention,
    /// Where the database lives, with the change-log watermark and restore marker beside it
    /// (`sync::watermark`).
    pub data_dir: std::path::PathBuf,
    pub sync: Arc<crate::sync::SyncHandle>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
