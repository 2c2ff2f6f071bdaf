//! The node's end of the sync stream: connect, say Hello, send the change log from the hub's
//! cursor, apply what the hub sends, acknowledge after commit; on any failure reconnect with
//! exponential back-off and full jitter (honouring the hub's retry hint, see [`backoff`]),
//! resuming from the acknowledged cursors.
//!
//! [`backoff`]: edgecart_proto::backoff

use std::time::Duration;

use edgecart_proto::pb::sync_client::SyncClient;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{MAX_BATCH, PROTOCOL_VERSION, RELEASE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::{apply, changelog};
use crate::error::Error;
use crate::state::AppState;
use edgecart_proto::backoff::{self, Backoff};

const HEARTBEAT: Duration = Duration::from_secs(5);
/// Messages buffered towards the hub: a slow hub slows this node's sending, memory stays flat.
const OUTBOUND: usize = 16;

/// Where the hub is: its URL (`http://` on loopback or a trusted network, `https://` else) and
/// the CA to trust for it (`--hub-ca`; the system roots when `None`).
#[derive(Clone, Debug)]
pub struct HubLink {
    pub url: String,
    pub ca_pem: Option<Vec<u8>>,
}

impl HubLink {
    /// The gRPC endpoint: TLS for an `https://` URL (rustls; the server's name is checked
    /// against the certificate, the chain against `ca_pem` or the system roots).
    pub fn endpoint(&self) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(self.url.clone())?;
        if !self.url.starts_with("https://") {
            return Ok(endpoint);
        }
        let tls = match &self.ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint.tls_config(tls)
    }
}

