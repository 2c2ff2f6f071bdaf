//! The `Sync` service: one bidirectional stream per node.
//!
//! Per stream, a reader (this task) applies what the node sends and answers acks and top-ups,
//! and a writer task ([`send`]) streams the hub's change log for the node from its cursor and,
//! every digest period, the global stock figures that changed. Both feed one bounded channel,
//! so a slow node slows the hub's sending for that node instead of growing memory.
//!
//! # Layout
//! - this file: the service, authentication, and the reader half of a stream.
//! - [`send`]: the writer half: snapshot pages, the change log, digests, heartbeats.
//! - [`gate`]: the bound on Hellos handled at once, and the retry hint beyond it.

pub mod gate;
pub mod send;

use std::pin::Pin;
use std::time::Duration;

use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::sync_server::Sync;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{MAX_BATCH, PROTOCOL_VERSION, RELEASE, is_supported};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::auth;
use crate::replication;
use crate::state::{Ended, Hub};
use crate::store::{changes, credentials, nodes};

pub use send::HEARTBEAT;

/// How often a streaming node's acknowledged cursor is written down (and compaction runs).
const ACK_PERSIST_EVERY: Duration = Duration::from_secs(2);
/// Messages buffered towards one node.
const OUTBOUND: usize = 16;
/// How long ending a stream may wait to queue its final status.
const STATUS_SEND: Duration = Duration::from_secs(5);

pub struct SyncService {
    pub hub: Hub,
    /// Cancelled when the hub shuts down: every stream then ends with `UNAVAILABLE`, even one
    /// whose node never closes its side (the gRPC server's graceful shutdown waits for them).
    pub shutdown: tokio_util::sync::CancellationToken,
}

type HubStream = Pin<Box<dyn Stream<Item = Result<pb::HubMessage, Status>> + Send>>;

fn msg(m: hub_message::Msg) -> Result<pb::HubMessage, Status> {
    Ok(pb::HubMessage { msg: Some(m) })
}

#[tonic::async_trait]
impl Sync for SyncService {
    type StreamStream = HubStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        // Held until the Welcome is queued: beyond the bound the store is told to come back
        // later (UNAVAILABLE with a retry hint) before anything is read or written for it.
        let _hello = self.hub.hellos.enter().await.map_err(|retry| {
            self.hub.count_refused("busy");
            gate::busy(retry)
        })?;
        // The store is who its credential says, whatever its Hello claims.
        let (node, credential, retired) = authenticate(&self.hub, request.metadata()).await?;
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::NodeMessage {
                msg: Some(node_message::Msg::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "hello: the first message must be Hello",
                ));
            }
        };
        if hello.node_id != node.as_str() {
            // Refused before anything is written or connected: the named store's own stream,
            // if any, goes on undisturbed.
            self.hub.count_refused("wrong_store");
            tracing::warn!(node = %node, named = %ActorId::parse(&hello.node_id).map_or("<invalid>".into(), |a| a.to_string()),
                "refused a Hello naming another store than the credential's");
            return Err(Status::permission_denied(format!(
                "hello.node_id: this credential was issued to store {node}, not to the store named"
            )));
        }
        if !is_supported(hello.protocol_version) {
            tracing::warn!(node = %node, version = hello.protocol_version, release = %hello.release,
                "refused a node speaking an unsupported protocol version");
            return Err(Status::failed_precondition(format!(
                "protocol version {} is not supported: this hub (release {RELEASE}) speaks {} and {}",
                hello.protocol_version,
                PROTOCOL_VERSION.saturating_sub(1).max(1),
                PROTOCOL_VERSION
            )));
        }
        // A retired store keeps retrying with back-off: refuse it with a read (made with the
        // credential's), not a write. The write below checks again, in its transaction.
        if retired {
            tracing::debug!(node = %node, "refused a decommissioned node");
            return Err(decommissioned(&node));
        }
        let (clock, n, h) = (self.hub.clock.clone(), node.clone(), hello.clone());
        let session = write_as_active(&self.hub, &node, &credential, move |tx| {
            replication::hello(tx, &clock, &n, &h)
        })
        .await
        .inspect_err(|s| {
            if s.code() == tonic::Code::PermissionDenied {
                tracing::warn!(node = %node, "refused a decommissioned node");
            }
        })?;
        let (live, mut ended) = self.hub.connect(node.as_str(), &credential);
        tracing::info!(node = %node, release = %hello.release, node_cursor = session.node_cursor,
            hub_cursor = session.hub_cursor, resync = session.resync, "node connected");

        let (out, rx) = mpsc::channel(OUTBOUND);
        let _ = out
            .send(msg(hub_message::Msg::Welcome(pb::Welcome {
                protocol_version: PROTOCOL_VERSION,
                release: RELEASE.to_string(),
                node_cursor: session.node_cursor,
                resync: session.resync,
            })))
            .await;
        // Both halves of the stream stay in the call's span (method, request id): their log
        // lines name the stream they belong to.
        let mut sender = tokio::spawn(
            send::send_changes(
                self.hub.clone(),
                node.clone(),
                session.snapshot,
                session.hub_cursor,
                out.clone(),
            )
            .in_current_span(),
        );
        let (hub, shutdown) = (self.hub.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = receive(&hub, &node, &credential, inbound, &out, &shutdown, &mut ended) => outcome,
                // The writer ended the stream (with a status, e.g. the node was decommissioned,
                // or because the node is gone): stop reading too, so the session ends.
                _ = &mut sender => Ok(()),
            };
            if let Err(status) = outcome {
                crate::observability::stream_error(status.code());
                tracing::info!(node = %node, code = ?status.code(), error = %status.message(), "node stream ended");
                // End the response with the status, so the node sees why (e.g. UNAVAILABLE while
                // the hub's storage fails), reconnects with back-off and re-sends what was not
                // acknowledged. Bounded: a node that stopped reading must not pin this task.
                let _ = tokio::time::timeout(STATUS_SEND, out.send(Err(status))).await;
            }
            sender.abort();
            hub.disconnect(node.as_str(), live);
        }.in_current_span());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The status a decommissioned node gets: it must not sync again under this id.
