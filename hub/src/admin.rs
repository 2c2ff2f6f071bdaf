//! The admin gRPC services: catalog, inventory, orders (nodes: `node_admin`).

use edgecart_proto::ids::{ActorId, new_id};
use edgecart_proto::money::Currency;
use edgecart_proto::sync::{CategoryPayload, Command, OrderPayload, ProductPayload, entity};
use edgecart_proto::{OrderStatus, pb};
use tonic::{Request, Response, Status};

use crate::allocation::Policy;
use crate::error::{HubError, Result};
use crate::replication;
use crate::state::Hub;
use crate::store::{catalog, changes, nodes, now_ms, orders, stock};

pub struct Admin {
    pub hub: Hub,
}

const MAX_PAGE: i64 = 500;

fn page(size: i32, token: &str) -> Result<(String, i64)> {
    let size = if size <= 0 {
        50
    } else {
        i64::from(size).min(MAX_PAGE)
    };
    if !token.is_empty() && uuid::Uuid::parse_str(token).is_err() {
        return Err(HubError::invalid("page_token", "not a valid page token"));
    }
    Ok((token.to_string(), size))
}

fn next_token<T>(rows: &[T], size: i64, id: impl Fn(&T) -> &str) -> String {
    if rows.len() as i64 == size {
        rows.last().map(|r| id(r).to_string()).unwrap_or_default()
    } else {
        String::new()
    }
}

fn parse_id(field: &str, raw: &str) -> Result<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| HubError::invalid(field, "must be a UUID"))
}

fn text(field: &str, raw: &str, max: usize, allow_empty: bool) -> Result<String> {
    let s = raw.trim();
    if (!allow_empty && s.is_empty())
        || s.chars().count() > max
        || s.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(HubError::invalid(
            field,
            format!(
                "must be {}-{max} printable characters",
                u8::from(!allow_empty)
            ),
        ));
    }
    Ok(s.to_string())
}

fn money(field: &str, m: Option<&pb::Money>) -> Result<(i64, String)> {
    let m = m.ok_or_else(|| HubError::invalid(field, "is required"))?;
    let currency = Currency::parse(&m.currency).map_err(|_| {
        HubError::invalid(
            format!("{field}.currency"),
            "must be a 3-letter ISO 4217 code",
        )
    })?;
    if !(0..=1_000_000_000_000).contains(&m.amount) {
        return Err(HubError::invalid(
            format!("{field}.amount"),
            "must be between 0 and 10^12 minor units",
        ));
    }
    Ok((m.amount, currency.as_str().to_string()))
}

fn product_pb(p: ProductPayload, global: i64) -> pb::Product {
    pb::Product {
        id: p.id,
        name: p.name,
        description: p.description,
        price: Some(pb::Money {
            amount: p.price_amount,
            currency: p.currency,
        }),
        category_id: p.category_id.unwrap_or_default(),
        status: p.status,
        global_stock: global,
        created_at_unix_ms: p.created_at,
        updated_at_unix_ms: p.updated_at,
    }
}

fn order_pb(o: OrderPayload) -> pb::Order {
    pb::Order {
        items: o
            .items
            .into_iter()
            .map(|i| pb::OrderItem {
                product_id: i.product_id,
                product_name: i.product_name,
                unit_price: Some(pb::Money {
                    amount: i.unit_price.amount,
                    currency: i.unit_price.currency.as_str().to_string(),
                }),
                quantity: i.quantity,
            })
            .collect(),
        total: Some(pb::Money {
            amount: o.total_amount,
            currency: o.currency,
        }),
        id: o.id,
        node_id: o.node_id,
        status: o.status,
        user_id: o.user_id,
        created_at_unix_ms: o.created_at,
        updated_at_unix_ms: o.updated_at,
    }
}

impl Admin {
    async fn product_view(&self, id: String) -> Result<pb::Product> {
        self.hub
            .db
            .read(move |c| {
                let p = catalog::get_product(c, &id)?.ok_or(HubError::NotFound("product"))?;
                let global = stock::load(c, &id)?.global().max(0);
                Ok(product_pb(p, global))
            })
            .await
    }

    async fn stock_level(&self, product_id: String) -> Result<pb::StockLevel> {
        self.hub
            .db
            .read(move |c| {
                if catalog::get_product(c, &product_id)?.is_none() {
                    return Err(HubError::NotFound("product"));
                }
                let counter = stock::load(c, &product_id)?;
                let nodes = nodes::ids(c)?
                    .into_iter()
                    .filter_map(|n| ActorId::parse(&n).ok())
                    .map(|n| pb::NodeStock {
                        rights: counter.rights(&n),
                        sold: counter.sold(&n) as i64,
                        received: counter.received(&n) as i64,
                        node_id: n.to_string(),
                    })
                    .collect();
                Ok(pb::StockLevel {
                    product_id,
                    global_stock: counter.global(),
                    hub_rights: counter.rights(&ActorId::hub()),
                    nodes,
                })
            })
            .await
    }
}