/// Runs until `shutdown` is cancelled.
///
/// Reconnect pacing ([`Backoff`]): full jitter under a doubling ceiling, at most 500 ms for the
/// first minute of an outage (so a store is back in sync within about a second of the link
/// returning) and 10 s after that (so a long outage does not hammer the hub); the hub's retry
/// hint, when it sends one, is waited for. The outage clock restarts whenever a session was
/// established.
pub async fn run(state: AppState, hub: HubLink, token: String, shutdown: CancellationToken) {
    let mut backoff = Backoff::new();
    loop {
        let outcome = tokio::select! {
            r = session(&state, &hub, &token) => r,
            _ = shutdown.cancelled() => break,
        };
        let was_connected = state.sync.is_connected();
        state.sync.set_connected(None);
        let hint = match &outcome {
            Err(SyncError::Status(status)) => backoff::retry_hint(status),
            _ => None,
        };
        match (&outcome, hint) {
            (Ok(()), _) => tracing::info!("hub closed the sync stream"),
            (Err(e), Some(hint)) => {
                tracing::info!(error = %e, retry_in_ms = hint.as_millis() as u64, "the hub is busy; retrying when it said")
            }
            (Err(e), None) => tracing::warn!(error = %e, "sync stream failed"),
        }
        if was_connected {
            crate::observability::sync_reconnect();
            backoff.connected();
        }
        let pause = backoff.pause(hint);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    state.sync.set_connected(None);
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("{0}")]
    Local(#[from] Error),
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

fn node_msg(m: node_message::Msg) -> pb::NodeMessage {
    pb::NodeMessage { msg: Some(m) }
}

async fn session(state: &AppState, hub: &HubLink, token: &str) -> Result<(), SyncError> {
    let channel = hub
        .endpoint()?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .connect()
        .await?;
    let (hub_cursor, last_seq) = state.db.read(changelog::cursors).await?;
    // Restored from an older copy (noticed here): say where the copy ended, not where the log
    // has got to since, so the hub re-syncs this node and renumbers what it wrote since,
    // instead of taking those entries for replays of the lost ones.
    let last_seq = super::watermark::marker_seq(&super::watermark::marker(&state.data_dir))
        .await
        .map_or(last_seq, |copy| copy.min(last_seq));
    let (out, rx) = mpsc::channel(OUTBOUND);
    out.send(node_msg(node_message::Msg::Hello(pb::Hello {
        node_id: state.node_id.to_string(),
        protocol_version: PROTOCOL_VERSION,
        release: RELEASE.to_string(),
        hub_cursor,
        last_seq,
    })))
    .await
    .map_err(|_| SyncError::Protocol("outbound closed"))?;
    let outbound = tokio_stream::StreamExt::map(ReceiverStream::new(rx), |m| {
        crate::observability::sync_sent(&m);
        m
    });
    let mut request = tonic::Request::new(outbound);
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| SyncError::Protocol("the hub token is not valid header text"))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut inbound = SyncClient::new(channel.clone())
        .max_decoding_message_size(16 << 20)
        .stream(request)
        .await
        .inspect_err(|s| {
            if s.code() == tonic::Code::FailedPrecondition {
                tracing::error!(message = %s.message(), "the hub refused this node's protocol version");
            }
        })?
        .into_inner();
    let first = inbound.message().await?;
    if let Some(m) = &first {
        crate::observability::sync_received(m);
    }
    let welcome = match first {
        Some(pb::HubMessage {
            msg: Some(hub_message::Msg::Welcome(w)),
        }) => w,
        _ => {
            return Err(SyncError::Protocol(
                "the hub did not answer Hello with Welcome",
            ));
        }
    };
    if welcome.resync {
        tracing::warn!(
            hub_acknowledged = welcome.node_cursor,
            last_seq,
            "the hub has more of this node's changes than this database: re-syncing"
        );
        let acked = welcome.node_cursor;
        state
            .db
            .write(move |tx| changelog::renumber_after(tx, acked))
            .await?;
    } else {
        let acked = welcome.node_cursor;
        state
            .db
            .write(move |tx| {
                changelog::acknowledged(tx, acked)?;
                crate::catalog::inventory::forget_boot_cells(tx)
            })
            .await?;
        super::watermark::restore_dealt_with(state).await;
    }
    tracing::info!(hub_release = %welcome.release, node_cursor = welcome.node_cursor, "connected to the hub");
    state.sync.set_hub(channel, token);
    state.sync.set_connected(Some(out.clone()));
    let sender = tokio::spawn(send_changes(
        state.clone(),
        welcome.node_cursor,
        out.clone(),
    ));
    let outcome = receive(state, &mut inbound, &out, welcome.resync).await;
    sender.abort();
    outcome
}

async fn receive(
    state: &AppState,
    inbound: &mut tonic::Streaming<pb::HubMessage>,
    out: &mpsc::Sender<pb::NodeMessage>,
    mut resyncing: bool,
) -> Result<(), SyncError> {
    while let Some(message) = inbound.message().await? {
        crate::observability::sync_received(&message);
        let Some(m) = message.msg else { continue };
        match m {
            hub_message::Msg::Changes(batch) => {
                let st = state.clone();
                let cursor = state
                    .db
                    .write(move |tx| apply::apply_batch(tx, &st, &batch.changes))
                    .await?;
                // Acknowledged only after the transaction committed.
                if cursor > 0
                    && out
                        .send(node_msg(node_message::Msg::Ack(pb::Ack { seq: cursor })))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            hub_message::Msg::Ack(ack) => {
                state
                    .db
                    .write(move |tx| changelog::acknowledged(tx, ack.seq))
                    .await?;
            }
            hub_message::Msg::TopUp(reply) => {
                if let Some(transfer) = reply.transfer {
                    let st = state.clone();
                    state
                        .db
                        .write(move |tx| {
                            apply::apply_batch(tx, &st, std::slice::from_ref(&transfer)).map(|_| ())
                        })
                        .await?;
                }
                state.sync.top_up_done(&reply.request_id, reply.granted);
            }
            // The hub heartbeats when it has nothing more to send: a re-sync snapshot is all in.
            // Cells it did not send were never known to it; stop waiting for them.
            hub_message::Msg::Heartbeat(_) if resyncing => {
                resyncing = false;
                state
                    .db
                    .write(crate::catalog::inventory::forget_boot_cells)
                    .await?;
                tracing::info!("re-sync after a restore complete");
                super::watermark::restore_dealt_with(state).await;
            }
            hub_message::Msg::Heartbeat(_) => {}
            hub_message::Msg::Welcome(_) => return Err(SyncError::Protocol("a second Welcome")),
        }
    }
    Ok(())
}

/// Streams this node's change log from `cursor` (what the hub has), waking after every commit,
/// with a heartbeat when idle.
async fn send_changes(state: AppState, mut cursor: i64, out: mpsc::Sender<pb::NodeMessage>) {
    let committed = state.db.committed();
    loop {
        let batch = match state
            .db
            .read(move |c| changelog::after(c, cursor, MAX_BATCH))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the change log");
                return;
            }
        };
        if let Some(last) = batch.last() {
            cursor = last.seq;
            let message = node_msg(node_message::Msg::Changes(pb::ChangeBatch {
                changes: batch,
            }));
            if out.send(message).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = committed.notified() => {}
            _ = tokio::time::sleep(HEARTBEAT) => {
                let hb = pb::Heartbeat { unix_ms: crate::time::now_ms(), last_seq: cursor };
                if out.send(node_msg(node_message::Msg::Heartbeat(hb))).await.is_err() {
                    return;
                }
            }
        }
    }
}