pub(crate) fn decommissioned(node: &ActorId) -> Status {
    Status::permission_denied(format!(
        "node {node} was decommissioned: the hub accepts no more sync from it"
    ))
}

/// Who a Sync call is: the store its credential was issued to, and whether that store was
/// decommissioned (one read for both). Every refusal is counted by reason and answered
/// UNAUTHENTICATED; nothing of the presented token is logged.
pub(crate) async fn authenticate(
    hub: &Hub,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<(ActorId, String, bool), Status> {
    let refuse = |reason: &'static str| {
        hub.count_refused(reason);
        tracing::warn!(reason, "refused a node connection");
        Status::unauthenticated("a valid node credential is required")
    };
    let Some((id, hash)) = auth::parse(auth::bearer(metadata)) else {
        return Err(refuse("malformed"));
    };
    let id = id.to_string();
    let lookup = id.clone();
    let found = hub
        .db
        .read(move |c| {
            let Some(row) = credentials::get(c, &lookup)? else {
                return Ok(None);
            };
            let retired = nodes::is_decommissioned(c, &row.node_id)?;
            Ok(Some((row, retired)))
        })
        .await?;
    let Some((row, retired)) = found else {
        return Err(refuse("unknown"));
    };
    if !auth::constant_time_eq(&row.secret_sha256, &hash) {
        return Err(refuse("wrong_secret"));
    }
    if row.revoked {
        hub.count_refused("revoked");
        tracing::warn!(node = %row.node_id, credential_id = %id, reason = "revoked", "refused a node connection");
        return Err(Ended::Revoked.status());
    }
    let node = ActorId::parse(&row.node_id)
        .map_err(|_| crate::error::HubError::Internal("a stored node id is invalid".into()))?;
    Ok((node, id, retired))
}