#[tonic::async_trait]
impl pb::catalog_admin_server::CatalogAdmin for Admin {
    async fn create_product(
        &self,
        req: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let r = req.into_inner();
        let name = text("name", &r.name, 200, false)?;
        let description = text("description", &r.description, 5000, true)?;
        let (amount, currency) = money("price", r.price.as_ref())?;
        let category_id = match r.category_id.as_str() {
            "" => None,
            c => Some(parse_id("category_id", c)?),
        };
        let clock = self.hub.clock.clone();
        let id = new_id().to_string();
        let payload = ProductPayload {
            id: id.clone(),
            name,
            description,
            price_amount: amount,
            currency,
            category_id,
            status: "active".into(),
            created_at: now_ms(),
            updated_at: now_ms(),
        };
        self.hub
            .db
            .write(move |tx| {
                if let Some(c) = &payload.category_id
                    && !catalog::category_exists(tx, c)?
                {
                    return Err(HubError::invalid("category_id", "no such category"));
                }
                catalog::apply_product(tx, &payload, &clock.now().to_string())?;
                Ok(())
            })
            .await?;
        tracing::info!(product_id = %id, "product created at the hub");
        Ok(Response::new(self.product_view(id).await?))
    }

    async fn get_product(
        &self,
        req: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let id = parse_id("id", &req.into_inner().id)?;
        Ok(Response::new(self.product_view(id).await?))
    }

    async fn update_product(
        &self,
        req: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let r = req.into_inner();
        let id = parse_id("id", &r.id)?;
        let name = r
            .name
            .as_deref()
            .map(|n| text("name", n, 200, false))
            .transpose()?;
        let description = r
            .description
            .as_deref()
            .map(|d| text("description", d, 5000, true))
            .transpose()?;
        let price = r
            .price
            .as_ref()
            .map(|p| money("price", Some(p)))
            .transpose()?;
        let category = r
            .category_id
            .as_deref()
            .map(|c| parse_id("category_id", c))
            .transpose()?;
        let status = match r.status.as_deref() {
            None => None,
            Some(s @ ("active" | "archived")) => Some(s.to_string()),
            Some(_) => return Err(HubError::invalid("status", "must be active or archived").into()),
        };
        let clock = self.hub.clock.clone();
        let pid = id.clone();
        self.hub
            .db
            .write(move |tx| {
                let mut p = catalog::get_product(tx, &pid)?.ok_or(HubError::NotFound("product"))?;
                if let Some(c) = &category
                    && !catalog::category_exists(tx, c)?
                {
                    return Err(HubError::invalid("category_id", "no such category"));
                }
                if let Some(n) = name {
                    p.name = n;
                }
                if let Some(d) = description {
                    p.description = d;
                }
                if let Some((amount, currency)) = price {
                    p.price_amount = amount;
                    p.currency = currency;
                }
                if category.is_some() {
                    p.category_id = category;
                }
                if let Some(s) = status {
                    p.status = s;
                }
                p.updated_at = now_ms();
                catalog::apply_product(tx, &p, &clock.now().to_string())?;
                Ok(())
            })
            .await?;
        Ok(Response::new(self.product_view(id).await?))
    }

