//! SQL for categories and products.

use edgecart_proto::hlc::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;
use uuid::Uuid;

use super::model::{CategoryView, ProductFilter, ProductStatus, ProductView, StockView};
use crate::db::{DbError, Tx, uuid_col};
use crate::error::{Error, Result};
use crate::http::money::money;
use crate::http::page::PageRequest;
use crate::sync::changelog;

pub fn insert_category(
    tx: &Tx,
    id: Uuid,
    name: &str,
    description: &str,
    version: &Timestamp,
    now: i64,
) -> Result<CategoryView> {
    tx.prepare_cached(
        "INSERT INTO categories (id, name, description, created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        id.to_string(),
        name,
        description,
        now,
        version.to_string()
    ])
    .map_err(|e| {
        let e = DbError::from(e);
        if e.is_unique_violation() {
            Error::conflict(
                "category-exists",
                "a category with this name already exists",
            )
        } else {
            e.into()
        }
    })?;
    changelog::append(
        tx,
        "category",
        &id.to_string(),
        version,
        &json!({ "id": id, "name": name, "description": description, "created_at": now }),
    )?;
    Ok(CategoryView {
        id,
        name: name.to_string(),
        description: description.to_string(),
        created_at: crate::time::rfc3339(now),
    })
}

pub fn category_exists(conn: &Connection, id: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM categories WHERE id = ?1")?
        .exists([id.to_string()])?)
}

