//! Schema migrations, tracked in `todo_schema_migrations` of the schema they build.
//!
//! Everything runs in one transaction behind a transaction-level advisory lock, so two
//! processes starting at once apply each migration once: the second waits for the first
//! to commit and then finds nothing left to do. PostgreSQL's DDL is transactional, so a
//! migration that fails leaves nothing half-applied.

use deadpool_postgres::Client;

use crate::{Result, StoreError};

/// Every migration, in order; a new one is appended, never edited.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "reminder_traceparent",
        include_str!("../../migrations/postgres/0002_reminder_traceparent.sql"),
    ),
    (
        3,
        "task_json",
        include_str!("../../migrations/postgres/0003_task_json.sql"),
    ),
];

/// How many migrations this build knows.
pub(super) const LATEST: i32 = 3;

/// The advisory lock key migrations take ("todo-mig" in ASCII). Per database: schemas of one
/// database migrate one after another, which costs nothing and also serializes
/// `CREATE EXTENSION`, which is per database.
const LOCK: i64 = 0x746f_646f_2d6d_6967;

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Migrate(e.to_string())
}

/// Double-quotes an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema pg_trgm lives in, creating the extension if missing. It goes into `public`
/// when that schema exists (so dropping an application schema never drops it from under
/// another), else into the current schema.
async fn trigram_schema(tx: &tokio_postgres::Transaction<'_>) -> Result<String> {
    let find = "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                WHERE e.extname = 'pg_trgm'";
    if let Some(row) = tx.query_opt(find, &[]).await.map_err(failed)? {
        return Ok(row.get(0));
    }
    let public: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    let create = if public {
        "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public"
    } else {
        "CREATE EXTENSION IF NOT EXISTS pg_trgm"
    };
    // Another application on the same database may create it at the same moment (it does
    // not take our lock): then the statement fails, is undone to the savepoint, and the
    // extension is found.
    tx.batch_execute("SAVEPOINT trgm").await.map_err(failed)?;
    if let Err(e) = tx.batch_execute(create).await {
        tx.batch_execute("ROLLBACK TO SAVEPOINT trgm")
            .await
            .map_err(failed)?;
        return match tx.query_opt(find, &[]).await.map_err(failed)? {
            Some(row) => Ok(row.get(0)),
            None => Err(StoreError::Migrate(format!(
                "the pg_trgm extension is missing and cannot be created ({e}); \
                 run CREATE EXTENSION pg_trgm as a user allowed to"
            ))),
        };
    }
    tx.batch_execute("RELEASE SAVEPOINT trgm")
        .await
        .map_err(failed)?;
    Ok(tx.query_one(find, &[]).await.map_err(failed)?.get(0))
}

/// Applies every migration not yet recorded. Returns how many were applied.
pub(super) async fn to_latest(client: &mut Client) -> Result<usize> {
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(failed)?;
    // `CREATE ... IF NOT EXISTS` on an existing object says so in a NOTICE: not worth a log
    // line at every start.
    tx.batch_execute("SET LOCAL client_min_messages TO warning")
        .await
        .map_err(failed)?;
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(failed)?
        .get(0);
    let schema = schema.ok_or_else(|| {
        StoreError::Migrate(
            "no schema to migrate: the connection's search_path names no existing schema".into(),
        )
    })?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS todo_schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(failed)?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM todo_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newer) = applied.iter().find(|v| **v > LATEST) {
        tracing::warn!(
            version = newer,
            latest = LATEST,
            "the database schema is newer than this build knows"
        );
    }
    let pending: Vec<_> = MIGRATIONS
        .iter()
        .filter(|(version, ..)| !applied.contains(version))
        .collect();
    if !pending.is_empty() {
        let trgm = trigram_schema(&tx).await?;
        // Objects go into the schema being migrated; pg_trgm's operator classes resolve
        // from its own schema (an index keeps the class it was built with, not the name).
        tx.batch_execute(&format!(
            "SET LOCAL search_path TO {}, {}",
            ident(&schema),
            ident(&trgm)
        ))
        .await
        .map_err(failed)?;
        for (version, name, sql) in &pending {
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Migrate(format!("migration {version} ({name}): {e}")))?;
            tx.execute(
                "INSERT INTO todo_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(failed)?;
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok(pending.len())
}
