//! The single writer thread with group commit.
//!
//! What a caller is told is what is on disk. Jobs of a batch run in one transaction, each in its
//! own savepoint. SQLite may roll the whole transaction back by itself (a full disk, an I/O
//! error — `is_autocommit()` turns true); the writer checks after every job, and then:
//! - every job of the batch that already ran is reported failed (its writes went with the
//!   transaction), and the COMMIT is not attempted as if it held them;
//! - the jobs not yet run are carried into the next transaction, untouched.
//!
//! A commit hook vetoes every commit but the writer's own COMMIT, so a job that swallows a
//! storage error and writes on (the connection now in autocommit) cannot commit statements
//! one by one behind the batch's back.

use std::collections::VecDeque;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::{Notify, mpsc, oneshot};

use super::DbError;

/// A connection inside the writer's open transaction. Storage functions that change data take
/// `&Tx`, so they cannot be called on a read connection by mistake.
pub struct Tx<'a>(&'a Connection);

impl Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

/// Runs after the batch's COMMIT (or its failure) to hand the job's result to its caller.
type Completion = Box<dyn FnOnce(Result<(), DbError>) + Send>;

/// A queued write: run inside the batch's transaction, or abandoned unrun with an error.
trait Job: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Completion;
    fn abandon(self: Box<Self>, error: DbError);
}

struct WriteJob<F, T, E> {
    f: F,
    reply: oneshot::Sender<Result<T, E>>,
    /// The queuing request's trace context, for the change-log entries the job writes.
    trace: Option<crate::telemetry::TraceContext>,
}

impl<F, T, E> Job for WriteJob<F, T, E>
where
    F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Completion {
        let WriteJob { f, reply, trace } = *self;
        let outcome = crate::telemetry::with_job_context(trace, || run_in_savepoint(conn, f));
        Box::new(move |commit: Result<(), DbError>| {
            // A failed commit overrides everything: nothing of the batch is on disk, so even a
            // job's own error (which may have read the lost writes of an earlier job) is not
            // the truth any more.
            let outcome = match commit {
                Ok(()) => outcome,
                Err(e) => Err(E::from(e)),
            };
            // The caller may have gone away (client disconnected); the write stands anyway.
            let _ = reply.send(outcome);
        })
    }

    fn abandon(self: Box<Self>, error: DbError) {
        let _ = self.reply.send(Err(E::from(error)));
    }
}

/// Queue depth in front of the writer. Bounded so that overload turns into back-pressure on
/// request handlers instead of unbounded memory.
const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Signalled after every successful commit (the sync task waits on it for new changes).
    committed: Arc<Notify>,
}

impl Writer {
    pub fn start(conn: Connection, max_batch: usize) -> Result<Writer, DbError> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>(QUEUE);
        let committed = Arc::new(Notify::new());
        let signal = committed.clone();
        let committing = guard_commits(&conn)?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch, &signal, &committing))
            .map_err(|e| DbError::Join(e.to_string()))?;
        Ok(Writer { jobs, committed })
    }

    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel::<Result<T, E>>();
        self.jobs
            .send(Box::new(WriteJob {
                f,
                reply,
                trace: crate::telemetry::current_context(),
            }))
            .await
            .map_err(|_| E::from(DbError::WriterGone))?;
        result.await.map_err(|_| E::from(DbError::WriterGone))?
    }
}

