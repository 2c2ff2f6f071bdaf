//! HTTP handlers for notifications.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{self, NotificationView};
use crate::error::{Problem, Result};
use crate::http::extract::ApiQuery;
use crate::http::page::{Page, PageParams, PageRequest};
use crate::state::AppState;
use crate::users::AuthUser;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_notifications))
}

/// The caller's notification history, oldest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
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
