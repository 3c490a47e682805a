//! Task rows: each write is one statement that also appends its event (a data-modifying
//! `WITH`), so it is atomic without an explicit transaction and costs one round trip; and
//! the list query.

use std::pin::pin;

use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt;
use todo_domain::cursor::CursorKey;
use todo_domain::query::{SortKey, StatusFilter};
use todo_domain::{Task, TaskQuery};
use tokio_postgres::RowStream;
use tokio_postgres::types::{FromSql, ToSql, Type};
use uuid::Uuid;

use super::events::{EVENT_VALUES, NEXT_POS};
use super::rows::{self, SortTime, TASK_COLUMNS};
use crate::{Result, StoreError, TaskJson, TaskPageJson};

/// Parameters of a task write after the event's six (`$7` on), in the order of
/// [`SET_COLUMNS`] then [`IDENTITY_COLUMNS`].
pub(super) struct TaskParams<'t> {
    task: &'t Task,
    /// The task's JSON, as served.
    doc: String,
    title_key: String,
    search_text: String,
    priority: i16,
    frequency: Option<&'static str>,
    interval: Option<i32>,
    anchor_day: Option<i16>,
}

/// The columns a write sets from a task's changeable state, with their types.
const SET_COLUMNS: [(&str, &str); 16] = [
    ("title", "text"),
    ("title_key", "text"),
    ("description", "text"),
    ("search_text", "text"),
    ("completed", "boolean"),
    ("completed_at", "timestamptz"),
    ("priority", "smallint"),
    ("tags", "text[]"),
    ("due_at", "timestamptz"),
    ("remind_before_minutes", "bigint"),
    ("recurrence_frequency", "text"),
    ("recurrence_interval", "integer"),
    ("recurrence_anchor_day", "smallint"),
    ("version", "bigint"),
    ("updated_at", "timestamptz"),
    ("doc", "text"),
];

/// The columns only an insert sets.
const IDENTITY_COLUMNS: [(&str, &str); 4] = [
    ("id", "uuid"),
    ("user_id", "text"),
    ("parent_task_id", "uuid"),
    ("created_at", "timestamptz"),
];

/// The first parameter number after the event's.
const FIRST: usize = 7;

impl<'t> TaskParams<'t> {
    pub(super) fn new(task: &'t Task) -> Self {
        TaskParams {
            task,
            doc: task.to_json(),
            title_key: task.title_key(),
            search_text: task.search_text(),
            priority: task.priority.rank() as i16,
            frequency: task.recurrence.map(|r| r.frequency.as_str()),
            interval: task
                .recurrence
                .map(|r| i32::try_from(r.interval).unwrap_or(i32::MAX)),
            anchor_day: task
                .recurrence_anchor_day
                .map(|d| i16::try_from(d).unwrap_or(i16::MAX)),
        }
    }

    fn settable(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.task.title,
            &self.title_key,
            &self.task.description,
            &self.search_text,
            &self.task.completed,
            &self.task.completed_at,
            &self.priority,
            &self.task.tags,
            &self.task.due_at,
            &self.task.remind_before_minutes,
            &self.frequency,
            &self.interval,
            &self.anchor_day,
            &self.task.version,
            &self.task.updated_at,
            &self.doc,
        ]
    }

    fn identity(&self) -> [&(dyn ToSql + Sync); 4] {
        [
            &self.task.id,
            &self.task.user_id,
            &self.task.parent_task_id,
            &self.task.created_at,
        ]
    }
}

/// `$7::text, $8::text, ...` for every column an insert sets, and their names.
fn insert_lists() -> (String, String) {
    let columns: Vec<_> = SET_COLUMNS.iter().chain(&IDENTITY_COLUMNS).collect();
    let names = columns
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}", FIRST + i))
        .collect::<Vec<_>>()
        .join(", ");
    (names, values)
}

/// The event insert that ends every write, fed by `source` (a CTE's name), or by `VALUES`.
fn event_insert(source: Option<&str>) -> String {
    match source {
        Some(cte) => format!(
            "INSERT INTO events (pos, id, topic, key, payload, created_at)
             SELECT {NEXT_POS}, {EVENT_VALUES} FROM {cte} RETURNING pos"
        ),
        None => format!(
            "INSERT INTO events (pos, id, topic, key, payload, created_at)
             VALUES ({NEXT_POS}, {EVENT_VALUES}) RETURNING pos"
        ),
    }
}