    async fn list_products(
        &self,
        req: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let r = req.into_inner();
        let (after, size) = page(r.page_size, &r.page_token)?;
        let products = self
            .hub
            .db
            .read(move |c| {
                catalog::list_products(c, &after, size)?
                    .into_iter()
                    .map(|p| {
                        let global = stock::load(c, &p.id)?.global().max(0);
                        Ok(product_pb(p, global))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let next_page_token = next_token(&products, size, |p| &p.id);
        Ok(Response::new(pb::ListProductsResponse {
            products,
            next_page_token,
        }))
    }

    async fn create_category(
        &self,
        req: Request<pb::CreateCategoryRequest>,
    ) -> Result<Response<pb::Category>, Status> {
        let r = req.into_inner();
        let payload = CategoryPayload {
            id: new_id().to_string(),
            name: text("name", &r.name, 100, false)?,
            description: text("description", &r.description, 2000, true)?,
            created_at: now_ms(),
        };
        let clock = self.hub.clock.clone();
        let p = payload.clone();
        self.hub
            .db
            .write(move |tx| catalog::apply_category(tx, &p, &clock.now().to_string()).map(|_| ()))
            .await?;
        Ok(Response::new(pb::Category {
            id: payload.id,
            name: payload.name,
            description: payload.description,
        }))
    }

    async fn list_categories(
        &self,
        req: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        let r = req.into_inner();
        let (after, size) = page(r.page_size, &r.page_token)?;
        let categories: Vec<pb::Category> = self
            .hub
            .db
            .read(move |c| catalog::list_categories(c, &after, size))
            .await?
            .into_iter()
            .map(|c| pb::Category {
                id: c.id,
                name: c.name,
                description: c.description,
            })
            .collect();
        let next_page_token = next_token(&categories, size, |c| &c.id);
        Ok(Response::new(pb::ListCategoriesResponse {
            categories,
            next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl pb::inventory_admin_server::InventoryAdmin for Admin {
    async fn receive_stock(
        &self,
        req: Request<pb::ReceiveStockRequest>,
    ) -> Result<Response<pb::StockLevel>, Status> {
        let r = req.into_inner();
        let id = parse_id("product_id", &r.product_id)?;
        let quantity = u64::try_from(r.quantity)
            .ok()
            .filter(|q| (1..=1_000_000_000).contains(q))
            .ok_or_else(|| HubError::invalid("quantity", "must be 1-1000000000"))?;
        let (clock, figures) = (self.hub.clock.clone(), self.hub.figures.clone());
        let pid = id.clone();
        let product = id.clone();
        self.hub
            .db
            .write_then(
                move |tx| replication::receive_stock(tx, &clock, &pid, quantity),
                move |delivered| {
                    figures.merge([(product.as_str(), delivered)]);
                },
            )
            .await?;
        tracing::info!(product_id = %id, quantity, "stock received at the hub");
        Ok(Response::new(self.stock_level(id).await?))
    }

    async fn get_stock(
        &self,
        req: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::StockLevel>, Status> {
        let id = parse_id("product_id", &req.into_inner().product_id)?;
        Ok(Response::new(self.stock_level(id).await?))
    }

    async fn get_allocation_policy(
        &self,
        _req: Request<pb::GetAllocationPolicyRequest>,
    ) -> Result<Response<pb::AllocationPolicy>, Status> {
        let p = self.hub.db.read(replication::policy).await?;
        Ok(Response::new(pb::AllocationPolicy {
            floor_per_node: p.floor_per_node,
            reserve_percent: p.reserve_percent,
        }))
    }

    async fn set_allocation_policy(
        &self,
        req: Request<pb::AllocationPolicy>,
    ) -> Result<Response<pb::AllocationPolicy>, Status> {
        let r = req.into_inner();
        if r.floor_per_node < 0 {
            return Err(HubError::invalid("floor_per_node", "must not be negative").into());
        }
        if r.reserve_percent > 100 {
            return Err(HubError::invalid("reserve_percent", "must be 0-100").into());
        }
        let p = Policy {
            floor_per_node: r.floor_per_node,
            reserve_percent: r.reserve_percent,
        };
        self.hub
            .db
            .write(move |tx| replication::set_policy(tx, p))
            .await?;
        Ok(Response::new(r))
    }
}

#[tonic::async_trait]
impl pb::order_admin_server::OrderAdmin for Admin {
    async fn get_order(
        &self,
        req: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let id = parse_id("order_id", &req.into_inner().order_id)?;
        let order = self
            .hub
            .db
            .read(move |c| orders::get(c, &id))
            .await?
            .ok_or(HubError::NotFound("order"))?;
        Ok(Response::new(order_pb(order)))
    }

    async fn list_orders(
        &self,
        req: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let r = req.into_inner();
        let (after, size) = page(r.page_size, &r.page_token)?;
        let node = (!r.node_id.is_empty()).then_some(r.node_id);
        let orders: Vec<pb::Order> = self
            .hub
            .db
            .read(move |c| orders::list(c, node.as_deref(), &after, size))
            .await?
            .into_iter()
            .map(order_pb)
            .collect();
        let next_page_token = next_token(&orders, size, |o| &o.id);
        Ok(Response::new(pb::ListOrdersResponse {
            orders,
            next_page_token,
        }))
    }

    async fn update_order_status(
        &self,
        req: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::UpdateOrderStatusResponse>, Status> {
        let r = req.into_inner();
        let id = parse_id("order_id", &r.order_id)?;
        let to = r
            .status
            .parse::<OrderStatus>()
            .ok()
            .filter(|s| s.is_commandable())
            .ok_or_else(|| {
                HubError::invalid("status", "must be shipped, delivered or cancelled")
            })?;
        let clock = self.hub.clock.clone();
        let (command_id, order) = self
            .hub
            .db
            .write(move |tx| {
                let order = orders::get(tx, &id)?.ok_or(HubError::NotFound("order"))?;
                // The hub's copy of a status is a store's report: parsed strictly, an unknown
                // one is an error, never a default.
                let from = order
                    .status
                    .parse::<OrderStatus>()
                    .map_err(|e| HubError::Internal(e.to_string()))?;
                if !from.can_become(to) {
                    return Err(HubError::Precondition(format!(
                        "an order that is {from} cannot become {to}"
                    )));
                }
                let command = Command::OrderStatus {
                    id: new_id().to_string(),
                    order_id: id.clone(),
                    status: to.as_str().to_string(),
                };
                changes::append(
                    tx,
                    Some(&order.node_id),
                    entity::COMMAND,
                    command.id(),
                    &clock.now().to_string(),
                    &serde_json::to_string(&command)?,
                )?;
                Ok((command.id().to_string(), order))
            })
            .await?;
        tracing::info!(order_id = %order.id, node = %order.node_id, status = %r.status, "order status command queued");
        Ok(Response::new(pb::UpdateOrderStatusResponse {
            command_id,
            order: Some(order_pb(order)),
        }))
    }
}
