//! HTTP handlers for categories, products and stock.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inventory::{self, StockCtx};
use super::model::{
    CategoryView, ProductFilter, ProductStatus, ProductView, StockDelta, StockView, parse_text,
};
use super::store::{self, ProductPatch, ProductRow};
use crate::error::{Error, Problem, Result};
use crate::http::extract::{ApiJson, ApiQuery, IdempotencyKey, PathId};
use crate::http::money::MoneyDto;
use crate::http::page::{Page, PageParams, PageRequest};
use crate::idempotency::{self, Stored};
use crate::state::AppState;
use crate::users::AuthUser;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories, create_category))
        .routes(routes!(search_products, create_product))
        .routes(routes!(get_product, update_product))
        .routes(routes!(receive_stock))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateCategoryRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateProductRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: MoneyDto,
    pub category_id: Option<Uuid>,
    pub status: Option<ProductStatus>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateProductRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<MoneyDto>,
    pub category_id: Option<Uuid>,
    pub status: Option<ProductStatus>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ReceiveStockRequest {
    /// Units received at this store (positive), or written off (negative, within what this
    /// store may sell); non-zero, at most 1 000 000 000 either way.
    #[schema(value_type = i64, minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: StockDelta,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Substring of the name or description (case-insensitive).
    pub q: Option<String>,
    /// Category id.
    pub category: Option<Uuid>,
    /// Lowest price, in minor units.
    pub min_price: Option<i64>,
    /// Highest price, in minor units.
    pub max_price: Option<i64>,
    /// Only products this store can sell now (true) or cannot (false).
    pub in_stock: Option<bool>,
    /// Include archived products.
    pub include_archived: Option<bool>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

impl TryFrom<&ProductQuery> for ProductFilter {
    type Error = Error;
    fn try_from(q: &ProductQuery) -> Result<Self> {
        let text = match q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) if s.chars().count() > 200 => {
                return Err(Error::bad_request(
                    Some("q".into()),
                    "q must be at most 200 characters",
                ));
            }
            other => other.map(str::to_string),
        };
        if let (Some(lo), Some(hi)) = (q.min_price, q.max_price)
            && lo > hi
        {
            return Err(Error::bad_request(
                Some("min_price".into()),
                "min_price must not exceed max_price",
            ));
        }
        Ok(ProductFilter {
            q: text,
            category: q.category,
            min_price: q.min_price,
            max_price: q.max_price,
            in_stock: q.in_stock,
            include_archived: q.include_archived.unwrap_or(false),
        })
    }
}

/// Categories.
#[utoipa::path(get, path = "/v1/categories",
    description = "Public, cursor-paginated.",
    tag = "catalog", params(PageParams),
    responses((status = 200, body = Page<CategoryView>), (status = 400, body = Problem)))]
