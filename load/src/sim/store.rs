//! One simulated store's task: a `Sync/Stream` session as a node runs it (Hello, Welcome,
//! re-send what the hub has not acknowledged, apply and acknowledge what it sends, heartbeat
//! when idle, sell at its rate within its rights), and on any failure a reconnect with the
//! node's back-off (`edgecart_proto::backoff`: full jitter, the hub's retry hint).
//!
//! Everything runs in the one task: sends go through `reserve()` in the same `select!` as the
//! reads, so a store never blocks reading while its outbound channel is full (acks are
//! coalesced into one pending value meanwhile).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgecart_proto::backoff::{self, Backoff};
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb::sync_client::SyncClient;
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::sync::{MAX_BATCH, PROTOCOL_VERSION, RELEASE};
use rand::{Rng, SeedableRng as _};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::book::{Book, Effect};
use super::stats::Counters;
use super::watch::GlobalWatch;
use crate::error::{ErrorCounts, status_kind};
use crate::hub::Secret;

const HEARTBEAT: Duration = Duration::from_secs(5);
/// Messages buffered towards the hub, as at a node.
const OUTBOUND: usize = 16;
/// A top-up request left unanswered this long may be asked again.
const TOP_UP_RETRY: Duration = Duration::from_secs(5);
const TOP_UP_UNITS: i64 = 5;

/// A request to sell one unit of a product now (a propagation probe); answered with when the
/// sale was made, or `None` without rights.
pub(crate) struct SellRequest {
    pub product: String,
    pub reply: oneshot::Sender<Option<Instant>>,
}

/// What the fleet shares with one store's task.
pub(crate) struct Store {
    pub idx: usize,
    pub id: ActorId,
    pub credential: Secret,
    pub counters: Counters,
    pub sell: Mutex<Option<SellRequest>>,
    pub wake: Notify,
}

/// What every store of a fleet shares.
pub(crate) struct Shared {
    pub epoch: Instant,
    pub sale_every: Option<Duration>,
    pub welcome_timeout: Duration,
    pub exclude: Arc<HashSet<String>>,
    pub errors: ErrorCounts,
    pub watch: Option<Arc<GlobalWatch>>,
}

#[derive(Debug)]
enum Ended {
    Stopped,
    /// Why, and the hub's retry hint if it gave one.
    Failed(String, Option<Duration>),
}

