//! `GET /v1/status`: what a shop front needs to know about this store right now, public and
//! read-only. The kiosk app polls it to show "Offline" and the card limits, and to learn its idle
//! timeout; it carries no internals (no sequence numbers, no node id, no backlog), so it needs no
//! auth. Replication details stay behind the admin-only `/v1/sync/status`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(store_status))
}

/// The state of this store's link to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HubLink {
    /// The sync stream to the hub is up.
    Connected,
    /// A hub is configured but unreachable: the store keeps selling, card payments are limited.
    Disconnected,
    /// No hub is configured: the store runs on its own.
    Standalone,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreStatus {
    pub hub: HubLink,
    /// While the hub is unreachable: the largest card payment accepted (minor units).
    pub offline_card_limit: i64,
    /// While the hub is unreachable: the most card money held accepted and not yet charged
    /// (minor units).
    pub offline_card_total: i64,
    /// The store's currency (ISO 4217); every price and order is in it.
    #[schema(example = "USD")]
    pub currency: String,
    /// Seconds without a touch after which the kiosk app signs its shopper out.
    pub kiosk_idle_secs: u64,
}

/// The store's link to the hub, its offline card limits and its currency (public).
#[utoipa::path(get, path = "/v1/status", tag = "operations",
    description = "Public and read-only: the state of this store's link to the hub \
        (`connected`, `disconnected` while the hub is unreachable, `standalone` without a hub), \
        the card limits that apply while offline, the store's currency and the kiosk's idle \
        timeout. Never cached: clients poll it to show when the store is offline.",
    responses((status = 200, description = "The store's status", body = StoreStatus)))]
async fn store_status(State(state): State<AppState>) -> impl IntoResponse {
    let hub = match (state.hub_configured, state.sync.is_connected()) {
        (false, _) => HubLink::Standalone,
        (true, true) => HubLink::Connected,
        (true, false) => HubLink::Disconnected,
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(StoreStatus {
            hub,
            offline_card_limit: state.offline_card_limit,
            offline_card_total: state.offline_card_total,
            currency: state.currency.as_str().to_string(),
            kiosk_idle_secs: state.kiosk_idle_secs,
        }),
    )
}
