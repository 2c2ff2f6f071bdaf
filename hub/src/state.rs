//! The hub's shared state.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgecart_proto::hlc::Clock;

use crate::db::Db;

#[derive(Clone)]
pub struct Hub {
    pub db: Db,
    pub clock: Arc<Clock>,
    pub node_token: Arc<str>,
    pub admin_token: Arc<str>,
    // A std Mutex: held only to insert/remove/read a map entry, never across an await.
    live: Arc<Mutex<HashMap<String, u64>>>,
    sessions: Arc<AtomicU64>,
    /// Products whose global stock changed and whose `stock_others` updates are not sent yet.
    dirty: Arc<Mutex<BTreeSet<String>>>,
    /// The highest hub sequence each connected node acknowledged in its current session; the
    /// database copy is written lazily (every few seconds), this one at once, for reporting.
    acks: Arc<Mutex<HashMap<String, i64>>>,
}

impl Hub {
    pub fn new(db: Db, clock: Clock, node_token: &str, admin_token: &str) -> Hub {
        Hub {
            db,
            clock: Arc::new(clock),
            node_token: node_token.into(),
            admin_token: admin_token.into(),
            live: Arc::default(),
            sessions: Arc::default(),
            dirty: Arc::default(),
            acks: Arc::default(),
        }
    }

    /// Marks a node connected; returns the session id to pass to `disconnect`.
    pub fn connect(&self, node: &str) -> u64 {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), session);
        session
    }

    /// Marks a node disconnected, unless a newer stream of the same node replaced this one.
    pub fn disconnect(&self, node: &str, session: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(node) == Some(&session) {
            live.remove(node);
        }
    }

    pub fn mark_dirty(&self, products: BTreeSet<String>) {
        if !products.is_empty() {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(products);
        }
    }

    pub fn take_dirty(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
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

    pub fn is_connected(&self, node: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(node)
    }
}