/// Runs store `store` until `stop`.
pub(crate) async fn run(
    store: Arc<Store>,
    shared: Arc<Shared>,
    channel: Channel,
    stop: CancellationToken,
) {
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut book = Book::new(store.id.clone(), shared.exclude.clone());
    // Sales are spread over the period (a random first tick), and go on while disconnected:
    // a store sells offline within its rights and uploads on reconnect.
    let mut sales = shared.sale_every.map(|every| {
        let first = every.mul_f64(rng.random_range(0.0..1.0));
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut backoff = Backoff::new();
    loop {
        let sessions_before = store.counters.sessions.load(Ordering::Relaxed);
        let ended = session(
            &store, &shared, &channel, &mut book, &mut sales, &stop, &mut rng,
        )
        .await;
        store.counters.connected.store(false, Ordering::Release);
        let hint = match ended {
            Ended::Stopped => return,
            Ended::Failed(kind, hint) => {
                shared.errors.add(kind);
                hint
            }
        };
        if store.counters.sessions.load(Ordering::Relaxed) > sessions_before {
            backoff.connected();
        }
        let pause = backoff.pause(hint);
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(until) => break,
                _ = tick(&mut sales) => {
                    if book.sell_any(&mut rng).is_some() {
                        store.counters.sales.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

async fn tick(sales: &mut Option<Interval>) {
    match sales {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Queues a `TopUpRequest` for `product`, unless one is still open.
fn ask_top_up(book: &mut Book, product: String, queue: &mut VecDeque<pb::NodeMessage>) {
    if book
        .top_up
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() < TOP_UP_RETRY)
    {
        return;
    }
    let id = uuid::Uuid::now_v7().to_string();
    book.top_up = Some((id.clone(), Instant::now()));
    queue.push_back(node_msg(node_message::Msg::TopUp(pb::TopUpRequest {
        request_id: id,
        product_id: product,
        quantity: TOP_UP_UNITS,
    })));
}

fn node_msg(m: node_message::Msg) -> pb::NodeMessage {
    pb::NodeMessage { msg: Some(m) }
}

fn batch(changes: Vec<pb::Change>) -> pb::NodeMessage {
    node_msg(node_message::Msg::Changes(pb::ChangeBatch { changes }))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn failed(prefix: &str, status: &tonic::Status) -> Ended {
    Ended::Failed(
        status_kind(prefix, status.code()),
        backoff::retry_hint(status),
    )
}

#[allow(clippy::too_many_arguments)]
async fn session(
    store: &Store,
    shared: &Shared,
    channel: &Channel,
    book: &mut Book,
    sales: &mut Option<Interval>,
    stop: &CancellationToken,
    rng: &mut rand::rngs::SmallRng,
) -> Ended {
    let (tx, rx) = mpsc::channel(OUTBOUND);
    let hello = node_msg(node_message::Msg::Hello(pb::Hello {
        node_id: store.id.to_string(),
        protocol_version: PROTOCOL_VERSION,
        release: RELEASE.to_string(),
        hub_cursor: book.hub_cursor,
        last_seq: book.seq,
    }));
    if tx.send(hello).await.is_err() {
        return Ended::Failed("protocol".into(), None);
    }
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    let Ok(bearer) = format!("Bearer {}", store.credential.expose()).parse() else {
        return Ended::Failed("credential_not_header_text".into(), None);
    };
    request.metadata_mut().insert("authorization", bearer);
    let mut client = SyncClient::new(channel.clone()).max_decoding_message_size(16 << 20);
    // Opening the stream and the Welcome share one deadline: under a reconnect storm the hub
    // may take seconds to answer; a store that waits forever would never retry.
    let opened = tokio::select! {
        _ = stop.cancelled() => return Ended::Stopped,
        r = tokio::time::timeout(shared.welcome_timeout, async {
            let mut inbound = client.stream(request).await?.into_inner();
            let first = inbound.message().await?;
            Ok::<_, tonic::Status>((inbound, first))
        }) => r,
    };
    let (mut inbound, first) = match opened {
        Err(_) => return Ended::Failed("welcome_timeout".into(), None),
        Ok(Err(status)) => return failed("connect", &status),
        Ok(Ok(v)) => v,
    };
    let welcome = match first {
        Some(pb::HubMessage {
            msg: Some(hub_message::Msg::Welcome(w)),
        }) => w,
        _ => return Ended::Failed("protocol_no_welcome".into(), None),
    };
    let c = &store.counters;
    let since_epoch = Instant::now().saturating_duration_since(shared.epoch);
    c.welcome_us
        .store(since_epoch.as_micros() as u64 + 1, Ordering::Release);
    c.sessions.fetch_add(1, Ordering::AcqRel);
    c.connected.store(true, Ordering::Release);
    book.welcomed(welcome.node_cursor);

    let mut queue: VecDeque<pb::NodeMessage> = VecDeque::new();
    let resend: Vec<pb::Change> = book.unacked.iter().cloned().collect();
    for chunk in resend.chunks(MAX_BATCH) {
        queue.push_back(batch(chunk.to_vec()));
    }
    let mut pending_ack: Option<i64> = None;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let has_out = !queue.is_empty() || pending_ack.is_some();
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ended::Stopped,
            permit = tx.reserve(), if has_out => {
                let Ok(permit) = permit else { return Ended::Failed("stream_closed".into(), None) };
                let m = match queue.pop_front() {
                    Some(m) => m,
                    None => node_msg(node_message::Msg::Ack(pb::Ack {
                        seq: pending_ack.take().unwrap_or_default(),
                    })),
                };
                if let Some(node_message::Msg::Changes(b)) = &m.msg {
                    c.sent.fetch_add(b.changes.len() as u64, Ordering::Relaxed);
                }
                permit.send(m);
                last_sent = tokio::time::Instant::now();
            }
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ended::Failed("stream_ended_by_hub".into(), None),
                    Err(status) => return failed("stream", &status),
                };
                match m.msg {
                    Some(hub_message::Msg::Changes(b)) => {
                        let last = b.changes.iter().map(|c| c.seq).max();
                        for change in &b.changes {
                            c.received(&change.entity, 1);
                            match book.apply(change) {
                                Ok(Effect::Global(product, view)) => {
                                    if let Some(w) = &shared.watch
                                        && w.product() == product
                                    {
                                        w.observe(store.idx, view);
                                    }
                                }
                                Ok(Effect::Send(own)) => queue.push_back(batch(vec![own])),
                                Ok(Effect::None) => {}
                                Err(what) => shared.errors.add(format!("malformed_{what}")),
                            }
                        }
                        if let Some(last) = last {
                            pending_ack = pending_ack.max(Some(last));
                        }
                    }
                    Some(hub_message::Msg::Ack(ack)) => book.acked(ack.seq),
                    Some(hub_message::Msg::TopUp(reply)) => {
                        if book.top_up.as_ref().is_some_and(|(id, _)| *id == reply.request_id) {
                            book.top_up = None;
                        }
                        if reply.granted > 0 {
                            c.top_ups.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(transfer) = reply.transfer
                            && book.apply(&transfer).is_err()
                        {
                            shared.errors.add("malformed_top_up");
                        }
                    }
                    Some(hub_message::Msg::Heartbeat(_)) | None => {}
                    Some(hub_message::Msg::Welcome(_)) => {
                        return Ended::Failed("protocol_second_welcome".into(), None);
                    }
                }
            }
            _ = store.wake.notified() => {
                let request = store.sell.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(SellRequest { product, reply }) = request
                    && !reply.is_closed()
                {
                    let sold = book.sell(&product).map(|own| {
                        queue.push_back(batch(vec![own]));
                        c.sales.fetch_add(1, Ordering::Relaxed);
                        Instant::now()
                    });
                    if sold.is_none() {
                        // Like a node short of rights while online: ask the hub for more.
                        ask_top_up(book, product, &mut queue);
                    }
                    let _ = reply.send(sold);
                }
            }
            _ = tick(sales) => {
                if let Some(own) = book.sell_any(rng) {
                    queue.push_back(batch(vec![own]));
                    c.sales.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.no_rights.fetch_add(1, Ordering::Relaxed);
                    if let Some(product) = book.top_up_candidate(rng) {
                        ask_top_up(book, product, &mut queue);
                    }
                }
            }
            _ = tokio::time::sleep_until(last_sent + HEARTBEAT) => {
                queue.push_back(node_msg(node_message::Msg::Heartbeat(pb::Heartbeat {
                    unix_ms: now_ms(),
                    last_seq: book.seq,
                })));
                // Not sent yet, but due: no second heartbeat while this one waits.
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}
