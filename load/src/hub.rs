//! Reaching the hub: its URL and TLS trust ([`HubTarget`]), and the admin calls the tool makes
//! ([`Admin`]: enrol stores, create products, receive stock, read a product's global stock).

use std::time::Duration;

use edgecart_proto::pb;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::LoadError;

/// A secret (the admin token, a store's credential): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the hub is: `http://` (loopback or a trusted network) or `https://` with the CA to
/// trust (`--hub-ca`; the system roots when `None`), as a store dials it.
#[derive(Clone, Debug)]
pub struct HubTarget {
    url: String,
    ca_pem: Option<Vec<u8>>,
}

impl HubTarget {
    /// Checks the URL's scheme and shape; `ca_pem` is the content of `--hub-ca`.
    pub fn new(url: &str, ca_pem: Option<Vec<u8>>) -> Result<HubTarget, LoadError> {
        let bad = |why: &str| LoadError::BadUrl {
            flag: "--hub",
            url: url.to_string(),
            why: why.to_string(),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("must start with http:// or https://"));
        }
        Endpoint::from_shared(url.to_string()).map_err(|e| bad(&e.to_string()))?;
        if ca_pem.is_some() && !url.starts_with("https://") {
            return Err(bad("--hub-ca is given, but the URL is not https://"));
        }
        Ok(HubTarget {
            url: url.trim_end_matches('/').to_string(),
            ca_pem,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint a store uses: keepalive 2 s + 2 s (a dead link is noticed in ~4 s), 1 MiB
    /// stream / 4 MiB connection windows, TLS for `https://` (rustls, ring).
    pub fn endpoint(&self) -> Result<Endpoint, LoadError> {
        let bad = |e: tonic::transport::Error| LoadError::BadUrl {
            flag: "--hub",
            url: self.url.clone(),
            why: e.to_string(),
        };
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(bad)?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(1 << 20))
            .initial_connection_window_size(Some(4 << 20));
        if self.url.starts_with("https://") {
            let tls = match &self.ca_pem {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(bad)?;
        }
        Ok(endpoint)
    }

    /// A channel that dials on first use (and re-dials after a broken connection).
    pub fn lazy_channel(&self) -> Result<Channel, LoadError> {
        Ok(self.endpoint()?.connect_lazy())
    }

    /// A connected channel; a readable error when the hub cannot be reached.
    pub async fn connect(&self) -> Result<Channel, LoadError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|e| LoadError::HubUnreachable {
                url: self.url.clone(),
                why: error_chain(&e),
            })
    }
}

/// An error and its sources on one line ("transport error: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Bearer(Secret);

impl Bearer {
    pub fn new(token: &Secret) -> Bearer {
        Bearer(token.clone())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0.expose())
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("the token is not valid header text"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// A store enrolled at the hub: its id and the credential it presents.
#[derive(Clone, Debug)]
pub struct Enrolled {
    pub id: String,
    pub credential: Secret,
}

/// The hub's admin services, with the admin token.
#[derive(Clone)]
pub struct Admin {
    channel: Channel,
    token: Bearer,
}

impl Admin {
    /// Connects and checks the token with a cheap call (`InventoryAdmin/GetAllocationPolicy`),
    /// so a wrong token is reported before anything is created.
    pub async fn connect(hub: &HubTarget, token: &Secret) -> Result<Admin, LoadError> {
        let admin = Admin {
            channel: hub.connect().await?,
            token: Bearer::new(token),
        };
        admin
            .inventory()
            .get_allocation_policy(pb::GetAllocationPolicyRequest {})
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => LoadError::Rpc {
                    call: "the admin token",
                    code: s.code(),
                    message: "check --admin-token / EDGECART_ADMIN_TOKEN".into(),
                },
                _ => LoadError::rpc("InventoryAdmin/GetAllocationPolicy", s),
            })?;
        Ok(admin)
    }

    fn nodes(&self) -> pb::node_admin_client::NodeAdminClient<Authed> {
        pb::node_admin_client::NodeAdminClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }

    fn catalog(&self) -> pb::catalog_admin_client::CatalogAdminClient<Authed> {
        pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }

