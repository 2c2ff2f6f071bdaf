//! Categories and products: LWW rows, highest HLC version wins.

use edgecart_proto::sync::{CategoryPayload, ProductPayload, entity};
use rusqlite::{Connection, OptionalExtension, params};

use super::changes;
use crate::error::Result;

/// Applies a category if its version is newer; broadcasts it when it changed.
pub fn apply_category(conn: &Connection, c: &CategoryPayload, version: &str) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO categories (id, name, description, created_at, version) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = excluded.description,
                 version = excluded.version
             WHERE excluded.version > categories.version",
        )?
        .execute(params![c.id, c.name, c.description, c.created_at, version])?;
    if n > 0 {
        changes::append(
            conn,
            None,
            entity::CATEGORY,
            &c.id,
            version,
            &serde_json::to_string(c)?,
        )?;
    }
    Ok(n > 0)
}

/// Applies a product if its version is newer; broadcasts it when it changed.
pub fn apply_product(conn: &Connection, p: &ProductPayload, version: &str) -> Result<bool> {
    let n = conn
        .prepare_cached(
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
            p.category_id,
            p.status,
            p.created_at,
            p.updated_at,
            version
        ])?;
    if n > 0 {
        changes::append(
            conn,
            None,
            entity::PRODUCT,
            &p.id,
            version,
            &serde_json::to_string(p)?,
        )?;
    }
    Ok(n > 0)
}

pub fn get_product(conn: &Connection, id: &str) -> Result<Option<ProductPayload>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, description, price_amount, currency, category_id, status, created_at, updated_at
             FROM products WHERE id = ?1",
        )?
        .query_row([id], product_row)
        .optional()?)
}

fn product_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProductPayload> {
    Ok(ProductPayload {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        price_amount: r.get(3)?,
        currency: r.get(4)?,
        category_id: r.get(5)?,
        status: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn list_products(conn: &Connection, after: &str, limit: i64) -> Result<Vec<ProductPayload>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, price_amount, currency, category_id, status, created_at, updated_at
         FROM products WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, limit], product_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn all_product_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM products ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn category_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM categories WHERE id = ?1")?
        .exists([id])?)
}

pub fn list_categories(conn: &Connection, after: &str, limit: i64) -> Result<Vec<CategoryPayload>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, created_at FROM categories WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, limit], |r| {
            Ok(CategoryPayload {
                id: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Every category and product with its version, for a node's snapshot.
/// One page of the categories after id `after`, as sync changes `(entity, id, version, payload)`.
pub fn snapshot_categories(
    conn: &Connection,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, created_at, version FROM categories
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let cats = stmt.query_map(params![after, limit as i64], |r| {
        let c = CategoryPayload {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            created_at: r.get(3)?,
        };
        Ok((c, r.get::<_, String>(4)?))
    })?;
    for row in cats {
        let (c, v) = row?;
        out.push((
            entity::CATEGORY.to_string(),
            c.id.clone(),
            v,
            serde_json::to_string(&c)?,
        ));
    }
    Ok(out)
}

/// One page of the products after id `after`, as sync changes `(entity, id, version, payload)`.
pub fn snapshot_products(
    conn: &Connection,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, String, String, String)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, description, price_amount, currency, category_id, status, created_at, updated_at, version
         FROM products WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let products = stmt.query_map(params![after, limit as i64], |r| {
        Ok((product_row(r)?, r.get::<_, String>(9)?))
    })?;
    for row in products {
        let (p, v) = row?;
        out.push((
            entity::PRODUCT.to_string(),
            p.id.clone(),
            v,
            serde_json::to_string(&p)?,
        ));
    }
    Ok(out)
}
