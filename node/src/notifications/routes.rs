//! HTTP handlers for notifications.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::registry;
use super::store::{self, DeadLetterView, NotificationView};
use crate::error::{Error, Problem, Result};
use crate::http::extract::{ApiQuery, PathId};
use crate::http::page::{Page, PageParams, PageRequest};
use crate::state::AppState;
use crate::users::AuthUser;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(list_dead_letters))
        .routes(routes!(retry_dead_letter))
}

/// The caller's notification history on every channel, oldest first; `status` shows whether a
/// webhook notification is still `queued`, `delivered`, or `dead` (given up).
#[utoipa::path(get, path = "/v1/notifications",
    description = "Cursor-paginated; only the caller's own notifications.",
    tag = "notifications", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<NotificationView>), (status = 400, body = Problem),
        (status = 401, body = Problem)))]
async fn list_notifications(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<NotificationView>>> {
    let page = PageRequest::try_from(&params)?;
    let rows = state
        .db
        .read(move |c| store::list(c, auth.id, page))
        .await?;
    Ok(Json(Page::from_rows(rows, page, |n| n.id)))
}

/// Webhook notifications given up on after the last attempt, oldest first (admin only).
#[utoipa::path(get, path = "/v1/notifications/dead-letters",
    description = "What needs an operator: each with its last error. Retry one with `POST \
        /v1/notifications/{id}/retry`.",
    tag = "notifications",
    security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<DeadLetterView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_dead_letters(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<DeadLetterView>>> {
    auth.require_admin()?;
    let page = PageRequest::try_from(&params)?;
    let rows = state.db.read(move |c| store::dead_letters(c, page)).await?;
    Ok(Json(Page::from_rows(rows, page, |n| n.id)))
}

/// Puts a dead letter back in the delivery queue with a fresh attempt budget (admin only).
/// Retrying is safe: receivers see the same `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/notifications/{id}/retry",
    description = "Only a dead notification can be retried (409 otherwise).",
    tag = "notifications",
    security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "notification id")),
    responses((status = 200, body = NotificationView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the notification is not dead")))]
async fn retry_dead_letter(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<Json<NotificationView>> {
    auth.require_admin()?;
    let view = state
        .db
        .write(move |tx| {
            if store::get(tx, id)?.is_none() {
                return Err(Error::NotFound("notification"));
            }
            if !store::requeue_dead(tx, id, crate::time::now_ms())? {
                return Err(Error::conflict(
                    "not-dead",
                    "only a dead notification can be retried",
                ));
            }
            registry::wake(tx);
            store::get(tx, id)?.ok_or(Error::NotFound("notification"))
        })
        .await?;
    tracing::info!(%id, "dead letter requeued");
    Ok(Json(view))
}