async fn list_categories(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<CategoryView>>> {
    let page = PageRequest::try_from(&params)?;
    let rows = state
        .db
        .read(move |c| store::list_categories(c, page))
        .await?;
    Ok(Json(Page::from_rows(rows, page, |c| c.id)))
}

/// Creates a category (admin).
#[utoipa::path(post, path = "/v1/categories",
    description = "Names are 1-100 characters; a name already in use is 409.",
    tag = "catalog", security(("bearer" = [])),
    request_body = CreateCategoryRequest,
    responses((status = 201, body = CategoryView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn create_category(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateCategoryRequest>,
) -> Result<(StatusCode, Json<CategoryView>)> {
    auth.require_admin()?;
    let name = parse_text("name", &req.name, 100, false)?;
    let description = parse_text("description", &req.description, 2000, true)?;
    let st = state.clone();
    let view = state
        .db
        .write(move |tx| {
            store::insert_category(
                tx,
                edgecart_proto::ids::new_id(),
                &name,
                &description,
                &st.clock.now(),
                crate::time::now_ms(),
            )
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Searches the catalog.
#[utoipa::path(get, path = "/v1/products",
    description = "Public. Filters combine (AND); archived products are left out unless \
        `include_archived`. Each product carries its stock here and across the chain.",
    tag = "catalog", params(ProductQuery),
    responses((status = 200, body = Page<ProductView>), (status = 400, body = Problem)))]
async fn search_products(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ProductQuery>,
) -> Result<Json<Page<ProductView>>> {
    let filter = ProductFilter::try_from(&query)?;
    let page = PageRequest::parse(query.page_size, query.page_token.as_deref())?;
    let rows = state
        .db
        .read(move |c| store::search(c, &filter, page))
        .await?;
    Ok(Json(Page::from_rows(rows, page, |p| p.id)))
}

/// One product, with its stock here and globally.
#[utoipa::path(get, path = "/v1/products/{id}",
    description = "Public. `stock.available_here` is what this store may sell now; `stock.global` the \
        units across every store, as last known here.",
    tag = "catalog", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductView), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
async fn get_product(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<ProductView>> {
    state
        .db
        .read(move |c| store::get_product(c, id))
        .await?
        .map(Json)
        .ok_or(Error::NotFound("product"))
}

/// Creates a product (admin).
#[utoipa::path(post, path = "/v1/products",
    description = "The price is in the store's currency (422 otherwise), in integer minor units. A new \
        product has no stock until some is received.",
    tag = "catalog", security(("bearer" = [])),
    request_body = CreateProductRequest,
    responses((status = 201, body = ProductView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
async fn create_product(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateProductRequest>,
) -> Result<(StatusCode, Json<ProductView>)> {
    auth.require_admin()?;
    let name = parse_text("name", &req.name, 200, false)?;
    let description = parse_text("description", &req.description, 5000, true)?;
    let price = req.price.parse_price("price", state.currency)?;
    let category_id = req.category_id;
    let status = req.status.unwrap_or(ProductStatus::Active);
    let st = state.clone();
    let view = state
        .db
        .write(move |tx| {
            check_category(tx, category_id)?;
            let row = ProductRow {
                id: edgecart_proto::ids::new_id(),
                name: &name,
                description: &description,
                price_amount: price.amount,
                currency: price.currency.as_str(),
                category_id,
                status,
            };
            store::insert_product(tx, &row, &st.clock.now(), crate::time::now_ms())
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn check_category(conn: &rusqlite::Connection, category_id: Option<Uuid>) -> Result<()> {
    match category_id {
        Some(c) if !store::category_exists(conn, c)? => {
            Err(Error::invalid("category_id", "no such category"))
        }
        _ => Ok(()),
    }
}

/// Updates a product (admin); absent fields stay as they are.
#[utoipa::path(patch, path = "/v1/products/{id}",
    description = "Archiving (`status`: `archived`) hides a product from searches without deleting it.",
    tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateProductRequest,
    responses((status = 200, body = ProductView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn update_product(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    ApiJson(req): ApiJson<UpdateProductRequest>,
) -> Result<Json<ProductView>> {
    auth.require_admin()?;
    let patch = ProductPatch {
        name: req
            .name
            .as_deref()
            .map(|n| parse_text("name", n, 200, false))
            .transpose()?,
        description: req
            .description
            .as_deref()
            .map(|d| parse_text("description", d, 5000, true))
            .transpose()?,
        price_amount: req
            .price
            .as_ref()
            .map(|p| p.parse_price("price", state.currency).map(|m| m.amount))
            .transpose()?,
        category_id: req.category_id,
        status: req.status,
    };
    let st = state.clone();
    let view = state
        .db
        .write(move |tx| {
            check_category(tx, patch.category_id)?;
            store::update_product(tx, id, &patch, &st.clock.now(), crate::time::now_ms())
        })
        .await?;
    Ok(Json(view))
}

/// Records units received at this store (admin).
#[utoipa::path(post, path = "/v1/products/{id}/stock",
    description = "A positive `delta` adds received units to what this store may sell; a negative one \
        writes units off, within what this store may sell (409 beyond). Answers the stock \
        after the change.",
    tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    request_body = ReceiveStockRequest,
    responses((status = 200, body = StockView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn receive_stock(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<ReceiveStockRequest>,
) -> Result<Stored> {
    auth.require_admin()?;
    let delta = req.delta;
    let st = state.clone();
    let canonical = format!("{id}:{}", delta.signed());
    state
        .db
        .write(move |tx| {
            idempotency::once(
                tx,
                st.idempotency,
                auth.id,
                "stock-receipts",
                key.as_deref(),
                &canonical,
                StatusCode::OK,
                || {
                    if store::sellable(tx, id)?.is_none() {
                        return Err(Error::NotFound("product"));
                    }
                    let version = st.clock.now();
                    let ctx = StockCtx::new(&st, &version);
                    match delta {
                        StockDelta::Receive(n) => inventory::receive(tx, &ctx, id, n),
                        StockDelta::WriteOff(n) => inventory::consume(tx, &ctx, id, n),
                    }
                    .map_err(as_delta_error)
                },
            )
        })
        .await
}

/// A stock operation names the units it was given `quantity`; here they came as `delta`. (A
/// cell that would pass the storage bound is such an error: refused, never wrapped.)
fn as_delta_error(e: Error) -> Error {
    match e {
        Error::Invalid { field, detail } if field == "quantity" => Error::invalid("delta", detail),
        other => other,
    }
}
