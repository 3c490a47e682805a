//! Schema migrations, tracked in SQLite's `user_version`.

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::{Result, StoreError};

/// Every migration, in order; a new one is appended, never edited.
fn migrations() -> Migrations<'static> {
    const ALL: &[M<'static>] = &[
        M::up(include_str!("../../migrations/sqlite/0001_init.sql")),
        M::up(include_str!(
            "../../migrations/sqlite/0002_audit_by_time.sql"
        )),
        M::up(include_str!(
            "../../migrations/sqlite/0003_list_filters_in_index.sql"
        )),
        M::up(include_str!(
            "../../migrations/sqlite/0004_dead_letters.sql"
        )),
        M::up(include_str!(
            "../../migrations/sqlite/0005_reminder_traceparent.sql"
        )),
        M::up(include_str!("../../migrations/sqlite/0006_task_json.sql")),
    ];
    Migrations::from_slice(ALL)
}

/// How many migrations this build knows.
pub(super) const LATEST: i64 = 6;

/// Brings the schema up to date.
pub(super) fn to_latest(conn: &mut Connection) -> Result<()> {
    adopt_earlier_tracking(conn)?;
    migrations()
        .to_latest(conn)
        .map_err(|e| StoreError::Migrate(e.to_string()))
}

/// The schema version, as recorded in the file.
pub(super) fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Databases made by earlier builds recorded applied migrations in `_sqlx_migrations`
/// rather than `user_version`: carry the count over so they are not applied twice.
fn adopt_earlier_tracking(conn: &Connection) -> Result<()> {
    if version(conn)? != 0 {
        return Ok(());
    }
    let tracked: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |r| r.get(0),
    )?;
    if tracked {
        let applied: i64 = conn.query_row(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success",
            [],
            |r| r.get(0),
        )?;
        conn.pragma_update(None, "user_version", applied)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_list_is_valid_and_latest_matches_it() {
        migrations().validate().expect("valid migrations");
        let mut conn = Connection::open_in_memory().unwrap();
        to_latest(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
    }

    #[test]
    fn a_database_tracked_the_earlier_way_is_not_migrated_twice() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version INTEGER PRIMARY KEY, success BOOLEAN NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (1, TRUE);",
        )
        .unwrap();
        to_latest(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        // Migration 2 ran (its index exists), migration 1 did not run again (it would fail).
        let index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'audit_by_user_time'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }
}
