//! HTTP handlers for payments and refunds.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{CardToken, Method, PaymentRequest, PaymentView, RefundRequest};
use super::store;
use crate::error::{Error, Problem, Result};
use crate::http::extract::{ApiJson, IdempotencyKey, PathId};
use crate::idempotency::{self, Stored};
use crate::orders::store as order_store;
use crate::state::AppState;
use crate::users::AuthUser;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment))
        .routes(routes!(get_payment))
        .routes(routes!(create_refund))
}

/// Pays for an order: `cash` is captured at once (the order becomes `paid`); `card` is recorded
/// `pending` until the hub has charged the provider.
#[utoipa::path(post, path = "/v1/orders/{id}/payments",
    description = "While the hub is unreachable, a card payment up to `--offline-card-limit` (and \
        within `--offline-card-total` held) is accepted as `authorized_offline` and charged \
        when the link is back; see `GET /v1/status`.",
    tag = "payments", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = PaymentRequest,
    responses((status = 201, body = PaymentView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "order not payable, or already being paid"),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_payment(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(order_id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<PaymentRequest>,
) -> Result<Stored> {
    let card = match (req.method, req.card_token.as_deref()) {
        (Method::Card, Some(token)) => Some(CardToken::parse(token)?),
        (Method::Card, None) => {
            return Err(Error::invalid(
                "card_token",
                "is required for card payments",
            ));
        }
        (Method::Cash, Some(_)) => {
            return Err(Error::invalid(
                "card_token",
                "must not be sent for cash payments",
            ));
        }
        (Method::Cash, None) => None,
    };
    let canonical = format!(
        "{order_id}:{}",
        serde_json::to_string(&req).unwrap_or_default()
    );
    let (st, method) = (state.clone(), req.method.as_str());
    let stored = state
        .db
        .write(move |tx| {
            // Someone else's order is "not found", never "forbidden".
            order_store::get(tx, order_id)?
                .filter(|o| auth.may_access(o.user_id))
                .ok_or(Error::NotFound("order"))?;
            idempotency::once(
                tx,
                st.idempotency,
                auth.id,
                "payments",
                key.as_deref(),
                &canonical,
                StatusCode::CREATED,
                || crate::saga::pay(tx, &st, auth.id, order_id, req.method, card),
            )
        })
        .await;
    crate::observability::payment_created(method, &stored);
    stored
}

/// A payment with its refunds (owner or admin).
#[utoipa::path(get, path = "/v1/payments/{id}",
    description = "Someone else's payment is 404, never 403.",
    tag = "payments", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PaymentView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_payment(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<Json<PaymentView>> {
    let view = state
        .db
        .read(move |c| match store::get(c, id)? {
            Some(p) if auth.may_access(p.user_id) => store::view(c, p).map(Some),
            _ => Ok::<_, Error>(None),
        })
        .await?
        .ok_or(Error::NotFound("payment"))?;
    Ok(Json(view))
}

/// Refunds part or all of a captured payment (admin). Never more than was captured.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds",
    description = "The amount is in minor units of the payment's currency. Cash refunds succeed at \
        once; card refunds are `pending` until the hub has refunded the charge.",
    tag = "payments", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = RefundRequest,
    responses((status = 201, body = PaymentView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the payment is not refundable"),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_refund(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<RefundRequest>,
) -> Result<Stored> {
    auth.require_admin()?;
    if req.amount <= 0 {
        return Err(Error::invalid("amount", "must be positive"));
    }
    let reason = req
        .reason
        .as_deref()
        .map(|r| crate::catalog::model::parse_text("reason", r, 500, true))
        .transpose()?;
    let canonical = format!("{id}:{}", serde_json::to_string(&req).unwrap_or_default());
    let st = state.clone();
    let stored = state
        .db
        .write(move |tx| {
            idempotency::once(
                tx,
                st.idempotency,
                auth.id,
                "refunds",
                key.as_deref(),
                &canonical,
                StatusCode::CREATED,
                || crate::saga::refund(tx, &st, id, req.amount, reason.as_deref()),
            )
        })
        .await?;
    Ok(stored)
}
