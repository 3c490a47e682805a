//! Task rows: writes inside the caller's transaction, reads and the list query.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use todo_domain::cursor::CursorKey;
use todo_domain::query::{SortKey, StatusFilter, due_sort_value};
use todo_domain::{Task, TaskQuery};
use uuid::Uuid;

use super::rows::{self, TASK_COLUMNS};
use crate::{Result, StoreError};

/// A query with SQLite arguments.
pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_task<'q>(query: Query<'q>, task: &'q Task) -> Query<'q> {
    query
        .bind(task.title.as_str())
        .bind(task.title_key())
        .bind(task.description.as_deref())
        .bind(task.search_text())
        .bind(task.completed)
        .bind(task.completed_at.map(|t| t.timestamp_micros()))
        .bind(task.priority.rank())
        .bind(serde_json::to_string(&task.tags).unwrap_or_else(|_| "[]".into()))
        .bind(task.due_at.map(|t| t.timestamp_micros()))
        .bind(task.remind_before_minutes)
        .bind(task.recurrence.map(|r| r.frequency.as_str()))
        .bind(task.recurrence.map(|r| i64::from(r.interval)))
        .bind(task.recurrence_anchor_day.map(i64::from))
        .bind(task.version)
        .bind(task.updated_at.timestamp_micros())
}

/// Inserts a task row; its parameters are bound by [`bind_insert`].
pub(super) const INSERT: &str =
    "INSERT INTO tasks (title, title_key, description, search_text, completed, completed_at,
        priority, tags, due_at, remind_before_minutes, recurrence_frequency, recurrence_interval,
        recurrence_anchor_day, version, updated_at, id, user_id, parent_task_id, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Binds [`INSERT`]'s parameters.
pub(super) fn bind_insert<'q>(query: Query<'q>, task: &'q Task) -> Query<'q> {
    bind_task(query, task)
        .bind(task.id.to_string())
        .bind(task.user_id.as_str())
        .bind(task.parent_task_id.map(|id| id.to_string()))
        .bind(task.created_at.timestamp_micros())
}

pub(super) async fn insert(conn: &mut SqliteConnection, task: &Task) -> Result<()> {
    bind_insert(sqlx::query(INSERT), task).execute(conn).await?;
    Ok(())
}

pub(super) async fn get(
    conn: &mut SqliteConnection,
    user_id: &str,
    id: Uuid,
) -> Result<Option<Task>> {
    let row: Option<SqliteRow> = sqlx::query(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ? AND user_id = ?"
    ))
    .bind(id.to_string())
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::task).transpose()
}

/// Tells `NotFound` from `VersionConflict` after a guarded write touched no row.
async fn miss(conn: &mut SqliteConnection, user_id: &str, id: Uuid) -> StoreError {
    let current: std::result::Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT version FROM tasks WHERE id = ? AND user_id = ?")
            .bind(id.to_string())
            .bind(user_id)
            .fetch_optional(conn)
            .await;
    match current {
        Ok(Some(current)) => StoreError::VersionConflict { current },
        Ok(None) => StoreError::NotFound,
        Err(e) => e.into(),
    }
}

pub(super) async fn update(
    conn: &mut SqliteConnection,
    task: &Task,
    expected_version: i64,
) -> Result<()> {
    let query = sqlx::query(
        "UPDATE tasks SET title = ?, title_key = ?, description = ?, search_text = ?, completed = ?, completed_at = ?,
            priority = ?, tags = ?, due_at = ?, remind_before_minutes = ?, recurrence_frequency = ?,
            recurrence_interval = ?, recurrence_anchor_day = ?, version = ?, updated_at = ?
         WHERE id = ? AND user_id = ? AND version = ?",
    );
    let done = bind_task(query, task)
        .bind(task.id.to_string())
        .bind(task.user_id.as_str())
        .bind(expected_version)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(miss(conn, &task.user_id, task.id).await)
    }
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    user_id: &str,
    id: Uuid,
    expected_version: i64,
) -> Result<()> {
    let done = sqlx::query("DELETE FROM tasks WHERE id = ? AND user_id = ? AND version = ?")
        .bind(id.to_string())
        .bind(user_id)
        .bind(expected_version)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(miss(conn, user_id, id).await)
    }
}

/// The SQL expression a sort orders by. `due_at` maps "no due date" past the end in the
/// direction of travel, so those tasks come last either way and keyset comparison works.
fn sort_expr(sort: SortKey, descending: bool) -> String {
    match sort {
        SortKey::CreatedAt => "created_at".into(),
        SortKey::Priority => "priority".into(),
        SortKey::Title => "title_key".into(),
        SortKey::DueAt => format!("COALESCE(due_at, {})", due_sort_value(None, descending)),
    }
}

pub(super) async fn list(
    conn: &mut SqliteConnection,
    user_id: &str,
    query: &TaskQuery,
) -> Result<Vec<Task>> {
    let mut sql: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = "));
    sql.push_bind(user_id);
    match query.status {
        StatusFilter::All => {}
        StatusFilter::Pending => {
            sql.push(" AND completed = 0");
        }
        StatusFilter::Completed => {
            sql.push(" AND completed = 1");
        }
    }
    if let Some(priority) = query.priority {
        sql.push(" AND priority = ").push_bind(priority.rank());
    }
    for tag in &query.tags {
        sql.push(" AND EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE json_each.value = ")
            .push_bind(tag.as_str())
            .push(")");
    }
    if let Some(q) = &query.q {
        sql.push(" AND instr(search_text, ")
            .push_bind(q.as_str())
            .push(") > 0");
    }
    if let Some(before) = query.due_before {
        sql.push(" AND due_at IS NOT NULL AND due_at < ")
            .push_bind(before.timestamp_micros());
    }
    if let Some(after) = query.due_after {
        sql.push(" AND due_at IS NOT NULL AND due_at > ")
            .push_bind(after.timestamp_micros());
    }
    let expr = sort_expr(query.sort, query.descending);
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(cursor) = &query.after {
        sql.push(format!(" AND ({expr} {cmp} "));
        push_key(&mut sql, &cursor.key);
        sql.push(format!(" OR ({expr} = "));
        push_key(&mut sql, &cursor.key);
        sql.push(format!(" AND id {cmp} "))
            .push_bind(cursor.id.clone())
            .push("))");
    }
    sql.push(format!(" ORDER BY {expr} {dir}, id {dir} LIMIT "))
        .push_bind(query.limit + 1);
    let rows = sql.build().fetch_all(&mut *conn).await?;
    rows.iter().map(rows::task).collect()
}

fn push_key(sql: &mut QueryBuilder<Sqlite>, key: &CursorKey) {
    match key {
        CursorKey::Int(v) => sql.push_bind(*v),
        CursorKey::Text(v) => sql.push_bind(v.clone()),
    };
}
