//! Accounts: profiles, roles, password changes, erasure, and the admin list.

use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, TestApp, json_of, problem};

#[tokio::test]
async fn profile_update_password_change_and_erasure() {
    let app = TestApp::spawn().await;
    let (token, id) = app.register("nora@example.com").await;

    let me = json_of(app.get("/v1/users/me", Some(&token)).await, 200).await;
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "nora@example.com");
    assert_eq!(me["role"], "customer");
    assert!(me.get("password_hash").is_none() && me.get("password").is_none());

    let updated = json_of(
        app.patch(
            &format!("/v1/users/{id}"),
            Some(&token),
            &json!({"name": "Nora B."}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(updated["name"], "Nora B.");

    // A customer cannot make themselves admin.
    problem(
        app.patch(
            &format!("/v1/users/{id}"),
            Some(&token),
            &json!({"role": "admin"}),
        )
        .await,
        403,
        None,
    )
    .await;
    let me = json_of(app.get("/v1/users/me", Some(&token)).await, 200).await;
    assert_eq!(me["role"], "customer");

    // Changing the password needs the current one.
    let change = |body: serde_json::Value| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move {
            app.client
                .put(app.url(&format!("/v1/users/{id}/password")))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    problem(
        change(json!({"new_password": "another-pass-9"})).await,
        422,
        Some("current_password"),
    )
    .await;
    problem(
        change(json!({"current_password": "wrong-pass-1", "new_password": "another-pass-9"})).await,
        422,
        Some("current_password"),
    )
    .await;
    problem(
        change(json!({"current_password": "customer-pass-1", "new_password": "short"})).await,
        422,
        Some("new_password"),
    )
    .await;
    let r =
        change(json!({"current_password": "customer-pass-1", "new_password": "another-pass-9"}))
            .await;
    assert_eq!(r.status(), 204);
    problem(
        app.post(
            "/v1/auth/login",
            None,
            &json!({"email": "nora@example.com", "password": "customer-pass-1"}),
        )
        .await,
        401,
        None,
    )
    .await;
    let token = app.login("nora@example.com", "another-pass-9").await;

    // Deleting erases personal data but keeps the id; the old token stops working at once.
    let r = app
        .client
        .delete(app.url(&format!("/v1/users/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(app.get("/v1/users/me", Some(&token)).await, 401, None).await;
    problem(
        app.post(
            "/v1/auth/login",
            None,
            &json!({"email": "nora@example.com", "password": "another-pass-9"}),
        )
        .await,
        401,
        None,
    )
    .await;
    let admin = app.admin_token().await;
    let erased = json_of(app.get(&format!("/v1/users/{id}"), Some(&admin)).await, 200).await;
    assert_eq!(erased["id"], id.as_str());
    assert!(erased["email"].is_null());
    assert_eq!(erased["name"], "");
    assert_eq!(erased["status"], "deleted");
    // The email is free again.
    app.register("nora@example.com").await;
}

#[tokio::test]
async fn admins_list_and_manage_users_with_pagination() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.register(&format!("user{i}@example.com")).await.1);
    }
    let (customer, _) = app.register("nosy@example.com").await;
    problem(app.get("/v1/users", Some(&customer)).await, 403, None).await;

    // 7 accounts (admin + 5 + nosy), 3 per page.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..5 {
        let path = match &token {
            Some(t) => format!("/v1/users?page_size=3&page_token={t}"),
            None => "/v1/users?page_size=3".to_string(),
        };
        let page = json_of(app.get(&path, Some(&admin)).await, 200).await;
        for u in page["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(seen.contains(&ADMIN_EMAIL.to_string()));
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 7, "no account twice across pages");

    // An admin may promote a customer, who then has admin rights.
    let promoted = json_of(
        app.patch(
            &format!("/v1/users/{}", ids[0]),
            Some(&admin),
            &json!({"role": "admin"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(promoted["role"], "admin");
    let token = app.login("user0@example.com", "customer-pass-1").await;
    json_of(app.get("/v1/users", Some(&token)).await, 200).await;
}
