//! HTTP handlers for orders.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{CreateOrderRequest, OrderStatus, OrderView, StatusRequest, parse_lines};
use super::service;
use super::store;
use crate::error::{Error, Problem, Result};
use crate::http::extract::{ApiJson, ApiQuery, IdempotencyKey, PathId};
use crate::http::page::{Page, PageParams, PageRequest};
use crate::idempotency::{self, Stored};
use crate::state::AppState;
use crate::users::AuthUser;

/// How long an order waits for the hub to grant more stock rights.
const TOP_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(400);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(set_status))
}

/// Places an order. Retrying with the same `Idempotency-Key` returns the first response and
/// consumes stock once.
#[utoipa::path(post, path = "/v1/orders",
    description = "Stock is taken when the order is placed: if this store may not sell that many, the \
        answer is 409 `insufficient-stock` with `product_id`, `requested`, `available_here` \
        and `global`, and no order exists. The order waits in `pending_payment` until paid.",
    tag = "orders", security(("bearer" = [])),
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = OrderView), (status = 400, body = Problem),
        (status = 401, body = Problem),
        (status = 409, body = Problem, description = "not enough stock at this store; carries `available_here` and `global`"),
        (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "`resyncing`: this store was restored from an older copy of its database and waits for the hub before selling this product again")))]
async fn create_order(
    State(state): State<AppState>,
    auth: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<CreateOrderRequest>,
) -> Result<Stored> {
    let lines = parse_lines(&req.items).inspect_err(|_| crate::observability::order_rejected())?;
    let canonical = serde_json::to_string(&req).map_err(|e| Error::Internal(e.to_string()))?;
    // Short of rights for a line while the hub is reachable: ask it for a top-up, wait a bounded
    // time, and try again (at most once per line).
    let mut attempts = 0;
    let stored = loop {
        let (st, job_lines, canonical, key) =
            (state.clone(), lines.clone(), canonical.clone(), key.clone());
        let outcome = state
            .db
            .write(move |tx| {
                idempotency::once(
                    tx,
                    st.idempotency,
                    auth.id,
                    "orders",
                    key.as_deref(),
                    &canonical,
                    StatusCode::CREATED,
                    || service::capture(tx, &st, auth.id, &job_lines),
                )
            })
            .await;
        let shortfall = match &outcome {
            Err(Error::Conflict {
                kind: "insufficient-stock",
                extra,
                ..
            }) if attempts < lines.len() && state.sync.is_connected() => {
                let figure = |k: &str| extra.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
                let product = extra
                    .get("product_id")
                    .and_then(|v| v.as_str())
                    .and_then(|p| uuid::Uuid::parse_str(p).ok());
                product.map(|p| {
                    (
                        p,
                        (figure("requested") - figure("available_here")).max(1) as u64,
                    )
                })
            }
            _ => None,
        };
        let Some((product, missing)) = shortfall else {
            break outcome;
        };
        attempts += 1;
        if state
            .sync
            .top_up(product, missing, TOP_UP_WAIT)
            .await
            .unwrap_or(0)
            <= 0
        {
            // Nothing more to be had now: answer with this store's figures.
            break outcome;
        }
    };
    crate::observability::order_outcome(&stored);
    stored
}

/// Your orders (admins see every order).
#[utoipa::path(get, path = "/v1/orders",
    description = "Oldest first, cursor-paginated; each order with its items, payments and status \
        history.",
    tag = "orders", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<OrderView>), (status = 400, body = Problem),
        (status = 401, body = Problem)))]
async fn list_orders(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<OrderView>>> {
    let page = PageRequest::try_from(&params)?;
    let owner = (!auth.is_admin()).then_some(auth.id);
    let views = state
        .db
        .read(move |c| {
            let rows = store::list(c, owner, page)?;
            let page = Page::from_rows(rows, page, |o| o.id);
            let items = page
                .items
                .iter()
                .filter_map(|o| service::load(c, o.id).transpose())
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, Error>(Page {
                items,
                next_page_token: page.next_page_token,
            })
        })
        .await?;
    Ok(Json(views))
}

/// One order with its items, payments and status history.
#[utoipa::path(get, path = "/v1/orders/{id}",
    description = "Someone else's order is 404, never 403.",
    tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OrderView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_order(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<Json<OrderView>> {
    state
        .db
        .read(move |c| service::load(c, id))
        .await?
        .filter(|o| auth.may_access(o.user_id))
        .map(Json)
        .ok_or(Error::NotFound("order"))
}

/// Cancels an order (owner or admin): stock is released; a paid order is refunded.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel",
    description = "Possible until the order has shipped; its units go back to this store's stock, and a \
        captured payment is refunded in full.",
    tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OrderView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the order can no longer be cancelled")))]
async fn cancel_order(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<Json<OrderView>> {
    let st = state.clone();
    let view = state
        .db
        .write(move |tx| {
            let order = store::get(tx, id)?
                .filter(|o| auth.may_access(o.user_id))
                .ok_or(Error::NotFound("order"))?;
            let reason = if auth.id == order.user_id {
                "cancelled by customer"
            } else {
                "cancelled by staff"
            };
            crate::saga::cancel(tx, &st, id, &service::user_actor(auth.id), Some(reason))?;
            service::load(tx, id)?.ok_or(Error::NotFound("order"))
        })
        .await?;
    Ok(Json(view))
}

/// Moves a paid order to `shipped`, or a shipped one to `delivered` (admin).
#[utoipa::path(post, path = "/v1/orders/{id}/status",
    description = "Only `paid` to `shipped` and `shipped` to `delivered`; any other move is 409.",
    tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = StatusRequest,
    responses((status = 200, body = OrderView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "illegal transition"),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn set_status(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<OrderView>> {
    auth.require_admin()?;
    if !matches!(req.status, OrderStatus::Shipped | OrderStatus::Delivered) {
        return Err(Error::invalid(
            "status",
            "must be shipped or delivered (payment and cancellation have their own endpoints)",
        ));
    }
    let st = state.clone();
    let view = state
        .db
        .write(move |tx| {
            crate::saga::change_status(
                tx,
                &st,
                id,
                req.status,
                &service::user_actor(auth.id),
                None,
            )?;
            service::load(tx, id)?.ok_or(Error::NotFound("order"))
        })
        .await?;
    Ok(Json(view))
}
