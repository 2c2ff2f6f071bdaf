//! The writer half of a node's stream: the snapshot (if the node needs one), then the hub's
//! change log for the node from its cursor, the node's digest of global stock figures every
//! digest period, and a heartbeat when the log has been idle for [`HEARTBEAT`].
//!
//! The log loop wakes only for changes for this node or for every node ([`Db::subscribe_node`]),
//! not at every commit: with a thousand streams, a commit that concerns one store wakes one.
//!
//! Digests (docs/sync-protocol.md, "Global stock figures"): `stock_others` entries with
//! `seq = 0` — outside the log, never acknowledged, not resent after a reconnect; the first
//! digest of a session carries every product, each later one the products whose figure changed
//! since, at most one entry per product. Each store's digests fall at its own phase of the
//! period ([`figures::phase`]), so the fleet's digests are spread over the period.
//!
//! [`Db::subscribe_node`]: crate::db::Db::subscribe_node

use std::time::Duration;

use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::{self, hub_message};
use edgecart_proto::sync::{MAX_BATCH, StockOthersPayload, entity};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use super::{STATUS_SEND, decommissioned, msg};
use crate::figures;
use crate::replication;
use crate::state::Hub;
use crate::store::{changes, nodes};

pub const HEARTBEAT: Duration = Duration::from_secs(5);

type Out = mpsc::Sender<Result<pb::HubMessage, Status>>;

/// Sends `snapshot` (if any) page by page, then the node's digests and its changes from
/// `cursor`, until the node goes away or the stream must end.
pub(super) async fn send_changes(
    hub: Hub,
    node: ActorId,
    snapshot: Option<replication::Snapshot>,
    mut cursor: i64,
    out: Out,
) {
    // Subscribed before the snapshot: a write during it wakes the log loop below.
    let mut wakeups = hub.db.subscribe_node(node.as_str());
    if let Some(snapshot) = snapshot
        && let Err(status) = send_snapshot(&hub, &node, snapshot, &out).await
    {
        if let Some(status) = status {
            let _ = tokio::time::timeout(STATUS_SEND, out.send(Err(status))).await;
        }
        return;
    }
    let mut digest = Digests::new(&node);
    let mut next_heartbeat = Instant::now() + HEARTBEAT;
    loop {
        if digest.due() && digest.send(&hub, &out).await.is_err() {
            return;
        }
        let n = node.to_string();
        let batch = match hub
            .db
            .read(move |c| {
                // A primary-key lookup per read: how an open stream learns that its node was
                // decommissioned (the decommissioning wakes this stream).
                if nodes::is_decommissioned(c, &n)? {
                    return Ok(None);
                }
                changes::for_node(c, &n, cursor, MAX_BATCH).map(Some)
            })
            .await
        {
            Ok(Some(b)) => b,
            Ok(None) => {
                let _ =
                    tokio::time::timeout(STATUS_SEND, out.send(Err(decommissioned(&node)))).await;
                return;
            }
            Err(e) => {
                // End the stream rather than leave it open with nothing flowing to the node:
                // it reconnects with back-off and resumes from its acknowledged cursor.
                tracing::warn!(node = %node, error = %e, "reading changes for a node");
                let _ = tokio::time::timeout(STATUS_SEND, out.send(Err(Status::from(e)))).await;
                return;
            }
        };
        if let Some(last) = batch.last() {
            cursor = last.seq;
            if out
                .send(msg(hub_message::Msg::Changes(pb::ChangeBatch {
                    changes: batch,
                })))
                .await
                .is_err()
            {
                return;
            }
            next_heartbeat = Instant::now() + HEARTBEAT;
            continue;
        }
        tokio::select! {
            changed = wakeups.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(digest.next) => {}
            _ = tokio::time::sleep_until(next_heartbeat) => {
                let hb = pb::Heartbeat { unix_ms: crate::store::now_ms(), last_seq: cursor };
                if out.send(msg(hub_message::Msg::Heartbeat(hb))).await.is_err() {
                    return;
                }
                next_heartbeat = Instant::now() + HEARTBEAT;
            }
        }
    }
}

/// One stream's digests of global stock figures.
struct Digests {
    node: ActorId,
    phase: f64,
    /// Where the figures stood at the last digest (`None`: nothing sent yet this session).
    since: Option<u64>,
    next: Instant,
}

impl Digests {
    /// The first digest is due at once: the store does not know what changed while it was away.
    fn new(node: &ActorId) -> Digests {
        Digests {
            node: node.clone(),
            phase: figures::phase(node.as_str()),
            since: None,
            next: Instant::now(),
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Sends what changed since the last digest and schedules the next one at this store's
    /// phase of the current period. `Err`: the node is gone.
    async fn send(&mut self, hub: &Hub, out: &Out) -> Result<(), ()> {
        let period = figures::period(hub.connected_count());
        self.next = figures::next_slot(hub.epoch, Instant::now(), period, self.phase);
        let (entries, at) = hub.figures.digest(self.node.as_str(), self.since);
        self.since = Some(at);
        crate::observability::digest(entries.len(), period);
        if entries.is_empty() {
            return Ok(());
        }
        let version = hub.clock.now().to_string();
        let mut changes = Vec::with_capacity(entries.len().min(MAX_BATCH));
        let mut entries = entries.into_iter().peekable();
        while let Some((product, others_net)) = entries.next() {
            let payload = StockOthersPayload {
                product_id: product.to_string(),
                others_net,
            };
            let Ok(payload_json) = serde_json::to_string(&payload) else {
                continue;
            };
            changes.push(pb::Change {
                // Outside the log: never acknowledged, never resent (the next digest is newer).
                seq: 0,
                entity: entity::STOCK_OTHERS.to_string(),
                entity_id: product.to_string(),
                version: version.clone(),
                payload_json,
                ..Default::default()
            });
            if changes.len() == MAX_BATCH || entries.peek().is_none() {
                let batch = pb::ChangeBatch {
                    changes: std::mem::take(&mut changes),
                };
                out.send(msg(hub_message::Msg::Changes(batch)))
                    .await
                    .map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

/// Sends the snapshot one page per read. Each page waits for room in the bounded channel before
/// the next is read, so a slow node holds at most `OUTBOUND` pages in memory, and a reader
/// connection is held for one page at a time. `Err(None)`: the node is gone.
async fn send_snapshot(
    hub: &Hub,
    node: &ActorId,
    mut snapshot: replication::Snapshot,
    out: &Out,
) -> Result<(), Option<Status>> {
    let mut pages = 0u64;
    loop {
        let clock = hub.clock.clone();
        let (next, page) = hub
            .db
            .read(move |c| {
                let page = snapshot.next_page(c, &clock)?;
                Ok((snapshot, page))
            })
            .await
            .map_err(|e| {
                tracing::warn!(node = %node, error = %e, "reading a snapshot page");
                Some(Status::from(e))
            })?;
        snapshot = next;
        let Some(page) = page else {
            tracing::info!(node = %node, pages, "snapshot sent");
            return Ok(());
        };
        pages += 1;
        // A page is at most `MAX_BATCH` changes except for a product with unusual cells.
        for chunk in page.chunks(MAX_BATCH) {
            let batch = pb::ChangeBatch {
                changes: chunk.to_vec(),
            };
            if out
                .send(msg(hub_message::Msg::Changes(batch)))
                .await
                .is_err()
            {
                return Err(None);
            }
        }
    }
}
