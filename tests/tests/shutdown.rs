//! Shutdown is an input: on SIGTERM the hub, a node and `edgecart-local` exit 0 within a few
//! seconds whatever is connected (real processes, real streams), the hub's Sync streams end
//! with `UNAVAILABLE` "hub shutting down", and the stores keep selling and reconnect when the
//! hub is back.

use std::time::Duration;

use edgecart_e2e::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_TOKEN, AdminToken, Bearer, TestHub, TestNode, get_json,
    get_json_auth, local_node_addrs, login, order, register, start_local, stock_at, wait_until,
};
use edgecart_proto::pb::{self, node_message};
use edgecart_proto::sync::PROTOCOL_VERSION;
use reqwest::Client;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CONVERGE: Duration = Duration::from_secs(20);
/// What the issue asks: an exit within a few seconds (an orchestrator's grace period is 30 s).
const EXIT_WITHIN: Duration = Duration::from_secs(5);

async fn hub_connected(client: &Client, node: &TestNode, admin: &str) -> bool {
    get_json_auth(client, node.url("/v1/sync/status"), admin).await["hub_connected"] == true
}

async fn wait_connected(client: &Client, node: &TestNode, admin: &str, want: bool, what: &str) {
    wait_until(
        CONVERGE,
        what,
        || async { (hub_connected(client, node, admin).await == want).then_some(()) },
        || async { node.proc.log() },
    )
    .await;
}

/// Waits for `line` in the log (a process's last lines may still be on their way from its
/// stderr pipe when it has exited).
async fn logged(proc: &edgecart_e2e::Proc, line: &str) {
    wait_until(
        CONVERGE,
        &format!("{line:?} in the log"),
        || async { proc.log().contains(line).then_some(()) },
        || async { proc.log() },
    )
    .await;
}

