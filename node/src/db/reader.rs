//! A small pool of read-only connections, each owned by its own thread.
//!
//! Why dedicated threads rather than `spawn_blocking` with a mutex-guarded pool and a semaphore:
//! a read then costs one queue push and one reply, with no semaphore, no mutex and no blocking-pool
//! task to allocate and schedule; a reader thread that finds more jobs queued runs them without
//! going to sleep in between. Measured on the product read: see BENCHMARKS.md. The threads share
//! one multi-consumer queue, so a slow query holds up only its own thread, never reads behind it.
//! The async caller only enqueues and awaits the reply: no query ever runs on a tokio worker.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{DbError, Durability, open_connection};

/// A read to run; it sends its own result back to the awaiting caller.
type Job = Box<dyn FnOnce(&Connection) + Send>;

#[derive(Clone)]
pub struct ReaderPool {
    // Unbounded: every queued job is a request handler awaiting its answer, so the queue is no
    // longer than the number of in-flight requests (which the HTTP layer bounds).
    jobs: crossbeam_channel::Sender<Job>,
}

impl ReaderPool {
    pub fn open(path: &Path, durability: Durability, size: usize) -> Result<ReaderPool, DbError> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for i in 0..size {
            let conn = open_connection(path, durability, true)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                // Ends when the last clone of the pool (the last sender) is dropped.
                .spawn(move || {
                    for job in queue {
                        // A panicking job drops its reply sender (its caller gets JobPanicked);
                        // the thread and its connection carry on with the next job.
                        let _ = catch_unwind(AssertUnwindSafe(|| job(&conn)));
                    }
                })
                .map_err(|e| DbError::Join(e.to_string()))?;
        }
        Ok(ReaderPool { jobs })
    }

    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &Connection| {
            // The caller may have gone away (client disconnected); nothing to do then.
            let _ = reply.send(f(conn));
        });
        self.jobs
            .send(job)
            .map_err(|_| E::from(DbError::Join("the reader threads have stopped".into())))?;
        result.await.map_err(|_| E::from(DbError::JobPanicked))?
    }
}