pub fn list_categories(conn: &Connection, page: PageRequest) -> Result<Vec<CategoryView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, created_at FROM categories WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![page.after_text(), page.fetch_limit()], |r| {
            Ok(CategoryView {
                id: uuid_col(r, 0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                created_at: crate::time::rfc3339(r.get(3)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// A product's replicated fields.
pub struct ProductRow<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    pub price_amount: i64,
    pub currency: &'a str,
    pub category_id: Option<Uuid>,
    pub status: ProductStatus,
}

pub fn insert_product(
    tx: &Tx,
    p: &ProductRow<'_>,
    version: &Timestamp,
    now: i64,
) -> Result<ProductView> {
    tx.prepare_cached(
        "INSERT INTO products (id, name, description, price_amount, currency, category_id, status,
                               created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
    )?
    .execute(params![
        p.id.to_string(),
        p.name,
        p.description,
        p.price_amount,
        p.currency,
        p.category_id.map(|c| c.to_string()),
        p.status.as_str(),
        now,
        version.to_string(),
    ])?;
    record_change(tx, p.id, version)?;
    get_product(tx, p.id)?.ok_or(Error::NotFound("product"))
}

/// A partial update; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_amount: Option<i64>,
    pub category_id: Option<Uuid>,
    pub status: Option<ProductStatus>,
}

pub fn update_product(
    tx: &Tx,
    id: Uuid,
    patch: &ProductPatch,
    version: &Timestamp,
    now: i64,
) -> Result<ProductView> {
    let n = tx
        .prepare_cached(
            "UPDATE products SET name = coalesce(?2, name), description = coalesce(?3, description),
                 price_amount = coalesce(?4, price_amount), category_id = coalesce(?5, category_id),
                 status = coalesce(?6, status), updated_at = ?7, version = ?8
             WHERE id = ?1",
        )?
        .execute(params![
            id.to_string(),
            patch.name,
            patch.description,
            patch.price_amount,
            patch.category_id.map(|c| c.to_string()),
            patch.status.map(ProductStatus::as_str),
            now,
            version.to_string(),
        ])?;
    if n == 0 {
        return Err(Error::NotFound("product"));
    }
    record_change(tx, id, version)?;
    get_product(tx, id)?.ok_or(Error::NotFound("product"))
}

const PRODUCT_SELECT: &str = "SELECT p.id, p.name, p.description, p.price_amount, p.currency,
        p.category_id, p.status, p.created_at, p.updated_at,
        coalesce(s.available_here, 0), coalesce(s.global, 0)
    FROM products p LEFT JOIN stock_levels s ON s.product_id = p.id";

fn row_to_product(r: &Row<'_>) -> rusqlite::Result<ProductView> {
    let currency: String = r.get(4)?;
    let category: Option<String> = r.get(5)?;
    let status: String = r.get(6)?;
    Ok(ProductView {
        id: uuid_col(r, 0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        price: money(r.get(3)?, &currency),
        category_id: category.and_then(|c| Uuid::parse_str(&c).ok()),
        status: ProductStatus::parse(&status),
        created_at: crate::time::rfc3339(r.get(7)?),
        updated_at: crate::time::rfc3339(r.get(8)?),
        stock: StockView {
            available_here: r.get(9)?,
            global: r.get(10)?,
        },
    })
}

pub fn get_product(conn: &Connection, id: Uuid) -> Result<Option<ProductView>> {
    Ok(conn
        .prepare_cached(&format!("{PRODUCT_SELECT} WHERE p.id = ?1"))?
        .query_row([id.to_string()], row_to_product)
        .optional()?)
}

/// Searches the catalog. Every filter is a bound parameter; `q` matches name or description
/// case-insensitively (ASCII) as a plain substring — no pattern syntax, so `%` and `_` are literal.
pub fn search(conn: &Connection, f: &ProductFilter, page: PageRequest) -> Result<Vec<ProductView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{PRODUCT_SELECT}
         WHERE p.id > ?1
           AND (?2 IS NULL OR instr(lower(p.name), ?2) > 0 OR instr(lower(p.description), ?2) > 0)
           AND (?3 IS NULL OR p.category_id = ?3)
           AND (?4 IS NULL OR p.price_amount >= ?4)
           AND (?5 IS NULL OR p.price_amount <= ?5)
           AND (?6 IS NULL OR (coalesce(s.available_here, 0) > 0) = ?6)
           AND (?7 OR p.status = 'active')
         ORDER BY p.id LIMIT ?8"
    ))?;
    let rows = stmt
        .query_map(
            params![
                page.after_text(),
                f.q.as_ref().map(|q| q.to_lowercase()),
                f.category.map(|c| c.to_string()),
                f.min_price,
                f.max_price,
                f.in_stock,
                f.include_archived,
                page.fetch_limit(),
            ],
            row_to_product,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// What an order needs to know of a product: name, unit price, currency, whether it sells.
pub struct Sellable {
    pub name: String,
    pub price_amount: i64,
    pub currency: String,
    pub active: bool,
}

pub fn sellable(conn: &Connection, id: Uuid) -> Result<Option<Sellable>> {
    Ok(conn
        .prepare_cached("SELECT name, price_amount, currency, status FROM products WHERE id = ?1")?
        .query_row([id.to_string()], |r| {
            Ok(Sellable {
                name: r.get(0)?,
                price_amount: r.get(1)?,
                currency: r.get(2)?,
                active: r.get::<_, String>(3)? == "active",
            })
        })
        .optional()?)
}

pub fn count_products(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?)
}

/// Appends the product's full replicated state (LWW row) to the change log.
fn record_change(tx: &Tx, id: Uuid, version: &Timestamp) -> Result<()> {
    let row = tx
        .prepare_cached(
            "SELECT name, description, price_amount, currency, category_id, status, created_at, updated_at
             FROM products WHERE id = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok(json!({
                "id": id,
                "name": r.get::<_, String>(0)?,
                "description": r.get::<_, String>(1)?,
                "price_amount": r.get::<_, i64>(2)?,
                "currency": r.get::<_, String>(3)?,
                "category_id": r.get::<_, Option<String>>(4)?,
                "status": r.get::<_, String>(5)?,
                "created_at": r.get::<_, i64>(6)?,
                "updated_at": r.get::<_, i64>(7)?,
            }))
        })?;
    changelog::append(tx, "product", &id.to_string(), version, &row)
}

/// Applies a category replicated from the hub (last writer wins by version). Two stores may
/// create categories of the same name while apart; names are unique here, so a later arrival
/// with a taken name is stored with its id appended to the name rather than dropped.
pub fn apply_remote_category(
    tx: &Tx,
    c: &edgecart_proto::sync::CategoryPayload,
    version: &str,
) -> Result<()> {
    let upsert = |name: &str| {
        tx.prepare_cached(
            "INSERT INTO categories (id, name, description, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
                 version = excluded.version
             WHERE excluded.version > categories.version",
        )?
        .execute(params![c.id, name, c.description, c.created_at, version])
    };
    match upsert(&c.name) {
        Ok(_) => Ok(()),
        Err(e) if crate::db::is_unique_violation(&e) => {
            // The random tail of the UUIDv7 (its head is a timestamp shared by ids made together).
            let short: String =
                c.id.chars()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
            upsert(&format!("{} ({short})", c.name))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies a product replicated from the hub (last writer wins by version).
pub fn apply_remote_product(
    tx: &Tx,
    p: &edgecart_proto::sync::ProductPayload,
    version: &str,
) -> Result<()> {
    let status = ProductStatus::parse(&p.status);
    // A product can arrive before its category only if the category was lost upstream; keep
    // the product (without the category) rather than drop it.
    let category = match &p.category_id {
        Some(c) if category_exists(tx, Uuid::parse_str(c).unwrap_or_default())? => Some(c.as_str()),
        _ => None,
    };
    tx.prepare_cached(
        "INSERT INTO products (id, name, description, price_amount, currency, category_id, status,
                               created_at, updated_at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
             price_amount = excluded.price_amount, currency = excluded.currency,
             category_id = excluded.category_id, status = excluded.status,
             updated_at = excluded.updated_at, version = excluded.version
         WHERE excluded.version > products.version",
    )?
    .execute(params![
        p.id,
        p.name,
        p.description,
        p.price_amount,
        p.currency,
        category,
        status.as_str(),
        p.created_at,
        p.updated_at,
        version
    ])?;
    Ok(())
}