/// Inserts the task and its event (`$1..$6`), returning the event's position.
pub(super) static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (names, values) = insert_lists();
    format!(
        "WITH task AS (INSERT INTO tasks ({names}) VALUES ({values})) {}",
        event_insert(None)
    )
});

/// Replaces the task at `$25` version, appending its event only if it did.
pub(super) static UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let sets = SET_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (n, ty))| format!("{n} = ${}::{ty}", FIRST + i))
        .collect::<Vec<_>>()
        .join(", ");
    let id = FIRST + SET_COLUMNS.len();
    format!(
        "WITH task AS (UPDATE tasks SET {sets} WHERE id = ${id} AND user_id = ${} AND version = ${}
         RETURNING 1) {}",
        id + 1,
        id + 2,
        event_insert(Some("task"))
    )
});

/// Deletes task `$7` of user `$8` at version `$9`, appending its event only if it did.
pub(super) static DELETE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH task AS (DELETE FROM tasks WHERE id = $7 AND user_id = $8 AND version = $9 RETURNING 1) {}",
        event_insert(Some("task"))
    )
});

/// Claims parent `$27`'s next occurrence for the task, inserting it and its event only if
/// no occurrence was claimed before.
pub(super) static SPAWN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (names, values) = insert_lists();
    let parent = FIRST + SET_COLUMNS.len() + IDENTITY_COLUMNS.len();
    let child = FIRST + SET_COLUMNS.len();
    let created = child + 3;
    format!(
        "WITH claim AS (
            INSERT INTO recurrence_spawns (parent_task_id, child_task_id, created_at)
            VALUES (${parent}::uuid, ${child}::uuid, ${created}::timestamptz)
            ON CONFLICT (parent_task_id) DO NOTHING RETURNING 1
         ),
         task AS (INSERT INTO tasks ({names}) SELECT {values} FROM claim)
         {}",
        event_insert(Some("claim"))
    )
});

/// Parameters of [`INSERT`] (and, with the parent id after them, [`SPAWN`]).
pub(super) fn insert_params<'a>(
    event: &'a [&'a (dyn ToSql + Sync); 6],
    task: &'a TaskParams<'a>,
) -> Vec<&'a (dyn ToSql + Sync)> {
    event
        .iter()
        .copied()
        .chain(task.settable())
        .chain(task.identity())
        .collect()
}

/// Parameters of [`UPDATE`].
pub(super) fn update_params<'a>(
    event: &'a [&'a (dyn ToSql + Sync); 6],
    task: &'a TaskParams<'a>,
    expected_version: &'a i64,
) -> Vec<&'a (dyn ToSql + Sync)> {
    event
        .iter()
        .copied()
        .chain(task.settable())
        .chain([
            &task.task.id as &(dyn ToSql + Sync),
            &task.task.user_id,
            expected_version,
        ])
        .collect()
}

/// Tells `NotFound` from `VersionConflict` after a guarded write touched no row.
pub(super) async fn miss(client: &impl GenericClient, user_id: &str, id: Uuid) -> StoreError {
    let current = async {
        let stmt = client
            .prepare_cached("SELECT version FROM tasks WHERE id = $1 AND user_id = $2")
            .await?;
        Ok::<_, tokio_postgres::Error>(
            client
                .query_opt(&stmt, &[&id, &user_id])
                .await?
                .map(|r| r.get::<_, i64>(0)),
        )
    };
    match current.await {
        Ok(Some(current)) => StoreError::VersionConflict { current },
        Ok(None) => StoreError::NotFound,
        Err(e) => e.into(),
    }
}

pub(super) async fn get(
    client: &impl GenericClient,
    user_id: &str,
    id: Uuid,
) -> Result<Option<Task>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2")
    });
    let stmt = client.prepare_cached(&SQL).await?;
    client
        .query_opt(&stmt, &[&id, &user_id])
        .await?
        .as_ref()
        .map(rows::task)
        .transpose()
}

/// The task [`get`] returns, as JSON copied from the `doc` column; a task without one
/// (written before the column existed) is rendered from its columns.
pub(super) async fn get_json(
    client: &impl GenericClient,
    user_id: &str,
    id: Uuid,
) -> Result<Option<TaskJson>> {
    let stmt = client
        .prepare_cached("SELECT version, doc FROM tasks WHERE id = $1 AND user_id = $2")
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&id, &user_id]).await? else {
        return Ok(None);
    };
    match row.try_get::<_, Option<TextBytes>>(1)? {
        Some(TextBytes(doc)) => Ok(Some(TaskJson {
            version: row.try_get(0)?,
            json: doc.to_vec(),
        })),
        None => Ok(get(client, user_id, id)
            .await?
            .as_ref()
            .map(TaskJson::from_task)),
    }
}

