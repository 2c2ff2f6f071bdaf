//! Which channels have a webhook on which database, and the bell that wakes that database's
//! delivery worker.
//!
//! Why a process-wide map: [`super::on_event`] runs inside the publishing transaction and is
//! handed only the transaction, not the application state, yet it must know whether to queue
//! `email` and `push` rows, and wake the worker when it does. The map is keyed by the database
//! file as SQLite names it, so several nodes in one process (the in-process tests) never see
//! each other's webhooks. The lock is a std `Mutex`: it guards one hash-map lookup, is never held
//! across an await, and is taken on the writer thread.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use rusqlite::Connection;
use tokio::sync::Notify;

use super::model::Channel;

/// The webhooks of one running node.
#[derive(Debug)]
pub struct Registration {
    /// Channels (`email`, `push`) that have a webhook URL.
    pub channels: Vec<Channel>,
    /// Rung after notifications are queued. `notify_one` keeps a permit when the worker is busy,
    /// so a ring is never lost.
    pub wake: Notify,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Arc<Registration>>>> =
    LazyLock::new(Default::default);

fn key(conn: &Connection) -> String {
    conn.path().unwrap_or_default().to_string()
}

/// Registers `channels` for the database `conn` belongs to, until the guard is dropped.
pub fn register(conn: &Connection, channels: Vec<Channel>) -> (Arc<Registration>, Guard) {
    let registration = Arc::new(Registration {
        channels,
        wake: Notify::new(),
    });
    let key = key(conn);
    lock().insert(key.clone(), registration.clone());
    let guard = Guard {
        key,
        registration: registration.clone(),
    };
    (registration, guard)
}

/// The webhooks registered for the database `conn` belongs to.
pub fn lookup(conn: &Connection) -> Option<Arc<Registration>> {
    lock().get(&key(conn)).cloned()
}

/// Wakes the worker of `conn`'s database, if it has one.
pub fn wake(conn: &Connection) {
    if let Some(r) = lookup(conn) {
        r.wake.notify_one();
    }
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Registration>>> {
    // A panic while holding this lock cannot leave the map half-updated (single insert/remove).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unregisters on drop (only its own registration: a newer one for the same file stays).
pub struct Guard {
    key: String,
    registration: Arc<Registration>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = lock();
        if map
            .get(&self.key)
            .is_some_and(|r| Arc::ptr_eq(r, &self.registration))
        {
            map.remove(&self.key);
        }
    }
}
