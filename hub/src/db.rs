//! The hub's SQLite file: one connection behind a mutex, used from blocking threads.
//!
//! Why one connection: the hub's writes arrive in batches (a stream message carries up to
//! `MAX_BATCH` changes and is applied in one transaction), so a single writer is not the
//! bottleneck, and one connection keeps every read consistent with the last write.
//! A std Mutex: it is only ever held inside `spawn_blocking`, never across an await.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use rusqlite_migration::{M, Migrations};
use tokio::sync::watch;

use crate::error::{HubError, Result};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/hub/0001_init.sql"),
    include_str!("../../migrations/hub/0002_payments.sql"),
];

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// Bumped after every committed write, so node streams wake up to send new changes.
    generation: Arc<watch::Sender<u64>>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(128);
        Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
            .to_latest(&mut conn)
            .map_err(|e| HubError::Internal(format!("migration: {e}")))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            generation: Arc::new(watch::channel(0).0),
        })
    }

    /// Runs `f` in one IMMEDIATE transaction and commits it.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.conn.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok::<_, HubError>(out)
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))??;
        self.generation.send_modify(|g| *g += 1);
        Ok(out)
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
