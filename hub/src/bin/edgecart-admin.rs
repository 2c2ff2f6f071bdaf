//! `edgecart-admin`: call the hub's admin services from a shell.
//!
//!   edgecart-admin --hub http://127.0.0.1:50051 --token T nodes
//!   edgecart-admin --hub https://hub.example:50051 --hub-ca ca.pem --token T nodes
//!   edgecart-admin ... nodes decommission store-3 [--force]
//!   edgecart-admin ... nodes enroll store-3 [--no-catalog-edits]   (prints the credential)
//!   edgecart-admin ... nodes rotate store-3                         (prints a new credential)
//!   edgecart-admin ... nodes revoke store-3 [--credential ID]
//!   edgecart-admin ... products
//!   edgecart-admin ... create-product --name Tea --price 450 [--category ID]
//!   edgecart-admin ... receive-stock PRODUCT_ID 100
//!   edgecart-admin ... stock PRODUCT_ID
//!   edgecart-admin ... orders [--node store-1]
//!   edgecart-admin ... set-order-status ORDER_ID shipped

use clap::{Parser, Subcommand};
use edgecart_proto::pb;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

#[derive(Parser)]
#[command(name = "edgecart-admin", about = "Operate an edgecart hub")]
struct Cli {
    /// The hub's gRPC URL.
    #[arg(
        long,
        env = "EDGECART_HUB_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    hub: String,
    /// CA certificate(s) (PEM) to trust for an `https://` hub URL (default: the system roots).
    #[arg(long, env = "EDGECART_HUB_CA")]
    hub_ca: Option<std::path::PathBuf>,
    /// The hub's admin token.
    #[arg(long, env = "EDGECART_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Nodes with connection state and replication lag.
    Nodes {
        #[command(subcommand)]
        action: Option<NodesCmd>,
    },
    /// The catalog.
    Products,
    /// Categories.
    Categories,
    /// Creates a product (price in minor units).
    CreateProduct {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        price: i64,
        #[arg(long, default_value = "USD")]
        currency: String,
        #[arg(long, default_value = "")]
        category: String,
    },
    /// Creates a category.
    CreateCategory { name: String },
    /// Units delivered to the central warehouse (allocated to the nodes).
    ReceiveStock { product_id: String, quantity: i64 },
    /// A product's stock: global, at the hub, per node.
    Stock { product_id: String },
    /// Orders across nodes.
    Orders {
        #[arg(long, default_value = "")]
        node: String,
    },
    /// Ships, delivers or cancels an order (carried out by the node that owns it).
    SetOrderStatus { order_id: String, status: String },
}

#[derive(Subcommand)]
enum NodesCmd {
    /// Retires a store for good: its stock rights go back to the hub, its syncs are refused.
    Decommission {
        node_id: String,
        /// Even if the store has changes the hub has not applied yet (they are lost).
        #[arg(long)]
        force: bool,
    },
    /// Registers a store and prints its credential (once: the hub keeps only a hash). Give it
    /// to the store as `--hub-token`.
    Enroll {
        node_id: String,
        /// The hub ignores (refuses) the store's catalog edits.
        #[arg(long)]
        no_catalog_edits: bool,
    },
    /// Prints an additional credential for the store; the old ones work until revoked.
    Rotate { node_id: String },
    /// Revokes the store's credentials (all, or only `--credential ID`): its stream ends, its
    /// reconnects are refused.
    Revoke {
        node_id: String,
        /// Only this credential (e.g. the old one after a rotation).
        #[arg(long, default_value = "")]
        credential: String,
    },
    /// Switches whether the hub applies the store's catalog edits (products, categories).
    CatalogEdits {
        node_id: String,
        #[arg(value_parser = ["on", "off"])]
        setting: String,
    },
}

#[derive(Clone)]
struct Token(String);