/// Asserts that `what`, sent SIGTERM, exited 0 within `EXIT_WITHIN`; prints the time taken.
fn terminated(
    what: &str,
    outcome: Option<(std::process::ExitStatus, Duration)>,
    log: impl FnOnce() -> String,
) -> Duration {
    let Some((status, took)) = outcome else {
        panic!(
            "{what} still running {EXIT_WITHIN:?} after SIGTERM; log:\n{}",
            log()
        );
    };
    println!("{what}: exited {status} {took:?} after SIGTERM");
    assert!(
        status.success(),
        "{what} exited with {status}; log:\n{}",
        log()
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_exits_on_sigterm_with_stores_connected_and_they_reconnect_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(&dir.path().join("hub"));
    let nodes: Vec<TestNode> = (1..=2)
        .map(|i| {
            TestNode::start(
                &format!("store-{i}"),
                &dir.path().join(format!("store-{i}")),
                Some(&hub.url()),
            )
        })
        .collect();
    let client = Client::new();
    let product = hub.stocked_product("Drained kettle", 4500, 20).await;
    let mut admins = Vec::new();
    for node in &nodes {
        wait_until(
            CONVERGE,
            &format!("rights at {}", node.id),
            || async {
                stock_at(&client, node, &product)
                    .await
                    .filter(|(here, _)| *here > 0)
            },
            || async { node.proc.log() },
        )
        .await;
        let admin = login(&client, node, ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .unwrap();
        wait_connected(&client, node, &admin, true, "the store to be connected").await;
        admins.push(admin);
    }
    // A stream whose node never closes its side nor sends anything after Hello.
    let mut raw = pb::sync_client::SyncClient::with_interceptor(
        hub.channel().await,
        Bearer(hub.enroll("silent-1")),
    );
    let (raw_out, rx) = mpsc::channel(4);
    raw_out
        .send(pb::NodeMessage {
            msg: Some(node_message::Msg::Hello(pb::Hello {
                node_id: "silent-1".into(),
                protocol_version: PROTOCOL_VERSION,
                release: "raw".into(),
                hub_cursor: 0,
                last_seq: 0,
            })),
        })
        .await
        .unwrap();
    let mut raw_in = raw
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    // Every store has acknowledged every hub change up to `acknowledged` (the hub knows it in
    // memory; it writes acknowledgements down lazily, so the shutdown must write them).
    let node_admin = pb::node_admin_client::NodeAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let acknowledged = wait_until(
        CONVERGE,
        "both stores to acknowledge every hub change",
        || {
            let mut admin = node_admin.clone();
            let db_path = hub.db_path();
            async move {
                // Read first: every change up to `last` exists before the hub is asked.
                let last = {
                    let db = rusqlite::Connection::open_with_flags(
                        &db_path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .ok()?;
                    edgecart_hub::store::changes::last_seq(&db).ok()?
                };
                let list = admin
                    .list_nodes(pb::ListNodesRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let caught_up = list
                    .nodes
                    .iter()
                    .filter(|n| n.node_id.starts_with("store-") && n.hub_changes_pending == 0)
                    .count();
                (caught_up == 2).then_some(last)
            }
        },
        || async { hub.proc.log() },
    )
    .await;
    drop(node_admin);

    let logged_before: Vec<usize> = nodes.iter().map(|n| n.proc.log().lines().count()).collect();
    let outcome = hub.terminate(EXIT_WITHIN);
    terminated("the hub", outcome, || hub.proc.log());
    logged(&hub.proc, "stopped").await;
    let db = rusqlite::Connection::open(hub.db_path()).unwrap();
    for node in &nodes {
        let row = edgecart_hub::store::nodes::get(&db, &node.id)
            .unwrap()
            .expect("the store is known");
        // The hub may have queued more since (e.g. stock figures); those need not be acked.
        let unacked =
            edgecart_hub::store::changes::for_node(&db, &node.id, row.hub_cursor, 1).unwrap();
        assert!(
            unacked.iter().all(|c| c.seq > acknowledged),
            "{}'s acknowledgement of everything up to {acknowledged} was not written down at \
             shutdown (stored cursor {})",
            node.id,
            row.hub_cursor
        );
    }
    drop(db);

    // The silent stream was ended with a status a node understands, not cut.
    let status = loop {
        match tokio::time::timeout(EXIT_WITHIN, raw_in.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("the stream is still open after the hub exited"),
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("hub shutting down"), "{status:?}");
    drop(raw_out);

    // The stores saw the stream end in order, not cut: the status above, or (when the reset of
    // their sending half reaches them first, between applying a batch and acknowledging it)
    // the end of the stream; a transport error here would mean a cut connection. They log it
    // just after marking themselves disconnected.
    for ((node, admin), before) in nodes.iter().zip(&admins).zip(logged_before) {
        wait_connected(&client, node, admin, false, "the store to see the hub gone").await;
        let first_end = wait_until(
            CONVERGE,
            &format!("{} to log why the stream ended", node.id),
            || async {
                node.proc
                    .log()
                    .lines()
                    .skip(before)
                    .find(|l| {
                        l.contains("sync stream failed") || l.contains("hub closed the sync stream")
                    })
                    .map(str::to_string)
            },
            || async { node.proc.log() },
        )
        .await;
        assert!(
            first_end.contains("hub shutting down")
                || first_end.contains("hub closed the sync stream"),
            "{}: {first_end}",
            node.id
        );
    }
    let customer = register(&client, &nodes[0], "after-term@example.com").await;
    let (code, body) = order(&client, &nodes[0], &customer, &product, 1).await;
    assert_eq!(code, 201, "selling while the hub is away: {body}");

    // The hub is back: both stores reconnect by themselves and the sale reaches it.
    hub.restart();
    for (node, admin) in nodes.iter().zip(&admins) {
        wait_connected(&client, node, admin, true, "the store to reconnect").await;
    }
    wait_until(
        CONVERGE,
        "the sale made while the hub was away to reach it",
        || async { hub.stock(&product).await.filter(|l| l.global_stock == 19) },
        || async { hub.proc.log() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exits_on_sigterm_while_connected_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(&dir.path().join("hub"));
    let mut node = TestNode::start("store-1", &dir.path().join("store-1"), Some(&hub.url()));
    let client = Client::new();
    let admin = login(&client, &node, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    wait_connected(&client, &node, &admin, true, "the store to be connected").await;

    let node_admin = pb::node_admin_client::NodeAdminClient::with_interceptor(
        hub.channel().await,
        AdminToken(ADMIN_TOKEN),
    );
    let outcome = node.terminate(EXIT_WITHIN);
    terminated("the node", outcome, || node.proc.log());
    logged(&node.proc, "stopped").await;
    wait_until(
        CONVERGE,
        "the hub to see the store gone",
        || {
            let mut admin = node_admin.clone();
            async move {
                let list = admin
                    .list_nodes(pb::ListNodesRequest {})
                    .await
                    .ok()?
                    .into_inner();
                list.nodes
                    .iter()
                    .any(|n| n.node_id == "store-1" && !n.connected)
                    .then_some(())
            }
        },
        || async { hub.proc.log() },
    )
    .await;

    node.restart();
    let admin = login(&client, &node, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    wait_connected(&client, &node, &admin, true, "the store to reconnect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgecart_local_exits_on_sigterm_with_everything_in_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut local = start_local(dir.path(), 2);
    let client = Client::new();
    // Both stores are up and streaming to the hub: the state in which it used to hang.
    let nodes = wait_until(
        CONVERGE,
        "both stores connected to the hub",
        || async {
            let log = local.log();
            let addrs = local_node_addrs(&local);
            (addrs.len() == 2 && log.matches("connected to the hub").count() >= 2).then_some(addrs)
        },
        || async { local.log() },
    )
    .await;
    for addr in &nodes {
        assert!(
            get_json(&client, format!("http://{addr}/v1/products"))
                .await
                .is_some()
        );
    }
    let hub = local.addr;

    let outcome = local.terminate(EXIT_WITHIN);
    terminated("edgecart-local", outcome, || local.log());
    // Nothing of it is left listening: the hub's and the stores' ports are closed.
    for addr in nodes.iter().chain([&hub]) {
        assert!(
            std::net::TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_err(),
            "{addr} still accepts connections"
        );
    }
}