/// Runs one job in its own savepoint so that its failure (an `Err`, or a panic) undoes only its
/// own writes, not those of the other jobs in the batch.
fn run_in_savepoint<T, E, F>(conn: &Connection, f: F) -> Result<T, E>
where
    F: FnOnce(&Tx) -> Result<T, E>,
    E: From<DbError>,
{
    conn.execute_batch("SAVEPOINT job")
        .map_err(|e| E::from(e.into()))?;
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&Tx(conn))));
    let (outcome, keep) = match outcome {
        Ok(Ok(v)) => (Ok(v), true),
        Ok(Err(e)) => (Err(e), false),
        Err(_) => {
            tracing::error!("a database write job panicked; its changes were rolled back");
            (Err(E::from(DbError::JobPanicked)), false)
        }
    };
    if conn.is_autocommit() {
        // SQLite rolled the transaction back during the job: there is no savepoint to end,
        // and nothing of the job is kept, whatever it returned.
        return Err(E::from(DbError::RolledBack));
    }
    let end = if keep {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    match conn.execute_batch(end) {
        Ok(()) => outcome,
        Err(e) => Err(E::from(e.into())),
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    committed: &Notify,
    committing: &AtomicBool,
) {
    // Jobs waiting for a transaction: those carried over from a lost one come first.
    let mut queue: VecDeque<Box<dyn Job>> = VecDeque::with_capacity(max_batch);
    loop {
        if queue.is_empty() {
            match rx.blocking_recv() {
                Some(job) => queue.push_back(job),
                None => break,
            }
        }
        // Group commit: whatever queued up while we were busy goes into the same transaction.
        while queue.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran: every caller hears the error and nothing was written.
            tracing::error!(error = %e, "could not begin a write transaction");
            let e = DbError::from(e);
            for job in queue.drain(..) {
                job.abandon(e.clone());
            }
            continue;
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(queue.len());
        let mut lost = false;
        let mut size = 0usize;
        while size < max_batch
            && let Some(job) = queue.pop_front()
        {
            completions.push(job.run(&conn));
            size += 1;
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back: the jobs run so far are gone with
                // it; the rest wait for the next transaction.
                lost = true;
                break;
            }
        }
        metrics::histogram!("edgecart_db_batch_size").record(size as f64);
        let commit = if lost {
            tracing::error!(
                jobs = size,
                carried_over = queue.len(),
                "SQLite rolled the write transaction back; its jobs are reported failed"
            );
            Err(DbError::RolledBack)
        } else {
            commit_batch(&conn, committing)
        };
        match &commit {
            Ok(()) => committed.notify_one(),
            Err(e) if !lost => {
                tracing::error!(error = %e, "commit failed; the whole batch was rolled back")
            }
            Err(_) => {}
        }
        for completion in completions {
            completion(commit.clone());
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Installs the commit hook: only the writer's own COMMIT (with the returned flag set) may
/// commit; any other commit — a statement run in autocommit mode after SQLite rolled the batch
/// back — is turned into a rollback.
fn guard_commits(conn: &Connection) -> Result<Arc<AtomicBool>, DbError> {
    let committing = Arc::new(AtomicBool::new(false));
    let allowed = committing.clone();
    // `true` turns the commit into a rollback.
    conn.commit_hook(Some(move || !allowed.load(Ordering::Acquire)))?;
    Ok(committing)
}

/// COMMIT, or on failure make sure nothing of the transaction is left open.
fn commit_batch(conn: &Connection, committing: &AtomicBool) -> Result<(), DbError> {
    committing.store(true, Ordering::Release);
    let commit = conn.execute_batch("COMMIT");
    committing.store(false, Ordering::Release);
    commit.map_err(|e| {
        // A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY) or SQLite may have
        // rolled it back already; either way none of it is kept.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        DbError::from(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reply = oneshot::Receiver<Result<(), DbError>>;

    fn job(f: impl FnOnce(&Tx) -> Result<(), DbError> + Send + 'static) -> (Box<dyn Job>, Reply) {
        let (reply, rx) = oneshot::channel();
        (
            Box::new(WriteJob {
                f,
                reply,
                trace: None,
            }),
            rx,
        )
    }

    fn insert(tx: &Tx, id: i64, size: usize) -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO t (id, body) VALUES (?1, ?2)",
            rusqlite::params![id, vec![7u8; size]],
        )
    }

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .unwrap();
        conn
    }

    /// Queues every job before the loop starts, so that they all land in one batch, and runs
    /// the loop on this thread until the queue is drained.
    fn run_batch(conn: Connection, jobs: Vec<Box<dyn Job>>, max_batch: usize) {
        let committing = guard_commits(&conn).unwrap();
        let (tx, rx) = mpsc::channel(QUEUE);
        for j in jobs {
            assert!(tx.try_send(j).is_ok());
        }
        drop(tx);
        writer_loop(conn, rx, max_batch, &Notify::new(), &committing);
    }

    fn stored(dir: &tempfile::TempDir) -> Vec<i64> {
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        let mut stmt = conn.prepare("SELECT id FROM t ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_reports_none_of_its_jobs_committed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        let (a, ra) = job(|tx| Ok(insert(tx, 1, 10).map(|_| ())?));
        // What SQLite does on SQLITE_FULL / IOERR in the middle of a statement: the whole
        // transaction is gone. This job swallows it and even writes on in autocommit mode.
        let (b, rb) = job(|tx| {
            insert(tx, 2, 10)?;
            tx.execute_batch("ROLLBACK")?;
            let behind_the_batch = insert(tx, 22, 10);
            assert!(behind_the_batch.is_err(), "the commit hook vetoes it");
            Ok(())
        });
        let (c, rc) = job(|tx| Ok(insert(tx, 3, 10).map(|_| ())?));
        run_batch(conn, vec![a, b, c], 16);
        let outcome = |r: Reply| r.blocking_recv().expect("every job is answered");
        assert!(matches!(outcome(ra), Err(DbError::RolledBack)));
        assert!(matches!(outcome(rb), Err(DbError::RolledBack)));
        // Not run in the lost transaction: carried into the next one, which committed.
        assert!(outcome(rc).is_ok());
        assert_eq!(stored(&dir), vec![3]);
    }

    #[test]
    fn on_a_full_disk_a_job_is_reported_committed_exactly_when_it_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.query_row(
            &format!("PRAGMA max_page_count = {}", pages + 6),
            [],
            |_| Ok(()),
        )
        .unwrap();
        let (jobs, replies): (Vec<_>, Vec<_>) = (1..=60)
            .map(|id| job(move |tx| Ok(insert(tx, id, 1500).map(|_| ())?)))
            .unzip();
        run_batch(conn, jobs, 8);
        let mut committed = Vec::new();
        let mut storage_errors = 0;
        for (id, reply) in (1..=60).zip(replies) {
            match reply.blocking_recv().expect("every job is answered") {
                Ok(()) => committed.push(id),
                Err(e) => {
                    assert!(e.is_storage(), "{e}");
                    storage_errors += 1;
                }
            }
        }
        assert!(!committed.is_empty(), "the first pages fit");
        assert!(storage_errors > 0, "the disk filled up");
        assert_eq!(stored(&dir), committed);
    }
}
