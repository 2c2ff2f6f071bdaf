//! Revoking a store with real processes: a hub, two enrolled stores, the operator's CLI. The
//! revoked store's live stream ends within seconds, it keeps selling offline within the rights
//! it holds, its reconnects are refused and counted; the other store is not disturbed. A
//! rotated credential brings it back.

use std::process::Command;
use std::time::{Duration, Instant};

use edgecart_e2e::{
    ADMIN_TOKEN, TestHub, TestNode, admin_login, bin, get_json_auth, order, register, stock_at,
    wait_until,
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
