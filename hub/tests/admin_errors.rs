//! The hub's admin services over real gRPC when its storage fails (a full disk, simulated with
//! `PRAGMA max_page_count` on the hub's connection): the client gets `UNAVAILABLE` with a plain
//! message — no SQLite text, no path — and the hub keeps working once space is back.

use std::time::Duration;

use edgecart_hub::Hub;
use edgecart_hub::admin::Admin;
use edgecart_hub::db::Db;
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;

async fn serve(hub: Hub) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::catalog_admin_server::CatalogAdminServer::new(Admin {
                hub,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("hub did not start");
}

fn product(description: String) -> pb::CreateProductRequest {
    pb::CreateProductRequest {
        name: "Kettle".into(),
        description,
        price: Some(pb::Money {
            amount: 4500,
            currency: "USD".into(),
        }),
        category_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_admin_calls_with_a_plain_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgecart-hub.db");
    // Migrations that rebuild tables leave free pages behind; without them, a file capped at
    // its current size is full.
    drop(Db::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("VACUUM")
        .unwrap();
    let db = Db::open(&path).unwrap();
    let hub = Hub::new(db, Clock::new(ActorId::hub()), "admin-token-for-tests-123");
    let mut catalog = pb::catalog_admin_client::CatalogAdminClient::new(serve(hub.clone()).await);

    let pages = hub.db.page_count().await.unwrap();
    hub.db.set_max_page_count(pages).await.unwrap();
    // Bigger than a page, so the insert must grow the file.
    let err = catalog
        .create_product(product("x".repeat(4000)))
        .await
        .expect_err("nothing can be stored");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let message = err.message().to_lowercase();
    for leak in ["sql", "disk", "database", "full", "/", ".db"] {
        assert!(!message.contains(leak), "{leak:?} leaked: {err:?}");
    }
    assert!(message.contains("retry"), "{err:?}");
    let dir_name = dir.path().to_string_lossy().to_lowercase();
    assert!(!message.contains(&dir_name), "{err:?}");
    let listed = catalog
        .list_products(pb::ListProductsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.products.is_empty(), "nothing was kept: {listed:?}");

    // Space is back: the same call works.
    hub.db.set_max_page_count(1 << 30).await.unwrap();
    catalog
        .create_product(product("x".repeat(4000)))
        .await
        .expect("stored once there is space");
}