/// The SQL expression a sort orders by, as its index has it. `due_at` maps "no due date"
/// past the end in the direction of travel, so those tasks come last either way.
fn sort_expr(sort: SortKey, descending: bool) -> &'static str {
    match (sort, descending) {
        (SortKey::CreatedAt, _) => "created_at",
        (SortKey::Priority, _) => "priority",
        (SortKey::Title, _) => "title_key",
        (SortKey::DueAt, false) => "COALESCE(due_at, 'infinity'::timestamptz)",
        (SortKey::DueAt, true) => "COALESCE(due_at, '-infinity'::timestamptz)",
    }
}

type Param = (Box<dyn ToSql + Sync + Send>, Type);

/// The cursor's key as a parameter of the sort's type. A key of the wrong type (the domain
/// refuses those, but a store is not to trust it) is an error, never a panic.
fn key_param(sort: SortKey, key: &CursorKey) -> Result<Param> {
    match (sort, key) {
        (SortKey::CreatedAt | SortKey::DueAt, CursorKey::Int(v)) => {
            Ok((Box::new(SortTime(*v)), Type::TIMESTAMPTZ))
        }
        (SortKey::Priority, CursorKey::Int(v)) => Ok((
            Box::new((*v).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16),
            Type::INT2,
        )),
        (SortKey::Title, CursorKey::Text(v)) => Ok((Box::new(v.clone()), Type::TEXT)),
        _ => Err(StoreError::Failed(format!(
            "the cursor's key does not fit sort={}",
            sort.as_str()
        ))),
    }
}

/// `q` as a LIKE pattern matching it anywhere, its wildcards taken literally.
fn contains_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of the user's tasks.
///
/// How selective `q=`, `tag=` and the due-date bounds are depends on their values, and so
/// does the best plan (the trigram or tag index, or the sort index walked with a filter). A
/// list with any of them is therefore sent as an unnamed statement with its parameter types
/// (one round trip), which PostgreSQL plans for the values at hand each time. A list with
/// only status, priority, sort and cursor has one good plan whatever the values (the sort's
/// index, walked from the cursor): it is prepared once per connection and its plan reused.
/// Those come in at most 96 shapes, so the statement cache stays small.
pub(super) async fn list(
    client: &deadpool_postgres::Client,
    user_id: &str,
    query: &TaskQuery,
) -> Result<Vec<Task>> {
    let rows: Vec<tokio_postgres::Row> = list_rows(client, user_id, query, TASK_COLUMNS)
        .await?
        .try_collect()
        .await?;
    rows.iter().map(rows::task).collect()
}

/// The page [`list`] returns, as JSON copied from the `doc` column. A page holding a task
/// without one (written before the column existed) is rendered from the columns instead.
/// Each row is copied into the page as it arrives and dropped, rather than all of them
/// collected first.
pub(super) async fn list_json(
    client: &deadpool_postgres::Client,
    user_id: &str,
    query: &TaskQuery,
) -> Result<TaskPageJson> {
    let mut page = TaskPageJson::for_limit(query.limit);
    let complete = {
        let mut rows = pin!(list_rows(client, user_id, query, "doc").await?);
        loop {
            let Some(row) = rows.try_next().await? else {
                break true;
            };
            let Some(TextBytes(doc)) = row.try_get(0)? else {
                break false;
            };
            if !page.offer(|out| out.extend_from_slice(doc)) {
                break true;
            }
        }
    };
    // The stream is dropped before the fallback's query: the connection hands one
    // statement's rows to its stream before the next statement's, so querying while it is
    // still held would wait for it forever.
    if complete {
        Ok(page)
    } else {
        let tasks = list(client, user_id, query).await?;
        Ok(TaskPageJson::from_tasks(&tasks, query.limit))
    }
}

