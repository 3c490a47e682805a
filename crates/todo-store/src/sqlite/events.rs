//! The outbox/log and the audit log.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use todo_domain::time::Timestamp;
use todo_domain::{AuditEntry, CloudEvent, Topic};

use super::rows;
use super::tasks::Query;
use crate::{AuditQuery, Result, StoreError, StoredEvent};

/// Appends `event` to the outbox inside the caller's transaction.
pub(super) async fn append(conn: &mut SqliteConnection, event: &CloudEvent) -> Result<()> {
    bind_append(sqlx::query(APPEND), event)?
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends an event; its parameters are bound by [`bind_append`].
pub(super) const APPEND: &str =
    "INSERT INTO events (id, topic, key, payload, created_at) VALUES (?, ?, ?, ?, ?)";

/// Binds [`APPEND`]'s parameters.
pub(super) fn bind_append<'q>(query: Query<'q>, event: &'q CloudEvent) -> Result<Query<'q>> {
    let topic = event
        .topic()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(query
        .bind(event.id.to_string())
        .bind(topic.as_str())
        .bind(event.user_id().unwrap_or_default())
        .bind(serde_json::to_string(event)?)
        .bind(todo_domain::time::now().timestamp_micros()))
}

pub(super) async fn read(
    conn: &mut SqliteConnection,
    after: i64,
    topics: &[Topic],
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let mut sql: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT seq, payload FROM events WHERE seq > ");
    sql.push_bind(after).push(" AND topic IN (");
    let mut names = sql.separated(", ");
    for topic in topics {
        names.push_bind(topic.as_str());
    }
    sql.push(") ORDER BY seq LIMIT ").push_bind(limit);
    let rows = sql.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: row.try_get("seq")?,
                event: serde_json::from_str(&row.try_get::<String, _>("payload")?)?,
            })
        })
        .collect()
}

pub(super) async fn count_after(
    conn: &mut SqliteConnection,
    after: i64,
    topics: &[Topic],
) -> Result<i64> {
    let mut sql: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT COUNT(*) FROM events WHERE seq > ");
    sql.push_bind(after).push(" AND topic IN (");
    let mut names = sql.separated(", ");
    for topic in topics {
        names.push_bind(topic.as_str());
    }
    sql.push(")");
    Ok(sql.build_query_scalar().fetch_one(&mut *conn).await?)
}

pub(super) async fn prune(
    conn: &mut SqliteConnection,
    before: Timestamp,
    consumers: &[&str],
) -> Result<u64> {
    if consumers.is_empty() {
        return Ok(0);
    }
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT COUNT(*), MIN(position) FROM consumer_positions WHERE consumer IN (",
    );
    let mut names = sql.separated(", ");
    for consumer in consumers {
        names.push_bind(*consumer);
    }
    sql.push(")");
    let row = sql.build().fetch_one(&mut *conn).await?;
    let (known, floor): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
    let Some(floor) = floor.filter(|_| known == consumers.len() as i64) else {
        return Ok(0); // a consumer that never committed still needs everything
    };
    let done = sqlx::query("DELETE FROM events WHERE seq <= ? AND created_at < ?")
        .bind(floor)
        .bind(before.timestamp_micros())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn record_audit(
    conn: &mut SqliteConnection,
    entries: &[AuditEntry],
) -> Result<u64> {
    // One multi-row statement per chunk: atomic by itself, and one hand-off to SQLite's
    // thread instead of one per row while holding the write lock.
    const ROWS_PER_STATEMENT: usize = 500; // 8 parameters a row, well under SQLite's limit
    let mut inserted = 0;
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let mut data = Vec::with_capacity(chunk.len());
        for entry in chunk {
            data.push(serde_json::to_string(&entry.data)?);
        }
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit_log (event_id, user_id, event_type, task_id, occurred_at, recorded_at, source, data) ",
        );
        sql.push_values(chunk.iter().zip(data), |mut row, (entry, data)| {
            row.push_bind(entry.event_id.to_string())
                .push_bind(entry.user_id.as_str())
                .push_bind(entry.event_type.as_str())
                .push_bind(entry.task_id.map(|id| id.to_string()))
                .push_bind(entry.occurred_at.timestamp_micros())
                .push_bind(entry.recorded_at.timestamp_micros())
                .push_bind(entry.source.as_str())
                .push_bind(data);
        });
        sql.push(" ON CONFLICT (event_id) DO NOTHING");
        inserted += sql.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

pub(super) async fn list_audit(
    conn: &mut SqliteConnection,
    user_id: &str,
    query: &AuditQuery,
) -> Result<Vec<(i64, AuditEntry)>> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT seq, event_id, user_id, event_type, task_id, occurred_at, recorded_at, source, data
         FROM audit_log WHERE user_id = ",
    );
    sql.push_bind(user_id);
    if let Some(task_id) = query.task_id {
        sql.push(" AND task_id = ").push_bind(task_id.to_string());
    }
    if let Some(event_type) = &query.event_type {
        sql.push(" AND event_type = ").push_bind(event_type.clone());
    }
    if let Some(before) = query.before {
        let at = before.occurred_at.timestamp_micros();
        sql.push(" AND (occurred_at < ")
            .push_bind(at)
            .push(" OR (occurred_at = ")
            .push_bind(at)
            .push(" AND seq < ")
            .push_bind(before.seq)
            .push("))");
    }
    sql.push(" ORDER BY occurred_at DESC, seq DESC LIMIT ")
        .push_bind(query.limit + 1);
    let rows = sql.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            let entry = AuditEntry {
                event_id: rows::uuid(&row.try_get::<String, _>("event_id")?)?,
                event_type: row.try_get("event_type")?,
                task_id: row
                    .try_get::<Option<String>, _>("task_id")?
                    .map(|raw| rows::uuid(&raw))
                    .transpose()?,
                user_id: row.try_get("user_id")?,
                occurred_at: rows::time(row.try_get("occurred_at")?)?,
                recorded_at: rows::time(row.try_get("recorded_at")?)?,
                source: row.try_get("source")?,
                data: serde_json::from_str(&row.try_get::<String, _>("data")?)?,
            };
            Ok((row.try_get("seq")?, entry))
        })
        .collect()
}
