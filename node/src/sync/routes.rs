//! `GET /v1/sync/status`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::changelog;
use crate::error::{Problem, Result};
use crate::state::AppState;
use crate::users::AuthUser;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync_status))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub node_id: String,
    /// `standalone` (no hub configured) or `connected` / `disconnected`.
    pub mode: String,
    pub hub_connected: bool,
    pub last_sync_at: Option<String>,
    /// Newest change-log sequence number.
    pub last_seq: i64,
    /// Highest sequence the hub has acknowledged.
    pub acked_seq: i64,
    /// Change-log entries not yet acknowledged by the hub.
    pub pending_changes: i64,
}

/// Replication state (admin).
#[utoipa::path(get, path = "/v1/sync/status",
    description = "Whether the link to the hub is up, when it last synced and how many local changes \
        the hub has not yet acknowledged. The public summary is `GET /v1/status`.",
    tag = "sync", security(("bearer" = [])),
    responses((status = 200, body = SyncStatus), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
async fn sync_status(State(state): State<AppState>, auth: AuthUser) -> Result<Json<SyncStatus>> {
    auth.require_admin()?;
    let backlog = state.db.read(changelog::backlog).await?;
    let connected = state.sync.is_connected();
    let mode = match (state.hub_configured, connected) {
        (false, _) => "standalone",
        (true, true) => "connected",
        (true, false) => "disconnected",
    };
    Ok(Json(SyncStatus {
        node_id: state.node_id.to_string(),
        mode: mode.to_string(),
        hub_connected: connected,
        last_sync_at: backlog.last_sync_at.map(crate::time::rfc3339),
        last_seq: backlog.last_seq,
        acked_seq: backlog.acked_seq,
        pending_changes: backlog.unacknowledged,
    }))
}
