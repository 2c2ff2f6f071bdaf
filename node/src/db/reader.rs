//! A small pool of read-only connections, used from blocking threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::{DbError, Durability, open_connection};

#[derive(Clone)]
pub struct ReaderPool {
    // A std Mutex: it is held only to pop or push a connection, never across an await or a query.
    idle: Arc<Mutex<Vec<Connection>>>,
    // The semaphore makes callers wait (asynchronously) for a free connection.
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    pub fn open(path: &Path, durability: Durability, size: usize) -> Result<ReaderPool, DbError> {
        let conns = (0..size)
            .map(|_| open_connection(path, durability, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReaderPool {
            idle: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(DbError::WriterGone))?;
        let idle = self.idle.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| E::from(DbError::Join("reader pool empty".into())))?;
            let out = f(&conn);
            idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            out
        })
        .await
        .map_err(|e| E::from(DbError::Join(e.to_string())))?
    }
}