/// Runs `f` in a write transaction unless `node` was decommissioned (PERMISSION_DENIED) or the
/// stream's credential was revoked (UNAUTHENTICATED). The checks are in the same transaction,
/// so nothing a retired node sends lands after the hub took its stock cells over, and nothing
/// lands from a credential once its revocation committed.
pub(crate) async fn write_as_active<T, F>(
    hub: &Hub,
    node: &ActorId,
    credential: &str,
    f: F,
) -> Result<T, Status>
where
    F: FnOnce(&crate::db::Tx) -> crate::error::Result<T> + Send + 'static,
    T: Send + 'static,
{
    write_as_active_then(hub, node, credential, f, |_: &T| {}).await
}

/// [`write_as_active`], then `after` on the writer right after the commit (whether or not this
/// stream is still there to hear of it): for in-memory state that must follow the database.
async fn write_as_active_then<T, F, A>(
    hub: &Hub,
    node: &ActorId,
    credential: &str,
    f: F,
    after: A,
) -> Result<T, Status>
where
    F: FnOnce(&crate::db::Tx) -> crate::error::Result<T> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
{
    let (n, c) = (node.clone(), credential.to_string());
    hub.db
        .write_then(
            move |tx| {
                if nodes::is_decommissioned(tx, n.as_str())? {
                    return Ok(Err(decommissioned(&n)));
                }
                if !credentials::is_active(tx, &c)? {
                    return Ok(Err(Ended::Revoked.status()));
                }
                f(tx).map(Ok)
            },
            move |outcome: &Result<T, Status>| {
                if let Ok(v) = outcome {
                    after(v);
                }
            },
        )
        .await?
}

/// Resolves when the hub ends this stream (replaced by a newer one, or revoked).
async fn ended_by_hub(ended: &mut watch::Receiver<Option<Ended>>) -> Status {
    let why = match ended.wait_for(Option::is_some).await {
        Ok(why) => *why,
        // The sender went without a reason: only after this stream was already over.
        Err(_) => None,
    };
    why.map_or_else(|| Status::aborted("stream ended by the hub"), Ended::status)
}

/// Applies what the node sends until the stream ends.
async fn receive(
    hub: &Hub,
    node: &ActorId,
    credential: &str,
    mut inbound: Streaming<pb::NodeMessage>,
    out: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    shutdown: &tokio_util::sync::CancellationToken,
    ended: &mut watch::Receiver<Option<Ended>>,
) -> Result<(), Status> {
    let mut acked: Option<i64> = None;
    let ends = Ends { shutdown, ended };
    let outcome = receive_loop(hub, node, credential, &mut inbound, out, &mut acked, ends).await;
    if let Some(seq) = acked {
        // Best effort: a stale cursor only delays compaction, and the node tells its real cursor
        // in its next Hello. Must not hide why the stream ended.
        let _ = persist_ack(hub, node, Some(seq), None).await;
    }
    outcome
}

