//! Decommissioning a store with real processes: a hub, two nodes, the operator's CLI.

use std::time::Duration;

use edgecart_e2e::{
    ADMIN_TOKEN, AdminToken, TestHub, TestNode, order, register, stock_at, wait_until,
};
use edgecart_proto::pb;
use reqwest::Client;

const CONVERGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_store_hands_its_rights_to_the_others_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let store1 = TestNode::start("store-1", &dir.path().join("store-1"), Some(&hub.url()));
    let store2 = TestNode::start("store-2", &dir.path().join("store-2"), Some(&hub.url()));
    let client = Client::new();
    let nothing = || async { String::new() };
    let nodes = pb::node_admin_client::NodeAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let node_row = |id: &'static str| {
        let mut nodes = nodes.clone();
        async move {
            let listed = nodes.list_nodes(pb::ListNodesRequest {}).await.ok()?;
            listed
                .into_inner()
                .nodes
                .into_iter()
                .find(|n| n.node_id == id)
        }
    };
    // Both connected before the delivery, so its allocation is the last (no hand-backs after).
    wait_until(
        CONVERGE,
        "both stores connected",
        || async {
            let (a, b) = (node_row("store-1").await?, node_row("store-2").await?);
            (a.connected && b.connected).then_some(())
        },
        nothing,
    )
    .await;
    let product = hub.stocked_product("Kettle", 2500, 40).await;

    // store-1 sells 3, and the hub has heard of it.
    let (here, _) = wait_until(
        CONVERGE,
        "rights at store-1",
        || async {
            stock_at(&client, &store1, &product)
                .await
                .filter(|(h, g)| *h > 3 && *g == 40)
        },
        nothing,
    )
    .await;
    let token = register(&client, &store1, "last@example.com").await;
    let (status, body) = order(&client, &store1, &token, &product, 3).await;
    assert_eq!(status, 201, "{body}");
    wait_until(
        CONVERGE,
        "the hub to apply store-1's sale",
        || async {
            let level = hub.stock(&product).await?;
            let s1 = level.nodes.iter().find(|n| n.node_id == "store-1")?;
            let row = node_row("store-1").await?;
            (s1.sold == 3 && row.pending_changes == 0).then_some(())
        },
        nothing,
    )
    .await;
    let before = hub.stock(&product).await.unwrap();
    let rights_of = |level: &pb::StockLevel, id: &str| {
        level
            .nodes
            .iter()
            .find(|n| n.node_id == id)
            .map(|n| n.rights)
    };
    let (s1_before, s2_before) = (
        rights_of(&before, "store-1").unwrap(),
        rights_of(&before, "store-2").unwrap(),
    );
    assert_eq!(before.global_stock, 37);
    assert_eq!(s1_before, here - 3);

    let out = std::process::Command::new(edgecart_e2e::bin("edgecart-admin"))
        .args(["--hub", &hub.url(), "--token", ADMIN_TOKEN])
        .args(["nodes", "decommission", "store-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{s1_before} units of selling rights back")),
        "{stdout}"
    );

    // Its rights went to store-2 and the hub's reserve; the totals still add up.
    let after = hub.stock(&product).await.unwrap();
    assert_eq!(after.global_stock, 37);
    assert!(
        after.nodes.iter().all(|n| n.node_id != "store-1"),
        "{after:?}"
    );
    let s2 = rights_of(&after, "store-2").unwrap();
    assert!(s2 > s2_before, "{s2_before} -> {s2}");
    assert_eq!(s2 + after.hub_rights, 37, "{after:?}");

    // store-2 learns its new rights and can sell them; store-1 is cut off and stays so.
    wait_until(
        CONVERGE,
        "store-2 to see its new rights",
        || async {
            stock_at(&client, &store2, &product)
                .await
                .filter(|(h, _)| *h == s2)
        },
        nothing,
    )
    .await;
    let token2 = register(&client, &store2, "next@example.com").await;
    let (status, body) = order(&client, &store2, &token2, &product, s2).await;
    assert_eq!(status, 201, "{body}");
    wait_until(
        CONVERGE,
        "store-1 to be refused",
        || async {
            let row = node_row("store-1").await?;
            (row.decommissioned_at_unix_ms > 0
                && !row.connected
                && store1.proc.log().contains("was decommissioned"))
            .then_some(())
        },
        || async { store1.proc.log() },
    )
    .await;
}
