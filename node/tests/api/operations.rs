//! Health, readiness, metrics, the OpenAPI document, request ids, sync status.

use crate::helpers::{TestApp, json_of, problem};

#[tokio::test]
async fn health_ready_metrics_and_request_ids() {
    let app = TestApp::spawn().await;
    let health = json_of(app.get("/healthz", None).await, 200).await;
    assert_eq!(health["status"], "ok");
    let ready = json_of(app.get("/readyz", None).await, 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["schema_version"], 6);

    let r = app.get("/v1/products", None).await;
    let request_id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert!(
        request_id.is_some_and(|id| id.len() >= 32),
        "every response carries a request id"
    );
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "abc-123",
        "a caller's request id is kept"
    );

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("edgecart_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/products\""), "{metrics}");
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let app = TestApp::spawn().await;
    let doc = json_of(app.get("/openapi.json", None).await, 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/users",
        "/v1/auth/login",
        "/v1/users/me",
        "/v1/users/{id}",
        "/v1/products",
        "/v1/products/{id}",
        "/v1/products/{id}/stock",
        "/v1/categories",
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/status",
        "/v1/orders/{id}/payments",
        "/v1/payments/{id}",
        "/v1/payments/{id}/refunds",
        "/v1/notifications",
        "/v1/sync/status",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ProductView") && schemas.contains_key("Problem"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn sync_status_counts_unacknowledged_changes() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let before = json_of(app.get("/v1/sync/status", Some(&admin)).await, 200).await;
    assert_eq!(before["mode"], "standalone");
    assert_eq!(before["hub_connected"], false);
    let pending = before["pending_changes"].as_i64().unwrap();
    app.product("Logged", 100, 5).await; // a product row + a stock cell
    let after = json_of(app.get("/v1/sync/status", Some(&admin)).await, 200).await;
    assert_eq!(after["pending_changes"].as_i64().unwrap(), pending + 2);
    let (customer, _) = app.register("c@example.com").await;
    problem(app.get("/v1/sync/status", Some(&customer)).await, 403, None).await;
}