/// Writes down the node's acknowledged cursor `seq` (then compacts) and/or the newest sequence
/// its heartbeat reported. A failure is logged and returned: the caller keeps the cursor and
/// writes it at the next opportunity (a stale value only delays compaction).
async fn persist_ack(
    hub: &Hub,
    node: &ActorId,
    seq: Option<i64>,
    last_seq: Option<i64>,
) -> crate::error::Result<()> {
    let n = node.to_string();
    let written = hub
        .db
        .write(move |tx| {
            if last_seq.is_some() {
                nodes::seen(tx, &n, last_seq)?;
            }
            if let Some(seq) = seq {
                nodes::set_hub_cursor(tx, &n, seq)?;
                changes::compact(tx)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = &written {
        tracing::warn!(node = %node, ?seq, error = %e, "could not record the node's sync progress; will retry");
    }
    written
}

/// What ends a stream from the hub's side: its shutdown, or the hub replacing or revoking it.
struct Ends<'a> {
    shutdown: &'a tokio_util::sync::CancellationToken,
    ended: &'a mut watch::Receiver<Option<Ended>>,
}

async fn receive_loop(
    hub: &Hub,
    node: &ActorId,
    credential: &str,
    inbound: &mut Streaming<pb::NodeMessage>,
    out: &mpsc::Sender<Result<pb::HubMessage, Status>>,
    acked: &mut Option<i64>,
    ends: Ends<'_>,
) -> Result<(), Status> {
    let Ends { shutdown, ended } = ends;
    let mut last_persist = tokio::time::Instant::now();
    // Shutdown is checked only between messages: a batch or top-up being applied finishes and
    // is answered first. The node takes UNAVAILABLE like any lost stream: reconnect, back-off.
    while let Some(message) = tokio::select! {
        m = inbound.next() => m,
        _ = shutdown.cancelled() => return Err(Status::unavailable("hub shutting down")),
        status = ended_by_hub(ended) => return Err(status),
    } {
        let Some(m) = message?.msg else { continue };
        match m {
            node_message::Msg::Changes(batch) => {
                if batch.changes.len() > MAX_BATCH * 4 {
                    return Err(Status::invalid_argument("changes: batch too large"));
                }
                let (clock, n, received) = (hub.clock.clone(), node.clone(), batch.changes.len());
                // A failed write (full disk, I/O error) ends the stream with UNAVAILABLE and no
                // Ack: nothing of the batch was kept, and the node re-sends it after reconnecting.
                // The stock cells that grew go into the global figures as soon as the batch is
                // committed, on the writer (even if this stream ends meanwhile).
                let figures = hub.figures.clone();
                let applied = write_as_active_then(
                    hub,
                    node,
                    credential,
                    move |tx| replication::apply_batch(tx, &clock, &n, &batch.changes),
                    move |applied: &replication::Applied| {
                        figures.merge(applied.cells.iter().map(|(p, e)| (p.as_str(), e)));
                    },
                )
                .await?;
                hub.count_refused_changes(applied.refused);
                let cursor = applied.cursor;
                crate::observability::merged(node.as_str(), received);
                // Acknowledged only now that the transaction has committed.
                if out
                    .send(msg(hub_message::Msg::Ack(pb::Ack { seq: cursor })))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // The node's acknowledgement only allows compaction; recording each one would cost a
            // fsynced write per batch. It is kept here and written with the next heartbeat and
            // when the stream ends (a stale value only delays compaction: the node tells its
            // real cursor in its next Hello). A failed write keeps the value for the next try
            // (at the next heartbeat or `ACK_PERSIST_EVERY` later) and does not end the stream.
            node_message::Msg::Ack(ack) => {
                *acked = (*acked).max(Some(ack.seq));
                hub.note_ack(node.as_str(), ack.seq);
                // Under constant load there are no heartbeats: persist every few seconds anyway.
                if last_persist.elapsed() > ACK_PERSIST_EVERY
                    && let Some(seq) = *acked
                {
                    last_persist = tokio::time::Instant::now();
                    if persist_ack(hub, node, Some(seq), None).await.is_ok() {
                        *acked = None;
                    }
                }
            }
            node_message::Msg::Heartbeat(hb) => {
                // A failed write is retried with the next heartbeat; the stream goes on.
                if persist_ack(hub, node, *acked, Some(hb.last_seq))
                    .await
                    .is_ok()
                    && acked.take().is_some()
                {
                    last_persist = tokio::time::Instant::now();
                }
            }
            node_message::Msg::TopUp(req) => {
                let quantity = u64::try_from(req.quantity)
                    .ok()
                    .filter(|q| *q > 0)
                    .ok_or_else(|| Status::invalid_argument("top_up.quantity: must be positive"))?;
                let (clock, n, product) = (hub.clock.clone(), node.clone(), req.product_id.clone());
                // Granted only once committed; a failed write ends the stream like a failed batch.
                let (granted, transfer) = write_as_active(hub, node, credential, move |tx| {
                    replication::top_up(tx, &clock, &n, &product, quantity)
                })
                .await?;
                tracing::info!(node = %node, product_id = %req.product_id, requested = quantity, granted, "top-up");
                let reply = pb::TopUpResponse {
                    request_id: req.request_id,
                    granted: granted as i64,
                    transfer,
                };
                if out.send(msg(hub_message::Msg::TopUp(reply))).await.is_err() {
                    break;
                }
            }
            node_message::Msg::Hello(_) => {
                return Err(Status::invalid_argument("hello: sent twice on one stream"));
            }
        }
    }
    Ok(())
}
