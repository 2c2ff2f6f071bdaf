//! SQLite access: one writer thread that group-commits, and a small pool of reader connections.
//!
//! Why this shape: SQLite allows one writer at a time, so funnelling every write through one
//! dedicated thread removes lock contention (`SQLITE_BUSY`) entirely, and lets that thread fold
//! the writes that queued up during the previous `fsync` into one transaction (group commit).
//! Each job still runs in its own SAVEPOINT, so a job that fails rolls back alone; its caller hears
//! the outcome only after the whole batch has committed — a 201 always means "on disk".
//! Readers use separate WAL connections, so reads never wait behind the writer.

mod migrations;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

pub use migrations::latest_version;
pub use reader::ReaderPool;
pub use writer::{Tx, Writer};

/// How SQLite makes commits durable (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced before it is acknowledged (the default).
    Full,
    /// `synchronous=NORMAL`: WAL commits may be lost on power failure (not on process crash).
    Normal,
}

/// Storage settings.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub path: PathBuf,
    pub durability: Durability,
    /// Most write jobs folded into one transaction; 1 disables group commit.
    pub max_batch: usize,
    pub readers: usize,
}

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error, Clone)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("a database job panicked")]
    JobPanicked,
    #[error("a background task failed: {0}")]
    Join(String),
    /// SQLite rolled the write transaction back by itself (a full disk, an I/O error): nothing
    /// of the batch this job was in was kept.
    #[error("the write transaction was rolled back by the storage (disk full or I/O error)")]
    RolledBack,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(Arc::new(e))
    }
}

impl DbError {
    /// True when the error is a UNIQUE constraint violation (e.g. a duplicate email).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlite(e) if is_unique_violation(e))
    }

    /// True when the file or the disk failed, not the statement or its data: the write may
    /// succeed later, and SQLite may have rolled the whole transaction back.
    pub fn is_storage(&self) -> bool {
        match self {
            DbError::Sqlite(e) => is_storage_error(e),
            DbError::RolledBack => true,
            _ => false,
        }
    }
}

/// SQLite result codes that say the file or the disk is failing (the same list as the hub's).
pub fn is_storage_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(
        f.code,
        C::DiskFull
            | C::SystemIoFailure
            | C::ReadOnly
            | C::CannotOpen
            | C::PermissionDenied
            | C::DatabaseBusy
            | C::DatabaseLocked
            | C::OutOfMemory
            | C::DatabaseCorrupt
            | C::NotADatabase
            | C::FileLockingProtocolFailed
            | C::NoLargeFileSupport
            | C::OperationAborted
            | C::InternalMalfunction
    ))
}

/// True when a statement failed on a UNIQUE or PRIMARY KEY constraint.
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Handle to the node's database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: Writer,
    readers: ReaderPool,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database file, applies pending migrations, and starts the
    /// writer thread and the reader pool.
    pub fn open(config: &DbConfig) -> Result<Db, DbError> {
        let mut conn = open_connection(&config.path, config.durability, false)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrations::apply(&mut conn)?;
        let writer = Writer::start(conn, config.max_batch.max(1))?;
        let readers = ReaderPool::open(&config.path, config.durability, config.readers.max(1))?;
        Ok(Db {
            writer,
            readers,
            path: Arc::new(config.path.clone()),
        })
    }

    /// Runs `f` inside the write transaction; resolves once the transaction has committed.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Tx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Runs `f` on a reader connection (a consistent snapshot; never blocked by the writer).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.readers.run(f).await
    }

    /// Signalled after every commit.
    pub fn committed(&self) -> Arc<tokio::sync::Notify> {
        self.writer.committed()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Caps the database file at `pages` pages (`PRAGMA max_page_count` on the writer's
    /// connection): a write that needs more fails as if the disk were full. Returns the cap now
    /// in force (SQLite never sets it below the current size). For tests and for operators who
    /// want a hard size limit.
    pub async fn set_max_page_count(&self, pages: u64) -> Result<u64, DbError> {
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        self.write(move |tx| {
            let cap: i64 = tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
            Ok(u64::try_from(cap).unwrap_or(0))
        })
        .await
    }

    /// Pages the database holds now (`PRAGMA page_count`, as the writer sees it).
    pub async fn page_count(&self) -> Result<u64, DbError> {
        self.write(|tx| {
            let n: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// The schema version recorded by the migrations (`PRAGMA user_version`).
    pub async fn schema_version(&self) -> Result<i64, DbError> {
        self.read(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .await
    }
}

pub(crate) fn open_connection(
    path: &Path,
    durability: Durability,
    read_only: bool,
) -> Result<Connection, DbError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Reads a TEXT column holding a UUID.
pub fn uuid_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<uuid::Uuid> {
    let s: String = row.get(idx)?;
    uuid::Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A text column parsed strictly (a status, an enum): a value that does not parse is an error,
/// never a default.
pub fn parsed_col<T>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let s: String = row.get(idx)?;
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}
