//! The single writer thread with group commit.

use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::Connection;
use std::sync::Arc;

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
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// Queue depth in front of the writer. Bounded so that overload turns into back-pressure on
/// request handlers instead of unbounded memory.
const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Signalled after every successful commit (the sync task waits on it for new changes).
    committed: Arc<Notify>,
}

impl Writer {
    pub fn start(conn: Connection, max_batch: usize) -> Result<Writer, DbError> {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let committed = Arc::new(Notify::new());
        let signal = committed.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch, &signal))
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
        let job: Job = Box::new(move |conn: &Connection| -> Completion {
            let outcome = run_in_savepoint(conn, f);
            Box::new(move |commit: Result<(), DbError>| {
                let outcome = match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(E::from(e)),
                };
                // The caller may have gone away (client disconnected); the write stands anyway.
                let _ = reply.send(outcome);
            })
        });
        self.jobs
            .send(job)
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
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    committed: &Notify,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Group commit: whatever queued up while we were busy goes into the same transaction.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("edgecart_db_batch_size").record(batch.len() as f64);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran. Dropping the jobs closes their reply channels, so each caller gets
            // `WriterGone` and nothing was written.
            tracing::error!(error = %e, "could not begin a write transaction");
            batch.clear();
            continue;
        }
        let completions: Vec<Completion> = batch.drain(..).map(|job| job(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            DbError::from(e)
        });
        match &commit {
            Ok(()) => committed.notify_one(),
            Err(e) => tracing::error!(error = %e, "commit failed; the whole batch was rolled back"),
        }
        for completion in completions {
            completion(commit.clone());
        }
    }
    tracing::debug!("sqlite writer stopped");
}
