//! The hub's single writer thread, with group commit.
//!
//! What a caller is told is what is on disk. The jobs that queued up while the writer was busy
//! run in one transaction, each in its own savepoint, and share one commit (one fsync): with a
//! thousand stores the hub's writes are many small transactions (a store's batch, a Hello, a
//! heartbeat's cursor) that one at a time would cap it at a few hundred a second.
//!
//! A job that fails (an `Err`, or a panic) is rolled back to its savepoint alone. SQLite may also
//! roll the whole transaction back by itself (a full disk, an I/O error: `is_autocommit()` turns
//! true); the writer checks after every job, and then every job of the batch that already ran is
//! reported failed and the jobs not yet run are carried into the next transaction. A commit hook
//! vetoes every commit but the writer's own COMMIT, so a job that swallows a storage error and
//! writes on cannot commit statements one by one behind the batch's back. A failed COMMIT fails
//! every job of the batch.

use std::collections::VecDeque;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Outbox;
use crate::error::{HubError, Result};

/// A connection inside the writer's open transaction (each job runs in its own savepoint of it).
pub struct Tx<'a>(&'a Connection);

impl Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

/// Hands a job's result to its caller once the batch's COMMIT is known.
type Completion = Box<dyn FnOnce(std::result::Result<(), &HubError>) + Send>;

/// A queued write.
trait WriteJob: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Completion;
    fn abandon(self: Box<Self>, error: HubError);
}

enum Job {
    /// Runs inside the batch's transaction.
    Write(Box<dyn WriteJob>),
    /// Runs alone on the writer connection, outside any transaction (pragmas of this
    /// connection, e.g. `max_page_count`).
    Direct(Box<dyn FnOnce(&Connection) + Send>),
}

struct Closure<F, T, A> {
    f: F,
    /// Runs on the writer once the job's writes are committed, before its caller hears of it.
    after: A,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T, A> WriteJob for Closure<F, T, A>
where
    F: FnOnce(&Tx) -> Result<T> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Completion {
        let Closure { f, after, reply } = *self;
        let outcome = run_in_savepoint(conn, f);
        Box::new(move |commit| {
            // A failed commit overrides everything: nothing of the batch is on disk, so even a
            // job's own error (which may have read the lost writes of an earlier job) is not
            // the truth any more.
            let outcome = match commit {
                Ok(()) => outcome,
                Err(e) => Err(copy(e)),
            };
            if let Ok(v) = &outcome {
                after(v);
            }
            // The caller may have gone away (a stream ended); the write stands anyway.
            let _ = reply.send(outcome);
        })
    }

    fn abandon(self: Box<Self>, error: HubError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The error of a batch's COMMIT (or BEGIN), for each of its jobs.
fn copy(e: &HubError) -> HubError {
    match e {
        HubError::Storage(m) => HubError::Storage(m.clone()),
        other => HubError::Internal(other.to_string()),
    }
}

fn rolled_back() -> HubError {
    HubError::Storage("SQLite rolled the transaction back after a storage error".into())
}

/// Writes queued in front of the writer. Bounded: overload turns into back-pressure on the
/// streams and admin calls instead of memory.
const QUEUE: usize = 1024;
/// Most jobs in one transaction (keeps one transaction, and the lock, short).
const MAX_JOBS: usize = 256;

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn start(conn: Connection, outbox: Arc<Outbox>) -> Result<Writer> {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let committing = guard_commits(&conn)?;
        let last_seq = crate::store::changes::last_seq(&conn)?;
        std::thread::Builder::new()
            .name("hub-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &committing, &outbox, last_seq))
            .map_err(|e| HubError::Internal(format!("starting the writer: {e}")))?;
        Ok(Writer { jobs })
    }

    pub(super) async fn write<T, F, A>(&self, f: F, after: A) -> Result<T>
    where
        F: FnOnce(&Tx) -> Result<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job::Write(Box::new(Closure { f, after, reply })))
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    pub(super) async fn direct<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job::Direct(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            })))
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

fn gone() -> HubError {
    HubError::Internal("the database writer stopped".into())
}

