//! The hub's SQLite file: one writer thread with group commit, and a small pool of readers.
//!
//! Why this shape: with a thousand stores connected, the hub's writes are many small
//! transactions (a store's batch, a Hello, a cursor), each ending in an fsync; the writer
//! ([`writer`]) runs whatever queued up meanwhile in one transaction. Reads — authenticating a
//! stream, a stream's log reads, snapshot pages, admin reads, the gauges — run on reader
//! connections (WAL: they see every committed write and never wait for the writer), at most
//! [`READERS`] at a time, so a reconnecting fleet does not queue every Hello behind one lock.
//! Readers are `query_only`: a write through one fails instead of bypassing the writer.
//!
//! After every commit the writer looks at the outbox rows it added ([`Outbox`]) and wakes the
//! streams of exactly the stores they are for (all of them for a row for every store), instead
//! of waking every stream at every commit.

mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use tokio::sync::{Semaphore, watch};

pub use writer::Tx;

use crate::error::{HubError, Result};

pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/hub/0001_init.sql"),
    include_str!("../../../migrations/hub/0002_payments.sql"),
    include_str!("../../../migrations/hub/0003_ledger_states.sql"),
    include_str!("../../../migrations/hub/0004_growth.sql"),
    include_str!("../../../migrations/hub/0005_credentials.sql"),
    include_str!("../../../migrations/hub/0006_trace.sql"),
    include_str!("../../../migrations/hub/0007_user_stores.sql"),
];

/// Reader connections. Reads are short (a page, a lookup); more than the cores would only
/// contend, and each connection keeps its own page cache.
pub const READERS: usize = 4;

#[derive(Clone)]
pub struct Db {
    writer: writer::Writer,
    readers: Arc<Readers>,
    outbox: Arc<Outbox>,
}

fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
            .to_latest(&mut conn)
            .map_err(|e| HubError::Internal(format!("migration: {e}")))?;
        crate::store::stock::install_rights(&conn)?;
        let mut idle = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path)?;
            configure(&reader)?;
            reader.pragma_update(None, "query_only", true)?;
            idle.push(reader);
        }
        let outbox = Arc::new(Outbox::default());
        Ok(Db {
            writer: writer::Writer::start(conn, outbox.clone())?,
            readers: Arc::new(Readers {
                idle: Mutex::new(idle),
                permits: Arc::new(Semaphore::new(READERS)),
            }),
            outbox,
        })
    }

    /// Runs `f` in the writer's transaction (in a savepoint of its own) and commits it.
    ///
    /// All or nothing: if `f` fails, or SQLite cannot commit (disk full, I/O error, read-only
    /// file), nothing of it is kept, the error is returned (a storage failure as
    /// [`HubError::Storage`]) and no stream is woken. Callers must therefore change their
    /// in-memory state only after this returned `Ok`. Writes that wait for the writer together
    /// share one transaction and one commit (group commit); each still succeeds or fails alone.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Tx) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(f, |_: &T| {}).await
    }

    /// [`Db::write`], and `after` with its result on the writer as soon as it is committed —
    /// before the caller hears of it, and even if the caller has gone away meanwhile: for
    /// in-memory state that must follow the database (the global stock figures).
    pub async fn write_then<T, F, A>(&self, f: F, after: A) -> Result<T>
    where
        F: FnOnce(&Tx) -> Result<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(f, after).await
    }

    /// Runs `f` on a reader connection (what was committed when it starts).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        // The permit is taken before a blocking thread: a thousand streams reading at once wait
        // here, not as a thousand blocked threads.
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HubError::Internal("the reader pool is closed".into()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = Lent::take(&readers)?;
            f(&conn)
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))?
    }

    /// Caps the database file at `pages` pages (`PRAGMA max_page_count`, on the writer's
    /// connection); a write that needs more fails as if the disk were full. Returns the cap now
    /// in force (never below the current size). For tests and for operators who want a hard
    /// size limit.
    pub async fn set_max_page_count(&self, pages: u64) -> Result<u64> {
        self.writer
            .direct(move |c| {
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
        self.writer
            .direct(|c| {
                Ok(c.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                    .map(|n| u64::try_from(n).unwrap_or(0))?)
            })
            .await
    }

    /// Makes every write fail with SQLITE_READONLY (`PRAGMA query_only` on the writer), as a
    /// read-only or failing file would.
    #[cfg(test)]
    pub(crate) async fn set_query_only(&self, on: bool) -> Result<()> {
        self.writer
            .direct(move |c| Ok(c.pragma_update(None, "query_only", on)?))
            .await
    }

    /// Changes every commit: for tasks that look at the whole database (the payment worker).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.outbox.every_commit.subscribe()
    }

    /// Changes whenever a committed change in the outbox is for `node` (or for every node), or
    /// when [`Db::wake`] is called for it: what a node's stream waits on.
    pub fn subscribe_node(&self, node: &str) -> NodeWakeups {
        NodeWakeups {
            all: self.outbox.all.subscribe(),
            mine: self.outbox.node(node).subscribe(),
        }
    }

    /// Wakes `node`'s stream without an outbox change (e.g. it was decommissioned: the stream
    /// reads that and ends).
    pub fn wake(&self, node: &str) {
        self.outbox.wake(node);
    }
}

struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A reader connection out of the pool; back in it when dropped, even if the read panicked.
struct Lent<'a>(Option<Connection>, &'a Readers);

impl<'a> Lent<'a> {
    fn take(readers: &'a Readers) -> Result<Lent<'a>> {
        let conn = readers
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(|| HubError::Internal("no idle reader for a permit".into()))?;
        Ok(Lent(Some(conn), readers))
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present from `take` until `drop`.
        self.0.as_ref().expect("a lent reader connection")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // A read never leaves a transaction open on purpose; if one did, end it here so the
            // next read does not see an old snapshot.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            self.1
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

/// Who is woken after a commit.
#[derive(Default)]
pub(crate) struct Outbox {
    every_commit: watch::Sender<u64>,
    /// Bumped when a committed change is for every node.
    all: watch::Sender<u64>,
    /// One per node that ever subscribed (a fleet's worth of small entries). A std Mutex: held
    /// for a map lookup, never across an await.
    nodes: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Outbox {
    fn node(&self, node: &str) -> watch::Sender<u64> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    fn wake(&self, node: &str) {
        if let Some(s) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
        {
            s.send_modify(|g| *g += 1);
        }
    }

    /// After a commit, on the writer connection: wakes whoever the changes after `last_seq` are
    /// for. Returns the new last sequence. A failed read wakes everybody (they read for
    /// themselves what is there).
    fn committed(&self, conn: &Connection, last_seq: i64) -> i64 {
        self.every_commit.send_modify(|g| *g += 1);
        let rows: Result<Vec<(i64, Option<String>)>> = (|| {
            let mut stmt =
                conn.prepare_cached("SELECT seq, audience FROM changes WHERE seq > ?1")?;
            let rows = stmt
                .query_map([last_seq], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })();
        let Ok(rows) = rows else {
            self.all.send_modify(|g| *g += 1);
            return last_seq;
        };
        let mut last = last_seq;
        let mut audiences: Vec<&str> = Vec::new();
        let mut everyone = false;
        for (seq, audience) in &rows {
            last = last.max(*seq);
            match audience {
                None => everyone = true,
                Some(a) => audiences.push(a),
            }
        }
        if everyone {
            self.all.send_modify(|g| *g += 1);
        }
        audiences.sort_unstable();
        audiences.dedup();
        for a in audiences {
            self.wake(a);
        }
        last
    }
}

/// What a node's stream waits on: a change for it or for everyone (see [`Db::subscribe_node`]).
pub struct NodeWakeups {
    all: watch::Receiver<u64>,
    mine: watch::Receiver<u64>,
}

impl NodeWakeups {
    /// Resolves at the next wake-up; `Err` once the database is gone.
    pub async fn changed(&mut self) -> std::result::Result<(), watch::error::RecvError> {
        tokio::select! {
            r = self.all.changed() => r,
            r = self.mine.changed() => r,
        }
    }
}