/// A text column's bytes as the server sent them. The connection's `client_encoding` is
/// UTF8 (tokio-postgres sets it when it connects), so the server has already checked them
/// and converted them if need be; reading them as `&str` would check them a second time.
struct TextBytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for TextBytes<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// The rows of one page, selecting `columns`, as the server sends them.
async fn list_rows(
    client: &deadpool_postgres::Client,
    user_id: &str,
    query: &TaskQuery,
    columns: &str,
) -> Result<RowStream> {
    let mut sql = format!("SELECT {columns} FROM tasks WHERE user_id = $1");
    let mut args: Vec<Param> = vec![(Box::new(user_id.to_owned()), Type::TEXT)];
    let arg = |args: &mut Vec<Param>, value: Param| {
        args.push(value);
        format!("${}", args.len())
    };
    match query.status {
        StatusFilter::All => {}
        StatusFilter::Pending => sql.push_str(" AND NOT completed"),
        StatusFilter::Completed => sql.push_str(" AND completed"),
    }
    if let Some(priority) = query.priority {
        let p = arg(&mut args, (Box::new(priority.rank() as i16), Type::INT2));
        sql.push_str(&format!(" AND priority = {p}"));
    }
    let value_dependent = !query.tags.is_empty()
        || query.q.is_some()
        || query.due_before.is_some()
        || query.due_after.is_some();
    if !query.tags.is_empty() {
        let p = arg(&mut args, (Box::new(query.tags.clone()), Type::TEXT_ARRAY));
        sql.push_str(&format!(" AND tags @> {p}"));
    }
    if let Some(q) = &query.q {
        let p = arg(&mut args, (Box::new(contains_pattern(q)), Type::TEXT));
        sql.push_str(&format!(" AND search_text LIKE {p} ESCAPE '\\'"));
    }
    // Both bounds on one due-date sort expression (the sort's own when sorting by due date,
    // else the ascending one), so its index serves the range and the planner sees one range
    // rather than two unrelated conditions. A task without a due date maps to an infinity:
    // the one past the bound is refused by the comparison, the other by `IS NOT NULL`.
    let due = if query.sort == SortKey::DueAt {
        sort_expr(SortKey::DueAt, query.descending)
    } else {
        sort_expr(SortKey::DueAt, false)
    };
    let nulls_pass_before = query.sort == SortKey::DueAt && query.descending;
    if let Some(before) = query.due_before {
        let p = arg(&mut args, (Box::new(before), Type::TIMESTAMPTZ));
        sql.push_str(&format!(" AND {due} < {p}"));
        if nulls_pass_before {
            sql.push_str(" AND due_at IS NOT NULL");
        }
    }
    if let Some(after) = query.due_after {
        let p = arg(&mut args, (Box::new(after), Type::TIMESTAMPTZ));
        sql.push_str(&format!(" AND {due} > {p}"));
        if !nulls_pass_before {
            sql.push_str(" AND due_at IS NOT NULL");
        }
    }
    let expr = sort_expr(query.sort, query.descending);
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(cursor) = &query.after {
        let id = Uuid::try_parse(&cursor.id)
            .map_err(|_| StoreError::Failed("the cursor's id is not a UUID".into()))?;
        let k = arg(&mut args, key_param(query.sort, &cursor.key)?);
        let i = arg(&mut args, (Box::new(id), Type::UUID));
        sql.push_str(&format!(" AND ({expr}, id) {cmp} ({k}, {i})"));
    }
    let limit = arg(
        &mut args,
        (Box::new(query.limit.saturating_add(1).max(0)), Type::INT8),
    );
    sql.push_str(&format!(" ORDER BY {expr} {dir}, id {dir} LIMIT {limit}"));
    let rows = if value_dependent {
        client
            .query_typed_raw(
                &sql,
                args.iter()
                    .map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone())),
            )
            .await?
    } else {
        let stmt = client.prepare_cached(&sql).await?;
        client
            .query_raw(&stmt, args.iter().map(|(v, _)| &**v as &(dyn ToSql + Sync)))
            .await?
    };
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_q_are_taken_literally() {
        assert_eq!(contains_pattern("0%"), "%0\\%%");
        assert_eq!(contains_pattern("e_c"), "%e\\_c%");
        assert_eq!(contains_pattern("a\\b"), "%a\\\\b%");
    }

    #[test]
    fn write_statements_number_their_parameters_in_order() {
        assert!(INSERT.contains("$22::text, $23::uuid"));
        assert!(INSERT.contains("$26::timestamptz"));
        assert!(!INSERT.contains("$27"));
        assert!(UPDATE.contains("doc = $22::text WHERE id = $23"));
        assert!(UPDATE.contains("version = $25 RETURNING") || UPDATE.contains("version = $25\n"));
        assert!(SPAWN.contains("$27::uuid, $23::uuid, $26::timestamptz"));
    }
}
