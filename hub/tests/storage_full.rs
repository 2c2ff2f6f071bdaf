//! The Sync stream while the hub's disk is full (simulated with `PRAGMA max_page_count` on the
//! hub's connection): a batch that cannot be stored is not acknowledged, the stream ends with
//! UNAVAILABLE naming the storage failure, and once space is back the node's re-sent batch is
//! applied exactly once, without restarting the hub.

use std::time::Duration;

use edgecart_hub::Hub;
use edgecart_hub::db::Db;
use edgecart_hub::sync::SyncService;
use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{PROTOCOL_VERSION, UserPayload, entity};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(5);

async fn serve(hub: Hub) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::sync_server::SyncServer::new(SyncService {
                hub,
                shutdown: Default::default(),
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

struct Session {
    out: mpsc::Sender<pb::NodeMessage>,
    inbound: Streaming<pb::HubMessage>,
    welcome: pb::Welcome,
}

async fn connect(ch: &Channel, credential: &str, node: &ActorId, last_seq: i64) -> Session {
    let (out, rx) = mpsc::channel(16);
    out.send(pb::NodeMessage {
        msg: Some(node_message::Msg::Hello(pb::Hello {
            node_id: node.to_string(),
            protocol_version: PROTOCOL_VERSION,
            release: "test".into(),
            hub_cursor: 0,
            last_seq,
        })),
    })
    .await
    .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    let mut inbound = pb::sync_client::SyncClient::new(ch.clone())
        .stream(request)
        .await
        .unwrap()
        .into_inner();
    let welcome = match tokio::time::timeout(WAIT, inbound.message()).await {
        Ok(Ok(Some(pb::HubMessage {
            msg: Some(hub_message::Msg::Welcome(w)),
        }))) => w,
        other => panic!("expected Welcome, got {other:?}"),
    };
    Session {
        out,
        inbound,
        welcome,
    }
}

/// Enough sizeable accounts that storing them needs new database pages.
fn batch(node: &ActorId, users: usize) -> Vec<pb::Change> {
    let clock = Clock::new(node.clone());
    (0..users)
        .map(|i| {
            let id = edgecart_proto::ids::new_id().to_string();
            pb::Change {
                seq: i as i64 + 1,
                entity: entity::USER.into(),
                entity_id: id.clone(),
                version: clock.now().to_string(),
                payload_json: serde_json::to_string(&UserPayload {
                    id,
                    email: Some(format!("user{i}@example.com")),
                    name: "x".repeat(2000),
                    password_hash: None,
                    role: "customer".into(),
                    status: "active".into(),
                    conflicted: false,
                    created_at: 1,
                    updated_at: 1,
                })
                .unwrap(),
                ..Default::default()
            }
        })
        .collect()
}

async fn send_batch(s: &Session, changes: &[pb::Change]) {
    s.out
        .send(pb::NodeMessage {
            msg: Some(node_message::Msg::Changes(pb::ChangeBatch {
                changes: changes.to_vec(),
            })),
        })
        .await
        .unwrap();
}

/// The next Ack, or the status the stream ended with (other messages are skipped).
async fn next_ack(s: &mut Session) -> Result<i64, tonic::Status> {
    loop {
        match tokio::time::timeout(WAIT, s.inbound.message()).await {
            Err(_) => panic!("neither an Ack nor the end of the stream"),
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Ok(Some(pb::HubMessage {
                msg: Some(hub_message::Msg::Ack(a)),
            }))) => return Ok(a.seq),
            Ok(Ok(Some(_))) => {}
        }
    }
}

async fn stored(hub: &Hub) -> (i64, i64) {
    hub.db
        .read(|c| {
            let users = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            let changes = c.query_row(
                "SELECT count(*) FROM changes WHERE entity = 'user'",
                [],
                |r| r.get(0),
            )?;
            Ok((users, changes))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_ends_the_stream_unacknowledged_and_the_resent_batch_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("hub.db")).unwrap();
    let hub = Hub::new(db, Clock::new(ActorId::hub()), "admin-token-for-tests-1");
    let ch = serve(hub.clone()).await;
    let node = ActorId::parse("store-a").unwrap();
    let credential = hub
        .db
        .write(|tx| edgecart_hub::node_admin::enroll(tx, "store-a", true))
        .await
        .unwrap()
        .text;
    let changes = batch(&node, 40);
    let last = changes.len() as i64;

    let mut s = connect(&ch, &credential, &node, last).await;
    assert_eq!(s.welcome.node_cursor, 0);
    // The disk fills up: the database file may not grow by a single page.
    let pages = hub.db.page_count().await.unwrap();
    hub.db.set_max_page_count(pages).await.unwrap();
    send_batch(&s, &changes).await;
    let status = next_ack(&mut s)
        .await
        .expect_err("no Ack for a batch not stored");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("storage"), "{status:?}");
    assert_eq!(stored(&hub).await, (0, 0));

    // Still full: the node reconnects (Hello needs no new page) and is refused again.
    let mut s = connect(&ch, &credential, &node, last).await;
    assert_eq!(s.welcome.node_cursor, 0, "nothing of the batch was applied");
    send_batch(&s, &changes).await;
    assert_eq!(
        next_ack(&mut s).await.unwrap_err().code(),
        Code::Unavailable
    );

    // Space is back, same hub process: the re-sent batch is applied once and acknowledged.
    hub.db.set_max_page_count(1 << 30).await.unwrap();
    let mut s = connect(&ch, &credential, &node, last).await;
    assert_eq!(s.welcome.node_cursor, 0);
    assert!(!s.welcome.resync);
    send_batch(&s, &changes).await;
    assert_eq!(next_ack(&mut s).await.unwrap(), last);
    assert_eq!(stored(&hub).await, (40, 40));
    // A replay (the Ack lost on the way) changes nothing.
    send_batch(&s, &changes).await;
    assert_eq!(next_ack(&mut s).await.unwrap(), last);
    assert_eq!(stored(&hub).await, (40, 40));
    let s = connect(&ch, &credential, &node, last).await;
    assert_eq!(s.welcome.node_cursor, last);
}
