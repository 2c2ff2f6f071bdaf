//! Revoking a store with real processes: a hub, two enrolled stores, the operator's CLI. The
//! revoked store's live stream ends within seconds, it keeps selling offline within the rights
//! it holds, its reconnects are refused and counted; the other store is not disturbed. A
//! rotated credential brings it back.

use std::process::Command;
use std::time::{Duration, Instant};

use edgecart_e2e::{
    ADMIN_TOKEN, TestHub, TestNode, admin_login, bin, get_json_auth, login, order, register,
    stock_at, wait_until,
};
use reqwest::Client;

const CONVERGE: Duration = Duration::from_secs(20);

fn admin_cli(hub: &TestHub, args: &[&str]) -> String {
    let out = Command::new(bin("edgecart-admin"))
        .args(["--hub", &hub.url(), "--token", ADMIN_TOKEN])
        .args(args)
        .output()
        .expect("edgecart-admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn connected(client: &Client, node: &TestNode, admin: &str) -> bool {
    get_json_auth(client, node.url("/v1/sync/status"), admin).await["hub_connected"] == true
}

fn revoked_refusals(hub: &TestHub) -> usize {
    hub.proc
        .log()
        .lines()
        .filter(|l| l.contains("refused a node connection") && l.contains("revoked"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_store_is_cut_off_within_seconds_and_keeps_selling_offline() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let store1 = TestNode::start("store-1", &dir.path().join("store-1"), Some(&hub.url()));
    let store2 = TestNode::start("store-2", &dir.path().join("store-2"), Some(&hub.url()));
    let client = Client::new();
    let (admin1, admin2) = (
        admin_login(&client, &store1).await,
        admin_login(&client, &store2).await,
    );
    let product = hub.stocked_product("Kettle", 2500, 40).await;
    wait_until(
        CONVERGE,
        "rights at both stores",
        || async {
            let a = stock_at(&client, &store1, &product).await?;
            let b = stock_at(&client, &store2, &product).await?;
            (a.0 > 2 && b.0 > 2 && connected(&client, &store1, &admin1).await).then_some(())
        },
        || async { format!("hub:\n{}", hub.proc.log()) },
    )
    .await;
    let shopper = register(&client, &store1, "kept@example.com").await;

    // Revoked: the live stream ends within seconds.
    let started = Instant::now();
    let said = admin_cli(&hub, &["nodes", "revoke", "store-1"]);
    assert!(said.contains("live stream was ended"), "{said}");
    wait_until(
        Duration::from_secs(5),
        "store-1 to lose its stream",
        || async { (!connected(&client, &store1, &admin1).await).then_some(()) },
        || async { format!("node:\n{}", store1.proc.log()) },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // Its reconnects are refused (UNAUTHENTICATED) and counted.
    wait_until(
        CONVERGE,
        "the hub to refuse two reconnects of the revoked store",
        || async { (revoked_refusals(&hub) >= 2).then_some(()) },
        || async { format!("hub:\n{}", hub.proc.log()) },
    )
    .await;
    assert!(
        store1.proc.log().contains("revoked"),
        "the node is told why"
    );
    assert!(!connected(&client, &store1, &admin1).await);
    // It keeps selling offline within the rights it holds; store-2 is undisturbed.
    let (status, body) = order(&client, &store1, &shopper, &product, 1).await;
    assert_eq!(status, 201, "{body}");
    assert!(connected(&client, &store2, &admin2).await);

    // A new credential (rotation) lets it back in, and its offline sale reaches the hub.
    let credential = admin_cli(&hub, &["nodes", "rotate", "store-1"]);
    let mut store1 = store1;
    store1.kill9();
    let store1 = TestNode::start_with_token(
        "store-1",
        &dir.path().join("store-1"),
        Some(&hub.url()),
        credential.trim(),
    );
    wait_until(
        CONVERGE,
        "the offline sale at the hub",
        || async {
            let level = hub.stock(&product).await?;
            let at = level.nodes.iter().find(|n| n.node_id == "store-1")?;
            (at.sold == 1).then_some(())
        },
        || async { format!("node:\n{}", store1.proc.log()) },
    )
    .await;
    // No credential text in either log.
    assert!(!hub.proc.log().contains(credential.trim()));
    assert!(!store1.proc.log().contains(credential.trim()));
}

/// Whether `email` appears anywhere in a store's database files (the database and its WAL).
fn in_db_files(node: &TestNode, email: &str) -> bool {
    let db = node.db_path();
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    [db, wal].iter().any(|path| {
        std::fs::read(path).is_ok_and(|bytes| {
            bytes
                .windows(email.len())
                .any(|w| w.eq_ignore_ascii_case(email.as_bytes()))
        })
    })
}

async fn status_of_me(client: &Client, node: &TestNode, token: &str) -> u16 {
    client
        .get(node.url("/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reaches_another_store_only_by_signing_in_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(&dir.path().join("hub"));
    let a = TestNode::start("store-a", &dir.path().join("store-a"), Some(&hub.url()));
    let b = TestNode::start("store-b", &dir.path().join("store-b"), Some(&hub.url()));
    let c = TestNode::start("store-c", &dir.path().join("store-c"), Some(&hub.url()));
    let client = Client::new();
    let admin_a = admin_login(&client, &a).await;
    let email = "roamer@example.com";
    let token_a = register(&client, &a, email).await;
    wait_until(
        CONVERGE,
        "the registration to reach the hub",
        || async {
            let s = get_json_auth(&client, a.url("/v1/sync/status"), &admin_a).await;
            (s["hub_connected"] == true && s["pending_changes"] == 0).then_some(())
        },
        || async { format!("store-a:\n{}", a.proc.log()) },
    )
    .await;
    // Anything the hub sends everyone after the account arrived has reached both stores: had
    // the account been sent to every store, it would be there by now.
    let product = hub.stocked_product("Barrier tea", 500, 30).await;
    for node in [&b, &c] {
        wait_until(
            CONVERGE,
            &format!("{} to receive the later product", node.id),
            || stock_at(&client, node, &product),
            || async { format!("hub:\n{}", hub.proc.log()) },
        )
        .await;
    }
    assert!(
        in_db_files(&a, email),
        "the store it registered at holds it"
    );
    assert!(
        !in_db_files(&b, email),
        "store-b holds none of the chain's other customers"
    );
    assert!(!in_db_files(&c, email));

    // A token is worth nothing at another store (each store signs with its own key).
    assert_eq!(status_of_me(&client, &a, &token_a).await, 200);
    assert_eq!(status_of_me(&client, &b, &token_a).await, 401);

    // A wrong password at a store that does not hold the account: refused, nothing kept.
    assert_eq!(login(&client, &c, email, "not-the-pass-1").await, None);
    assert!(!in_db_files(&c, email));

    // Signing in at store-b: verified with the hub, and the account is kept there.
    let token_b = login(&client, &b, email, "shopper-pass-1")
        .await
        .expect("the hub verifies the customer of store-a");
    assert_eq!(status_of_me(&client, &b, &token_b).await, 200);
    assert!(in_db_files(&b, email));
    assert!(!in_db_files(&c, email));

    // The account's later changes reach the stores holding it.
    let me = get_json_auth(&client, a.url("/v1/users/me"), &token_a).await;
    let changed = client
        .put(a.url(&format!("/v1/users/{}/password", me["id"].as_str().unwrap())))
        .bearer_auth(&token_a)
        .json(&serde_json::json!({"current_password": "shopper-pass-1", "new_password": "new-shopper-pass-2"}))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    wait_until(
        CONVERGE,
        "the new password to work at store-b",
        || login(&client, &b, email, "new-shopper-pass-2"),
        || async { format!("store-b:\n{}", b.proc.log()) },
    )
    .await;
    assert_eq!(login(&client, &b, email, "shopper-pass-1").await, None);

    // Offline, a store signs in only the customers it holds.
    hub.kill9();
    let admin_b = admin_login(&client, &b).await;
    wait_until(
        CONVERGE,
        "store-c to notice the hub is gone",
        || async {
            let admin_c = admin_login(&client, &c).await;
            (!connected(&client, &c, &admin_c).await && !connected(&client, &b, &admin_b).await)
                .then_some(())
        },
        || async { String::new() },
    )
    .await;
    assert!(
        login(&client, &b, email, "new-shopper-pass-2")
            .await
            .is_some()
    );
    assert_eq!(login(&client, &c, email, "new-shopper-pass-2").await, None);
    assert!(!in_db_files(&c, email));
}
