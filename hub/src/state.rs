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
        }
    }

    /// Marks a node connected; returns the session id to pass to `disconnect`.
    pub fn connect(&self, node: &str) -> u64 {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
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

    pub fn is_connected(&self, node: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(node)
    }
}
