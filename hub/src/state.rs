//! The hub's shared state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgecart_proto::hlc::Clock;
use tokio::sync::watch;

use crate::db::Db;
use crate::figures::Figures;
use crate::sync::gate::HelloGate;

/// Hellos handled at once unless `--hello-concurrency` says otherwise.
pub const DEFAULT_HELLO_CONCURRENCY: u16 = 128;

#[derive(Clone)]
pub struct Hub {
    pub db: Db,
    pub clock: Arc<Clock>,
    pub admin_token: Arc<str>,
    // A std Mutex: held only to insert/remove/read a map entry, never across an await.
    live: Arc<Mutex<HashMap<String, Live>>>,
    /// Refused Sync connections by reason, and refused change entries (for tests and
    /// operators; also exported as metrics).
    refused: Arc<Mutex<HashMap<&'static str, u64>>>,
    refused_changes: Arc<AtomicU64>,
    sessions: Arc<AtomicU64>,
    /// Global stock figures for display, the source of the stores' digests.
    pub figures: Arc<Figures>,
    /// The bound on Hellos handled at once.
    pub hellos: Arc<HelloGate>,
    /// The origin of every store's digest schedule (see `figures::next_slot`).
    pub epoch: tokio::time::Instant,
    /// The highest hub sequence each connected node acknowledged in its current session; the
    /// database copy is written lazily (every few seconds), this one at once, for reporting.
    acks: Arc<Mutex<HashMap<String, i64>>>,
}

impl Hub {
    pub fn new(db: Db, clock: Clock, admin_token: &str) -> Hub {
        Self::with_hello_concurrency(db, clock, admin_token, DEFAULT_HELLO_CONCURRENCY)
    }

    pub fn with_hello_concurrency(
        db: Db,
        clock: Clock,
        admin_token: &str,
        hello_concurrency: u16,
    ) -> Hub {
        Hub {
            db,
            clock: Arc::new(clock),
            admin_token: admin_token.into(),
            live: Arc::default(),
            refused: Arc::default(),
            refused_changes: Arc::default(),
            sessions: Arc::default(),
            figures: Arc::default(),
            hellos: HelloGate::new(usize::from(hello_concurrency)),
            epoch: tokio::time::Instant::now(),
            acks: Arc::default(),
        }
    }

    /// Marks a node connected with credential `credential`; returns the session id to pass to
    /// `disconnect`, and what ends the stream early (see [`Ended`]). One live stream per store:
    /// a stream already open for `node` is ended (it was replaced by this one).
    pub fn connect(&self, node: &str, credential: &str) -> (u64, watch::Receiver<Option<Ended>>) {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        let (end, ended) = watch::channel(None);
        let live = Live {
            session,
            credential: credential.to_string(),
            end,
        };
        let old = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), live);
        if let Some(old) = old {
            tracing::info!(node, "a newer stream of the store replaces its open one");
            old.end.send_replace(Some(Ended::Replaced));
        }
        (session, ended)
    }

    /// Marks a node disconnected, unless a newer stream of the same node replaced this one.
    pub fn disconnect(&self, node: &str, session: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(node).is_some_and(|l| l.session == session) {
            live.remove(node);
        }
    }

    /// Ends `node`'s live stream if it runs on one of `credentials`; true if there was one.
    pub fn end_revoked(&self, node: &str, credentials: &[String]) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(node) {
            Some(l) if credentials.contains(&l.credential) => {
                l.end.send_replace(Some(Ended::Revoked));
                true
            }
            _ => false,
        }
    }

    /// Counts a refused Sync connection (by a fixed reason: never anything the caller sent).
    pub fn count_refused(&self, reason: &'static str) {
        metrics::counter!("edgecart_hub_refused_connections_total", "reason" => reason)
            .increment(1);
        *self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_insert(0) += 1;
    }

    pub fn refused(&self, reason: &str) -> u64 {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    /// Counts change entries refused by the store restriction.
    pub fn count_refused_changes(&self, n: u64) {
        if n > 0 {
            self.refused_changes.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn refused_changes(&self) -> u64 {
        self.refused_changes.load(Ordering::Relaxed)
    }

    /// Records a node's acknowledgement of hub changes up to `seq`.
    pub fn note_ack(&self, node: &str, seq: i64) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = acks.entry(node.to_string()).or_insert(seq);
        *entry = (*entry).max(seq);
    }

    /// The highest hub sequence the node acknowledged in its current session, if any.
    pub fn live_ack(&self, node: &str) -> Option<i64> {
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
    }

    /// Stores with an open stream now.
    pub fn connected_count(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_connected(&self, node: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(node)
    }
}

/// A store's live stream.
struct Live {
    session: u64,
    credential: String,
    end: watch::Sender<Option<Ended>>,
}

/// Why the hub ends a store's live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Another stream of the same store was opened.
    Replaced,
    /// The credential of the stream was revoked.
    Revoked,
}

impl Ended {
    pub fn status(self) -> tonic::Status {
        match self {
            // ABORTED: the store's newer stream goes on; a node whose stream this was
            // reconnects with back-off like after any lost stream.
            Ended::Replaced => tonic::Status::aborted(
                "replaced by a newer stream of the same store: one live stream per store",
            ),
            Ended::Revoked => tonic::Status::unauthenticated("this store's credential was revoked"),
        }
    }
}