    fn inventory(&self) -> pb::inventory_admin_client::InventoryAdminClient<Authed> {
        pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
            self.channel.clone(),
            self.token.clone(),
        )
    }

    /// Enrolls store `id` (`NodeAdmin/EnrollNode`); a store enrolled before gets an additional
    /// credential (`RotateNode`) instead.
    pub async fn enroll(&self, id: &str) -> Result<Enrolled, LoadError> {
        let enrolled = self
            .nodes()
            .enroll_node(pb::EnrollNodeRequest {
                node_id: id.to_string(),
                catalog_edits: Some(false),
            })
            .await;
        let credential = match enrolled {
            Ok(r) => r.into_inner().credential,
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                self.nodes()
                    .rotate_node(pb::RotateNodeRequest {
                        node_id: id.to_string(),
                    })
                    .await
                    .map_err(|s| LoadError::rpc("NodeAdmin/RotateNode", s))?
                    .into_inner()
                    .credential
            }
            Err(s) => return Err(LoadError::rpc("NodeAdmin/EnrollNode", s)),
        };
        Ok(Enrolled {
            id: id.to_string(),
            credential: Secret::new(credential),
        })
    }

    /// Enrolls every id, `concurrency` calls at a time, calling `progress` after each.
    pub async fn enroll_all(
        &self,
        ids: &[String],
        concurrency: usize,
        progress: impl Fn(usize),
    ) -> Result<Vec<Enrolled>, LoadError> {
        use futures::StreamExt as _;
        let mut out = Vec::with_capacity(ids.len());
        let mut calls = futures::stream::iter(ids.iter().map(|id| self.enroll(id)))
            .buffered(concurrency.max(1));
        while let Some(enrolled) = calls.next().await {
            out.push(enrolled?);
            progress(out.len());
        }
        Ok(out)
    }

    /// Retires a store (`NodeAdmin/DecommissionNode`, forced): its rights go back to the hub.
    pub async fn decommission(&self, id: &str) -> Result<(), LoadError> {
        self.nodes()
            .decommission_node(pb::DecommissionNodeRequest {
                node_id: id.to_string(),
                force: true,
            })
            .await
            .map_err(|s| LoadError::rpc("NodeAdmin/DecommissionNode", s))?;
        Ok(())
    }

    /// Creates a product (USD, `price` cents); returns its id.
    pub async fn create_product(&self, name: &str, price: i64) -> Result<String, LoadError> {
        Ok(self
            .catalog()
            .create_product(pb::CreateProductRequest {
                name: name.to_string(),
                description: "created by edgecart-load".into(),
                price: Some(pb::Money {
                    amount: price,
                    currency: "USD".into(),
                }),
                category_id: String::new(),
            })
            .await
            .map_err(|s| LoadError::rpc("CatalogAdmin/CreateProduct", s))?
            .into_inner()
            .id)
    }

    /// Archives a product (the tool's own, at the end of a run against a staging hub).
    pub async fn archive_product(&self, id: &str) -> Result<(), LoadError> {
        self.catalog()
            .update_product(pb::UpdateProductRequest {
                id: id.to_string(),
                status: Some("archived".into()),
                ..Default::default()
            })
            .await
            .map_err(|s| LoadError::rpc("CatalogAdmin/UpdateProduct", s))?;
        Ok(())
    }

    /// Units delivered to the hub's warehouse (allocated to the stores by the hub's policy).
    pub async fn receive_stock(&self, product: &str, quantity: i64) -> Result<(), LoadError> {
        self.inventory()
            .receive_stock(pb::ReceiveStockRequest {
                product_id: product.to_string(),
                quantity,
            })
            .await
            .map_err(|s| LoadError::rpc("InventoryAdmin/ReceiveStock", s))?;
        Ok(())
    }

    /// A product's global stock as the hub has merged it.
    pub async fn global_stock(&self, product: &str) -> Result<i64, LoadError> {
        Ok(self
            .inventory()
            .get_stock(pb::GetStockRequest {
                product_id: product.to_string(),
            })
            .await
            .map_err(|s| LoadError::rpc("InventoryAdmin/GetStock", s))?
            .into_inner()
            .global_stock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https() {
        assert!(HubTarget::new("http://127.0.0.1:50051", None).is_ok());
        assert!(HubTarget::new("https://hub.example:443", None).is_ok());
        let e = HubTarget::new("127.0.0.1:50051", None).unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
        let e = HubTarget::new("http://127.0.0.1:1", Some(b"pem".to_vec())).unwrap_err();
        assert!(e.to_string().contains("not https://"), "{e}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = Secret::new("ecn_abc_supersecret");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "ecn_abc_supersecret");
    }
}
