//! First-start set-up: the bootstrap admin account, and with `--demo` a small catalog with stock
//! (seeded once: only into an empty catalog).

use std::net::SocketAddr;

use anyhow::Context;

use crate::catalog::inventory::{self, StockCtx};
use crate::catalog::model::ProductStatus;
use crate::catalog::store::{self as catalog, ProductRow};
use crate::config::Config;
use crate::error::Error;
use crate::state::AppState;
use crate::users::model::{Email, Name, NewPassword, Role};

/// Namespace of the bootstrap admin's name-based (v5) id.
const ADMIN_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6564_6765_6361_7274_2d61_646d_696e_0001);

pub const DEMO_ADMIN_EMAIL: &str = "admin@edgecart.demo";
pub const DEMO_ADMIN_PASSWORD: &str = "demo-admin-pass";

/// (name, description, price in cents, units in stock)
type DemoProduct = (&'static str, &'static str, i64, u64);

const DEMO_CATALOG: &[(&str, &[DemoProduct])] = &[
    (
        "Coffee",
        &[
            (
                "Espresso beans 1kg",
                "Dark roast, notes of cocoa and cherry",
                2499,
                40,
            ),
            ("Filter coffee 500g", "Light roast from Ethiopia", 1399, 25),
            ("Decaf 250g", "Swiss-water process", 899, 3),
        ],
    ),
    (
        "Equipment",
        &[
            ("Hand grinder", "Conical steel burrs", 8900, 6),
            ("Pour-over kettle", "Gooseneck, 1 litre", 4500, 10),
        ],
    ),
    ("Snacks", &[("Almond biscotti", "Box of 12", 650, 60)]),
];

pub async fn bootstrap(state: &AppState, config: &Config) -> anyhow::Result<()> {
    let admin = match (&config.admin_email, &config.admin_password, config.demo) {
        (Some(e), Some(p), _) => Some((e.clone(), p.clone())),
        (Some(_), None, _) | (None, Some(_), _) => {
            anyhow::bail!("--admin-email and --admin-password go together")
        }
        (None, None, true) => Some((
            DEMO_ADMIN_EMAIL.to_string(),
            DEMO_ADMIN_PASSWORD.to_string(),
        )),
        (None, None, false) => None,
    };
    if let Some((email, password)) = admin {
        ensure_admin(state, &email, &password).await?;
    }
    // With a hub the catalog comes from the hub (seeding here would duplicate it per store).
    if config.demo && config.hub_url.is_none() {
        seed_catalog(state)
            .await
            .context("seeding the demo catalog")?;
    }
    Ok(())
}

async fn ensure_admin(state: &AppState, email: &str, password: &str) -> anyhow::Result<()> {
    let email =
        Email::parse("admin_email", email).map_err(|e| anyhow::anyhow!("--admin-email: {e}"))?;
    let password = NewPassword::parse("admin_password", password)
        .map_err(|e| anyhow::anyhow!("--admin-password: {e}"))?;
    let name = Name::parse("name", "Administrator").map_err(|e| anyhow::anyhow!("{e}"))?;
    // The same id on every node: each store bootstraps "the" admin, and the hub sees one account
    // (not a second registration of a taken email).
    let id = uuid::Uuid::new_v5(&ADMIN_NAMESPACE, email.as_str().as_bytes());
    match crate::users::routes::create_account(state, id, email, name, &password, Role::Admin).await
    {
        Ok(_) => Ok(()),
        // Already created on an earlier start: leave it (and its possibly changed password) alone.
        Err(Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the bootstrap admin: {e}")),
    }
}

async fn seed_catalog(state: &AppState) -> Result<(), Error> {
    let st = state.clone();
    state
        .db
        .write(move |tx| {
            if catalog::count_products(tx)? > 0 {
                return Ok(());
            }
            let now = crate::time::now_ms();
            for (category, products) in DEMO_CATALOG {
                let cat = catalog::insert_category(
                    tx,
                    edgecart_proto::ids::new_id(),
                    category,
                    "",
                    &st.clock.now(),
                    now,
                )?;
                for (name, description, price, units) in *products {
                    let id = edgecart_proto::ids::new_id();
                    catalog::insert_product(
                        tx,
                        &ProductRow {
                            id,
                            name,
                            description,
                            price_amount: *price,
                            currency: st.currency.as_str(),
                            category_id: Some(cat.id),
                            status: ProductStatus::Active,
                        },
                        &st.clock.now(),
                        now,
                    )?;
                    let version = st.clock.now();
                    let ctx = StockCtx::new(&st, &version);
                    inventory::receive(tx, &ctx, id, *units)?;
                }
            }
            tracing::info!("demo catalog seeded");
            Ok(())
        })
        .await
}

pub fn print_banner(addr: SocketAddr) {
    println!(
        "\n  edgecart node is running (demo mode)\n\n\
         \x20 storefront API   http://{addr}/v1/products\n\
         \x20 OpenAPI document http://{addr}/openapi.json\n\
         \x20 health           http://{addr}/healthz\n\
         \x20 admin login      {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}\n\n\
         \x20 try:  curl -s http://{addr}/v1/products | head -c 600\n\
         \x20 stop: Ctrl-C\n"
    );
}
