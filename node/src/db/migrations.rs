//! Schema migrations, embedded in the binary from `migrations/node/` and applied at start in
//! order; `rusqlite_migration` records the schema version in `PRAGMA user_version`.

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::DbError;

/// Every released migration, oldest first. Never edit one once released; append a new file.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/node/0001_init.sql"),
    include_str!("../../../migrations/node/0002_sync.sql"),
    include_str!("../../../migrations/node/0003_notifications.sql"),
    include_str!("../../../migrations/node/0004_changes_by_entity.sql"),
    include_str!("../../../migrations/node/0005_payments_offline.sql"),
    include_str!("../../../migrations/node/0006_trace.sql"),
];

pub fn apply(conn: &mut Connection) -> Result<(), DbError> {
    let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
    migrations
        .to_latest(conn)
        .map_err(|e| DbError::Migration(e.to_string()))
}

/// The version the embedded migrations bring a database to.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_record_the_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest_version());
        // Applying again is a no-op.
        apply(&mut conn).unwrap();
    }

    #[test]
    fn unique_violations_are_recognised() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        let insert = "INSERT INTO categories (id, name, created_at, updated_at, version) VALUES (?1, 'Tea', 0, 0, 'v')";
        conn.execute(insert, ["a"]).unwrap();
        let err = conn.execute(insert, ["b"]).unwrap_err();
        assert!(crate::db::is_unique_violation(&err), "{err:?}");
        let err = conn.execute(insert, ["a"]).unwrap_err();
        assert!(crate::db::is_unique_violation(&err), "{err:?}");
    }
}