/// Runs one job in its own savepoint so that its failure undoes only its own writes.
fn run_in_savepoint<T, F>(conn: &Connection, f: F) -> Result<T>
where
    F: FnOnce(&Tx) -> Result<T>,
{
    conn.execute_batch("SAVEPOINT job")?;
    let (outcome, keep) = match catch_unwind(AssertUnwindSafe(|| f(&Tx(conn)))) {
        Ok(Ok(v)) => (Ok(v), true),
        Ok(Err(e)) => (Err(e), false),
        Err(_) => {
            tracing::error!("a database write job panicked; its changes were rolled back");
            (
                Err(HubError::Internal("a write job panicked".into())),
                false,
            )
        }
    };
    if conn.is_autocommit() {
        // SQLite rolled the transaction back during the job: there is no savepoint to end,
        // and nothing of the job is kept, whatever it returned.
        return Err(rolled_back());
    }
    let end = if keep {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    conn.execute_batch(end)?;
    outcome
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    committing: &AtomicBool,
    outbox: &Outbox,
    mut last_seq: i64,
) {
    // Jobs waiting for a transaction: those carried over from a lost one come first.
    let mut queue: VecDeque<Job> = VecDeque::with_capacity(MAX_JOBS);
    loop {
        if queue.is_empty() {
            match rx.blocking_recv() {
                Some(job) => queue.push_back(job),
                None => break,
            }
        }
        // Group commit: whatever queued up while we were busy goes into the same transaction.
        while queue.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => break,
            }
        }
        if matches!(queue.front(), Some(Job::Direct(_))) {
            if let Some(Job::Direct(f)) = queue.pop_front() {
                rollback_leftover(&conn);
                f(&conn);
            }
            continue;
        }
        let start = Instant::now();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran: every caller hears the error and nothing was written.
            let e = HubError::from(e);
            tracing::error!(error = %e, "could not begin a write transaction");
            while let Some(Job::Write(_)) = queue.front() {
                if let Some(Job::Write(job)) = queue.pop_front() {
                    job.abandon(copy(&e));
                }
            }
            continue;
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(queue.len());
        let mut lost = false;
        while completions.len() < MAX_JOBS && matches!(queue.front(), Some(Job::Write(_))) {
            let Some(Job::Write(job)) = queue.pop_front() else {
                break;
            };
            completions.push(job.run(&conn));
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back: the jobs run so far are gone with
                // it; the rest wait for the next transaction.
                lost = true;
                break;
            }
        }
        let commit = if lost {
            tracing::error!(
                jobs = completions.len(),
                carried_over = queue.len(),
                "SQLite rolled the write transaction back; its jobs are reported failed"
            );
            Err(rolled_back())
        } else {
            commit_batch(&conn, committing)
        };
        crate::observability::sqlite_write(start.elapsed(), completions.len());
        if let Err(e) = &commit
            && !lost
        {
            tracing::error!(error = %e, "commit failed; the whole batch was rolled back");
        }
        if commit.is_ok() {
            // Before the callers hear of it: a stream woken now reads what they wrote.
            last_seq = outbox.committed(&conn, last_seq);
        }
        for completion in completions {
            completion(commit.as_ref().map(|_| ()));
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Installs the commit hook: only the writer's own COMMIT (with the returned flag set) may
/// commit; any other commit — a statement run in autocommit mode after SQLite rolled the batch
/// back — is turned into a rollback.
fn guard_commits(conn: &Connection) -> Result<Arc<AtomicBool>> {
    let committing = Arc::new(AtomicBool::new(false));
    let allowed = committing.clone();
    // `true` turns the commit into a rollback.
    conn.commit_hook(Some(move || !allowed.load(Ordering::Acquire)))?;
    Ok(committing)
}

/// COMMIT, or on failure make sure nothing of the transaction is left open.
fn commit_batch(conn: &Connection, committing: &AtomicBool) -> Result<()> {
    committing.store(true, Ordering::Release);
    let commit = conn.execute_batch("COMMIT");
    committing.store(false, Ordering::Release);
    commit.map_err(|e| {
        // A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY) or SQLite may have
        // rolled it back already; either way none of it is kept.
        rollback_leftover(conn);
        HubError::from(e)
    })
}

/// Rolls back a transaction a failed COMMIT or ROLLBACK left open, so the next BEGIN does not
/// fail for ever.
fn rollback_leftover(conn: &Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("rolling back a transaction a failed write left open");
        let _ = conn.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reply = oneshot::Receiver<Result<()>>;

    fn job(f: impl FnOnce(&Tx) -> Result<()> + Send + 'static) -> (Job, Reply) {
        let (reply, rx) = oneshot::channel();
        (
            Job::Write(Box::new(Closure {
                f,
                after: |_: &()| {},
                reply,
            })),
            rx,
        )
    }

    fn insert(tx: &Tx, id: i64, size: usize) -> Result<()> {
        tx.execute(
            "INSERT INTO t (id, body) VALUES (?1, ?2)",
            rusqlite::params![id, vec![7u8; size]],
        )?;
        Ok(())
    }

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, audience TEXT);",
        )
        .unwrap();
        conn
    }

    /// Queues every job before the loop starts, so that they land in as few batches as
    /// possible, and runs the loop on this thread until the queue is drained.
    fn run_batch(conn: Connection, jobs: Vec<Job>) {
        let committing = guard_commits(&conn).unwrap();
        let (tx, rx) = mpsc::channel(QUEUE);
        for j in jobs {
            assert!(tx.try_send(j).is_ok());
        }
        drop(tx);
        writer_loop(conn, rx, &committing, &Outbox::default(), 0);
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
    fn a_failing_job_is_undone_alone_and_the_others_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        let (a, ra) = job(|tx| insert(tx, 1, 10));
        let (b, rb) = job(|tx| {
            insert(tx, 2, 10)?;
            Err(HubError::invalid("x", "refused"))
        });
        let (c, rc) = job(|tx| insert(tx, 3, 10));
        run_batch(conn, vec![a, b, c]);
        assert!(ra.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            rb.blocking_recv().unwrap(),
            Err(HubError::Invalid { .. })
        ));
        assert!(rc.blocking_recv().unwrap().is_ok());
        assert_eq!(stored(&dir), vec![1, 3]);
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_reports_none_of_its_jobs_committed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir);
        let (a, ra) = job(|tx| insert(tx, 1, 10));
        // What SQLite does on SQLITE_FULL / IOERR in the middle of a statement: the whole
        // transaction is gone. This job swallows it and even writes on in autocommit mode.
        let (b, rb) = job(|tx| {
            insert(tx, 2, 10)?;
            tx.execute_batch("ROLLBACK")?;
            assert!(insert(tx, 22, 10).is_err(), "the commit hook vetoes it");
            Ok(())
        });
        let (c, rc) = job(|tx| insert(tx, 3, 10));
        run_batch(conn, vec![a, b, c]);
        assert!(ra.blocking_recv().unwrap().unwrap_err().is_storage());
        assert!(rb.blocking_recv().unwrap().unwrap_err().is_storage());
        // Not run in the lost transaction: carried into the next one, which committed.
        assert!(rc.blocking_recv().unwrap().is_ok());
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
            .map(|id| job(move |tx| insert(tx, id, 1500)))
            .unzip();
        run_batch(conn, jobs);
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