impl Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not valid header text"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut endpoint = Channel::from_shared(cli.hub.clone())?;
    if cli.hub.starts_with("https://") {
        let tls = match &cli.hub_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading --hub-ca {}: {e}", path.display()))?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel: Channel = endpoint.connect().await?;
    let token = Token(cli.token.clone());
    let catalog = || {
        pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            channel.clone(),
            token.clone(),
        )
    };
    let inventory = || {
        pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            channel.clone(),
            token.clone(),
        )
    };
    let node_admin =
        || pb::node_admin_client::NodeAdminClient::with_interceptor(channel.clone(), token.clone());
    let orders = || {
        pb::order_admin_client::OrderAdminClient::with_interceptor(channel.clone(), token.clone())
    };
    match cli.command {
        Cmd::Nodes {
            action: Some(NodesCmd::Decommission { node_id, force }),
        } => {
            let done = node_admin()
                .decommission_node(pb::DecommissionNodeRequest { node_id, force })
                .await?
                .into_inner();
            let node = done.node.unwrap_or_default();
            println!(
                "{} decommissioned at {} (unix ms); {} units of selling rights back at the hub",
                node.node_id, node.decommissioned_at_unix_ms, done.rights_returned
            );
        }
        Cmd::Nodes {
            action:
                Some(NodesCmd::Enroll {
                    node_id,
                    no_catalog_edits,
                }),
        } => {
            let r = node_admin()
                .enroll_node(pb::EnrollNodeRequest {
                    node_id,
                    catalog_edits: Some(!no_catalog_edits),
                })
                .await?
                .into_inner();
            // Only the credential on stdout, for `$(edgecart-admin nodes enroll ID)`.
            eprintln!(
                "{} enrolled (credential {}); store its credential now, it is not shown again",
                r.node_id, r.credential_id
            );
            println!("{}", r.credential);
        }
        Cmd::Nodes {
            action: Some(NodesCmd::Rotate { node_id }),
        } => {
            let r = node_admin()
                .rotate_node(pb::RotateNodeRequest { node_id })
                .await?
                .into_inner();
            eprintln!(
                "{}: new credential {}; revoke the old one once the store uses it",
                r.node_id, r.credential_id
            );
            println!("{}", r.credential);
        }
        Cmd::Nodes {
            action:
                Some(NodesCmd::Revoke {
                    node_id,
                    credential,
                }),
        } => {
            let r = node_admin()
                .revoke_node(pb::RevokeNodeRequest {
                    node_id,
                    credential_id: credential,
                })
                .await?
                .into_inner();
            println!(
                "{}: {} credential(s) revoked{}",
                r.node_id,
                r.revoked,
                if r.stream_ended {
                    "; its live stream was ended"
                } else {
                    ""
                }
            );
        }
        Cmd::Nodes {
            action: Some(NodesCmd::CatalogEdits { node_id, setting }),
        } => {
            let r = node_admin()
                .set_catalog_edits(pb::SetCatalogEditsRequest {
                    node_id,
                    catalog_edits: setting == "on",
                })
                .await?
                .into_inner();
            println!(
                "{}: catalog edits {}",
                r.node_id,
                if r.catalog_edits { "on" } else { "off" }
            );
        }
        Cmd::Nodes { action: None } => {
            let nodes = node_admin()
                .list_nodes(pb::ListNodesRequest {})
                .await?
                .into_inner()
                .nodes;
            println!(
                "{:<20} {:<10} {:<8} {:>14} {:>12} last seen (unix ms)",
                "node", "connected", "release", "pending (node)", "pending (hub)"
            );
            for n in nodes {
                let state = if n.decommissioned_at_unix_ms > 0 {
                    "retired".to_string()
                } else {
                    n.connected.to_string()
                };
                println!(
                    "{:<20} {:<10} {:<8} {:>14} {:>12} {}",
                    n.node_id,
                    state,
                    n.release,
                    n.pending_changes,
                    n.hub_changes_pending,
                    n.last_seen_unix_ms
                );
            }
        }
        Cmd::Products => {
            let mut token = String::new();
            loop {
                let page = catalog()
                    .list_products(pb::ListProductsRequest {
                        page_size: 100,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                for p in &page.products {
                    let price = p
                        .price
                        .as_ref()
                        .map(|m| format!("{} {}", m.amount, m.currency))
                        .unwrap_or_default();
                    println!(
                        "{}  {:<30} {:>12}  stock {}",
                        p.id, p.name, price, p.global_stock
                    );
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        Cmd::Categories => {
            let page = catalog()
                .list_categories(pb::ListCategoriesRequest {
                    page_size: 500,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for c in page.categories {
                println!("{}  {}", c.id, c.name);
            }
        }
        Cmd::CreateProduct {
            name,
            description,
            price,
            currency,
            category,
        } => {
            let p = catalog()
                .create_product(pb::CreateProductRequest {
                    name,
                    description,
                    price: Some(pb::Money {
                        amount: price,
                        currency,
                    }),
                    category_id: category,
                })
                .await?
                .into_inner();
            println!("{}", p.id);
        }
        Cmd::CreateCategory { name } => {
            let c = catalog()
                .create_category(pb::CreateCategoryRequest {
                    name,
                    description: String::new(),
                })
                .await?
                .into_inner();
            println!("{}", c.id);
        }
        Cmd::ReceiveStock {
            product_id,
            quantity,
        } => {
            let s = inventory()
                .receive_stock(pb::ReceiveStockRequest {
                    product_id,
                    quantity,
                })
                .await?
                .into_inner();
            print_stock(&s);
        }
        Cmd::Stock { product_id } => {
            let s = inventory()
                .get_stock(pb::GetStockRequest { product_id })
                .await?
                .into_inner();
            print_stock(&s);
        }
        Cmd::Orders { node } => {
            let list = orders()
                .list_orders(pb::ListOrdersRequest {
                    node_id: node,
                    page_size: 500,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for o in list.orders {
                let total = o
                    .total
                    .map(|m| format!("{} {}", m.amount, m.currency))
                    .unwrap_or_default();
                println!("{}  {:<12} {:<16} {}", o.id, o.node_id, o.status, total);
            }
        }
        Cmd::SetOrderStatus { order_id, status } => {
            let r = orders()
                .update_order_status(pb::UpdateOrderStatusRequest { order_id, status })
                .await?
                .into_inner();
            println!("command {} queued for the owning node", r.command_id);
        }
    }
    Ok(())
}

fn print_stock(s: &pb::StockLevel) {
    println!(
        "product {}: global {}, at the hub {}",
        s.product_id, s.global_stock, s.hub_rights
    );
    for n in &s.nodes {
        println!(
            "  {:<20} rights {:>6}  sold {:>6}  received {:>6}",
            n.node_id, n.rights, n.sold, n.received
        );
    }
}
