//! Decommissioning a store over real gRPC: its rights go back to the hub and on to the other
//! stores, it stops holding back change-log compaction, and its streams are refused.

mod support;

use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use edgecart_proto::stock::EntryKey;
use edgecart_proto::sync::{StockPayload, entity};
use support::{FakeNode, TestHub, eventually};
use tonic::Code;

/// The value of the `xfer[hub→node]` cell in `batches`, if they carry one for `product`.
fn transfer_in(batches: &[pb::ChangeBatch], product: &str, node: &str) -> Option<u64> {
    batches
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| c.entity == entity::STOCK)
        .filter_map(|c| serde_json::from_str::<StockPayload>(&c.payload_json).ok())
        .filter(|s| s.product_id == product)
        .filter_map(|s| match s.entry.key {
            EntryKey::Xfer { from, to } if from == ActorId::hub() && to.as_str() == node => {
                Some(s.entry.value)
            }
            _ => None,
        })
        .max()
}

fn last_seq(batches: &[pb::ChangeBatch]) -> i64 {
    batches
        .iter()
        .flat_map(|b| &b.changes)
        .map(|c| c.seq)
        .max()
        .unwrap_or(0)
}

fn rights(level: &pb::StockLevel, node: &str) -> Option<i64> {
    level
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .map(|n| n.rights)
}

fn compacted_through(hub: &TestHub) -> i64 {
    hub.sql()
        .query_row(
            "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'compacted_through'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn hub_cursor(hub: &TestHub, node: &str) -> i64 {
    hub.sql()
        .query_row(
            "SELECT hub_cursor FROM nodes WHERE node_id = ?1",
            [node],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn a_decommissioned_store_returns_its_rights_stops_pinning_compaction_and_is_refused() {
    let hub = TestHub::start().await;
    let tea = hub.product("Tea").await;
    let mut a = FakeNode::connect(&hub, "store-a", 0, 0).await.unwrap();
    let mut b = FakeNode::connect(&hub, "store-b", 0, 0).await.unwrap();

    // Default policy: a floor of 5 each, 10% reserve, the rest shared equally (no sales yet).
    let level = hub.receive(&tea, 100).await;
    assert_eq!(level.global_stock, 100);
    assert_eq!(rights(&level, "store-a"), Some(45));
    assert_eq!(rights(&level, "store-b"), Some(45));
    assert_eq!(level.hub_rights, 10);

    // B reads and acknowledges everything; A acknowledges nothing, so it pins compaction.
    let seen = b
        .read_until(|got| transfer_in(got, &tea, "store-b") == Some(45))
        .await;
    let acked = last_seq(&seen);
    b.ack_and_heartbeat(acked, 0).await;
    eventually("B's acknowledgement written", || {
        (hub_cursor(&hub, "store-b") == acked).then_some(())
    })
    .await;
    assert_eq!(compacted_through(&hub), 0, "store-a still needs the log");

    let done = hub
        .nodes()
        .decommission_node(pb::DecommissionNodeRequest {
            node_id: "store-a".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.rights_returned, 45);
    let info = done.node.unwrap();
    assert_eq!(info.node_id, "store-a");
    assert!(info.decommissioned_at_unix_ms > 0);

    // The rights went back to the hub and on to B by the policy (the hub keeps its 10% reserve);
    // the totals still add up to the global stock.
    let level = hub.stock(&tea).await;
    assert_eq!(level.global_stock, 100);
    assert_eq!(rights(&level, "store-a"), None, "no longer listed");
    assert_eq!(rights(&level, "store-b"), Some(90));
    assert_eq!(level.hub_rights, 10);

    // A's open stream ends with PERMISSION_DENIED, and so does every later attempt.
    let ended = loop {
        match a.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    let again = FakeNode::connect(&hub, "store-a", 0, 0)
        .await
        .err()
        .unwrap();
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");
    // The hub ended its side of the session too (the store itself still holds its end).
    let mut nodes = hub.nodes();
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        let listed = nodes
            .list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes;
        if !listed.iter().any(|n| n.node_id == "store-a" && n.connected) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store-a still connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // B hears of its new rights; once it acknowledges them the log is compacted past A's cursor.
    let seen = b
        .read_until(|got| transfer_in(got, &tea, "store-b") == Some(90))
        .await;
    let acked = last_seq(&seen);
    b.ack_and_heartbeat(acked, 0).await;
    let through = eventually("compaction past store-a's cursor", || {
        let c = compacted_through(&hub);
        (c >= acked).then_some(c)
    })
    .await;
    assert!(through > hub_cursor(&hub, "store-a"));

    // Listed as decommissioned; a second call changes nothing.
    let listed = hub
        .nodes()
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let a_row = listed.iter().find(|n| n.node_id == "store-a").unwrap();
    assert_eq!(
        a_row.decommissioned_at_unix_ms,
        info.decommissioned_at_unix_ms
    );
    let b_row = listed.iter().find(|n| n.node_id == "store-b").unwrap();
    assert_eq!(b_row.decommissioned_at_unix_ms, 0);
    let twice = hub
        .nodes()
        .decommission_node(pb::DecommissionNodeRequest {
            node_id: "store-a".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twice.rights_returned, 0);
    assert_eq!(
        twice.node.unwrap().decommissioned_at_unix_ms,
        info.decommissioned_at_unix_ms
    );
    assert_eq!(hub.stock(&tea).await, level);
}

#[tokio::test]
async fn decommissioning_refuses_bad_ids_and_unsynced_stores_unless_forced() {
    let hub = TestHub::start().await;
    let call = |node_id: &str, force: bool| {
        let mut nodes = hub.nodes();
        let node_id = node_id.to_string();
        async move {
            nodes
                .decommission_node(pb::DecommissionNodeRequest { node_id, force })
                .await
        }
    };
    for (id, code) in [
        ("", Code::InvalidArgument),
        ("no spaces", Code::InvalidArgument),
        ("hub", Code::InvalidArgument),
        ("store-unknown", Code::NotFound),
    ] {
        let err = call(id, false).await.unwrap_err();
        assert_eq!(err.code(), code, "{id:?}: {err:?}");
        assert!(
            !err.message().to_lowercase().contains("sql"),
            "{}",
            err.message()
        );
    }

    // The store said it has 7 changes; the hub applied none of them (they may be sales).
    let _c = FakeNode::connect(&hub, "store-c", 0, 7).await.unwrap();
    let err = call("store-c", false).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let listed = hub
        .nodes()
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(listed[0].decommissioned_at_unix_ms, 0, "nothing changed");

    // The same through the command line.
    let (ok, _, stderr) = hub.admin_cli(&["nodes", "decommission", "store-c"]).await;
    assert!(!ok && stderr.contains("has not applied yet"), "{stderr}");
    let (ok, stdout, stderr) = hub
        .admin_cli(&["nodes", "decommission", "store-c", "--force"])
        .await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("store-c decommissioned at "), "{stdout}");
    let (ok, stdout, _) = hub.admin_cli(&["nodes"]).await;
    assert!(
        ok && stdout.contains("store-c") && stdout.contains("retired"),
        "{stdout}"
    );
    assert_eq!(
        call("store-c", false)
            .await
            .unwrap()
            .into_inner()
            .rights_returned,
        0
    );
}
