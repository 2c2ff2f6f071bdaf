//! The hub's admin services in-process over real gRPC on loopback: authentication, validation,
//! catalog and inventory, health. (Also makes `cargo test --workspace` build the hub binary that
//! the cross-process tests in `tests/` start.)

use clap::Parser;
use edgecart_proto::pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ADMIN: &str = "admin-token-for-tests-123";

#[derive(Clone)]
struct Token(&'static str);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(req)
    }
}

async fn spawn_hub() -> (Channel, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = edgecart_hub::Config::parse_from([
        "edgecart-hub",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--admin-token",
        ADMIN,
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(edgecart_hub::run(config, listener, std::future::pending()));
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
            return (ch, dir);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("hub did not start");
}

#[tokio::test]
async fn admin_services_authenticate_validate_and_work() {
    let (ch, _dir) = spawn_hub().await;
    let mut anonymous = pb::catalog_admin_client::CatalogAdminClient::new(ch.clone());
    let err = anonymous
        .list_products(pb::ListProductsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut catalog =
        pb::catalog_admin_client::CatalogAdminClient::with_interceptor(ch.clone(), Token(ADMIN));
    let category = catalog
        .create_category(pb::CreateCategoryRequest {
            name: "Tea".into(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let product = catalog
        .create_product(pb::CreateProductRequest {
            name: "Sencha".into(),
            description: "green".into(),
            price: Some(pb::Money {
                amount: 1250,
                currency: "USD".into(),
            }),
            category_id: category.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(product.category_id, category.id);
    assert_eq!(product.global_stock, 0);

    let bad_price = catalog
        .create_product(pb::CreateProductRequest {
            name: "X".into(),
            price: Some(pb::Money {
                amount: -5,
                currency: "USD".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_price.code(), Code::InvalidArgument);
    assert!(
        bad_price.message().starts_with("price.amount"),
        "{}",
        bad_price.message()
    );
    let missing = catalog
        .get_product(pb::GetProductRequest {
            id: "01900000-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let mut inventory = pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        ch.clone(),
        Token(ADMIN),
    );
    let level = inventory
        .receive_stock(pb::ReceiveStockRequest {
            product_id: product.id.clone(),
            quantity: 40,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (level.global_stock, level.hub_rights),
        (40, 40),
        "no nodes yet: all at the hub"
    );
    let zero = inventory
        .receive_stock(pb::ReceiveStockRequest {
            product_id: product.id.clone(),
            quantity: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(zero.message().starts_with("quantity"));
    let policy = inventory
        .set_allocation_policy(pb::AllocationPolicy {
            floor_per_node: 3,
            reserve_percent: 101,
        })
        .await
        .unwrap_err();
    assert_eq!(policy.code(), Code::InvalidArgument);

    let listed = catalog
        .list_products(pb::ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.products.len(), 1);
    assert_eq!(listed.products[0].global_stock, 40);

    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
