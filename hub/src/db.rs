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

pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/hub/0001_init.sql"),
    include_str!("../../migrations/hub/0002_payments.sql"),
    include_str!("../../migrations/hub/0003_ledger_states.sql"),
    include_str!("../../migrations/hub/0004_growth.sql"),
    include_str!("../../migrations/hub/0005_credentials.sql"),
    include_str!("../../migrations/hub/0006_trace.sql"),
    include_str!("../../migrations/hub/0007_user_stores.sql"),
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
    ///
    /// All or nothing: if `f` fails, or SQLite cannot commit (disk full, I/O error, read-only
    /// file), nothing of it is kept, the connection is left without an open transaction, the
    /// error is returned (a storage failure as [`HubError::Storage`]) and watchers are not woken.
    /// Callers must therefore change their in-memory state only after this returned `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.conn.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            ensure_no_transaction(&conn)?;
            let start = std::time::Instant::now();
            let outcome = write_in_transaction(&mut conn, f);
            crate::observability::sqlite_write(start.elapsed());
            if outcome.is_err() {
                // Dropping the transaction rolled it back, but a failed ROLLBACK (an I/O error)
                // leaves it open: try once more now so the next caller starts clean.
                let _ = ensure_no_transaction(&conn);
            }
            outcome
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
            // Never read through a transaction a failed write left open: its changes are not
            // committed and must not reach a node.
            ensure_no_transaction(&conn)?;
            f(&conn)
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
    }

    /// Caps the database file at `pages` pages (`PRAGMA max_page_count`, this connection only);
    /// a write that needs more fails as if the disk were full. Returns the cap now in force
    /// (never below the current size). For tests and for operators who want a hard size limit.
    pub async fn set_max_page_count(&self, pages: u64) -> Result<u64> {
        self.read(move |c| {
            let pages = i64::try_from(pages).unwrap_or(i64::MAX);
            Ok(
                c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| u64::try_from(n).unwrap_or(0))?,
            )
        })
        .await
    }

    /// Pages the database file holds now (`PRAGMA page_count`).
    pub async fn page_count(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))?)
        })
        .await
    }

    /// Makes every write fail with SQLITE_READONLY (`PRAGMA query_only`), as a read-only or
    /// failing file would.
    #[cfg(test)]
    pub(crate) async fn set_query_only(&self, on: bool) -> Result<()> {
        self.read(move |c| Ok(c.pragma_update(None, "query_only", on)?))
            .await
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

fn write_in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    if tx.is_autocommit() {
        // After a full disk or an I/O error SQLite may roll the whole transaction back by
        // itself; if `f` carried on regardless, committing now would keep only part of it.
        return Err(HubError::Storage(
            "SQLite rolled the transaction back after a storage error".into(),
        ));
    }
    tx.commit()?;
    Ok(out)
}

/// Rolls back a transaction left open on the connection (a failed COMMIT or ROLLBACK after a
/// storage error), so the next BEGIN does not fail with "cannot start a transaction within a
/// transaction" for ever and no read sees uncommitted rows.
fn ensure_no_transaction(conn: &Connection) -> Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    tracing::warn!("rolling back a transaction a failed write left open");
    conn.execute_batch("ROLLBACK")?;
    Ok(())
}
