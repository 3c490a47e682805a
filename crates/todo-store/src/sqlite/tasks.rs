//! Task rows: writes inside the writer's transaction, reads and the list query.

use rusqlite::ToSql;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use todo_domain::cursor::CursorKey;
use todo_domain::query::{SortKey, StatusFilter, due_sort_value};
use todo_domain::{Task, TaskQuery};
use uuid::Uuid;

use super::rows::{self, TASK_COLUMNS};
use crate::{Result, StoreError, TaskJson, TaskPageJson};

fn micros(t: Option<todo_domain::time::Timestamp>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

/// A task to write, with its JSON rendered by the caller: the writer thread, which every
/// write waits for, then only runs SQL.
pub(super) struct Rendered {
    pub(super) task: Task,
    /// The task's JSON, as served (the `doc` column).
    doc: String,
}

impl Rendered {
    pub(super) fn new(task: &Task) -> Self {
        Rendered {
            task: task.clone(),
            doc: task.to_json(),
        }
    }
}

/// The columns a write sets from a task's changeable state, computed once, in the order
/// of [`Settable::params`]: `title, title_key, description, search_text, completed,
/// completed_at, priority, tags, due_at, remind_before_minutes, recurrence_frequency,
/// recurrence_interval, recurrence_anchor_day, version, updated_at, doc`.
struct Settable<'t> {
    task: &'t Task,
    /// The task's JSON, as served.
    doc: &'t str,
    title_key: String,
    search_text: String,
    tags: String,
    completed_at: Option<i64>,
    priority: i64,
    due_at: Option<i64>,
    frequency: Option<&'static str>,
    interval: Option<i64>,
    anchor_day: Option<i64>,
    updated_at: i64,
}

impl<'t> Settable<'t> {
    fn new(rendered: &'t Rendered) -> Self {
        let task = &rendered.task;
        Settable {
            task,
            doc: &rendered.doc,
            title_key: task.title_key(),
            search_text: task.search_text(),
            tags: serde_json::to_string(&task.tags).unwrap_or_else(|_| "[]".into()),
            completed_at: micros(task.completed_at),
            priority: task.priority.rank(),
            due_at: micros(task.due_at),
            frequency: task.recurrence.map(|r| r.frequency.as_str()),
            interval: task.recurrence.map(|r| i64::from(r.interval)),
            anchor_day: task.recurrence_anchor_day.map(i64::from),
            updated_at: task.updated_at.timestamp_micros(),
        }
    }

    fn params(&self) -> [&dyn ToSql; 16] {
        [
            &self.task.title,
            &self.title_key,
            &self.task.description,
            &self.search_text,
            &self.task.completed,
            &self.completed_at,
            &self.priority,
            &self.tags,
            &self.due_at,
            &self.task.remind_before_minutes,
            &self.frequency,
            &self.interval,
            &self.anchor_day,
            &self.task.version,
            &self.updated_at,
            &self.doc,
        ]
    }
}

pub(super) fn insert(conn: &Connection, rendered: &Rendered) -> Result<()> {
    let task = &rendered.task;
    let mut id = Uuid::encode_buffer();
    let mut parent = Uuid::encode_buffer();
    let id = &*task.id.hyphenated().encode_lower(&mut id);
    let parent = task
        .parent_task_id
        .map(|p| &*p.hyphenated().encode_lower(&mut parent));
    let created_at = task.created_at.timestamp_micros();
    let settable = Settable::new(rendered);
    let identity: [&dyn ToSql; 4] = [&id, &task.user_id, &parent, &created_at];
    conn.prepare_cached(&INSERT_SQL)?.execute(params_from_iter(
        settable.params().into_iter().chain(identity),
    ))?;
    Ok(())
}

/// The INSERT of a task: the settable columns, then the four an update never changes.
static INSERT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = [
        &SETTABLE_COLUMNS[..],
        &["id", "user_id", "parent_task_id", "created_at"],
    ]
    .concat();
    format!(
        "INSERT INTO tasks ({}) VALUES ({})",
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    )
});

pub(super) fn get(conn: &Connection, user_id: &str, id: Uuid) -> Result<Option<Task>> {
    // Built once: the statement cache is keyed by this text, hashed on every call.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ? AND user_id = ?")
    });
    let mut buf = Uuid::encode_buffer();
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut rows = stmt.query(params![&*id.hyphenated().encode_lower(&mut buf), user_id])?;
    rows.next()?.map(rows::task).transpose()
}

/// The task [`get`] returns, as JSON copied from the `doc` column (read as a blob, as
/// [`list_json`] reads it); a task without one (written before the column existed) is
/// rendered from its columns.
pub(super) fn get_json(conn: &Connection, user_id: &str, id: Uuid) -> Result<Option<TaskJson>> {
    let mut buf = Uuid::encode_buffer();
    let mut stmt = conn.prepare_cached(
        "SELECT version, CAST(doc AS BLOB) FROM tasks WHERE id = ? AND user_id = ?",
    )?;
    let mut rows = stmt.query(params![&*id.hyphenated().encode_lower(&mut buf), user_id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    match row.get_ref(1)?.as_blob_or_null()? {
        Some(doc) => Ok(Some(TaskJson {
            version: row.get(0)?,
            json: stored_json(doc)?.as_bytes().to_vec(),
        })),
        None => Ok(get(conn, user_id, id)?.as_ref().map(TaskJson::from_task)),
    }
}

/// A task's stored JSON, checked to be text.
fn stored_json(doc: &[u8]) -> Result<&str> {
    std::str::from_utf8(doc)
        .map_err(|_| StoreError::Corrupt("a task's stored JSON is not UTF-8".into()))
}

/// Tells `NotFound` from `VersionConflict` after a guarded write touched no row.
fn miss(conn: &Connection, user_id: &str, id: &str) -> StoreError {
    let current = conn
        .prepare_cached("SELECT version FROM tasks WHERE id = ? AND user_id = ?")
        .and_then(|mut s| s.query_row(params![id, user_id], |r| r.get(0)).optional());
    match current {
        Ok(Some(current)) => StoreError::VersionConflict { current },
        Ok(None) => StoreError::NotFound,
        Err(e) => e.into(),
    }
}

/// The columns a write sets, in [`Settable::params`] order.
const SETTABLE_COLUMNS: [&str; 16] = [
    "title",
    "title_key",
    "description",
    "search_text",
    "completed",
    "completed_at",
    "priority",
    "tags",
    "due_at",
    "remind_before_minutes",
    "recurrence_frequency",
    "recurrence_interval",
    "recurrence_anchor_day",
    "version",
    "updated_at",
    "doc",
];

/// The settable columns some index of `tasks` holds, by their place in
/// [`SETTABLE_COLUMNS`]; bit `i` of an update's change mask stands for the `i`-th.
///
/// SQLite rewrites an index's entry (a delete and an insert) whenever an UPDATE assigns one
/// of its columns, whether the value changes or not, and each entry rewritten dirties a
/// page of its own, which the log and then the checkpoint write out. So an update assigns
/// only those of these columns whose value changed: a new title rewrites the title index
/// alone, not all four (see docs/benchmarks.md, 2026-12-03 afternoon).
const INDEXED: [usize; 4] = [1, 4, 6, 8];

/// One UPDATE text per change mask, so each is prepared once per connection (16 at most).
static UPDATE_SQL: std::sync::LazyLock<[String; 16]> =
    std::sync::LazyLock::new(|| std::array::from_fn(update_sql));

fn update_sql(changed: usize) -> String {
    let set: Vec<String> = SETTABLE_COLUMNS
        .iter()
        .enumerate()
        .filter(|&(i, _)| assigns(i, changed))
        .map(|(_, column)| format!("{column} = ?"))
        .collect();
    format!(
        "UPDATE tasks SET {} WHERE id = ? AND user_id = ? AND version = ?",
        set.join(", ")
    )
}

/// Whether an update with change mask `changed` assigns the settable column at `i`.
fn assigns(i: usize, changed: usize) -> bool {
    INDEXED
        .iter()
        .position(|&at| at == i)
        .is_none_or(|bit| changed & (1 << bit) != 0)
}

pub(super) fn update(conn: &Connection, rendered: &Rendered, expected_version: i64) -> Result<()> {
    let task = &rendered.task;
    let mut buf = Uuid::encode_buffer();
    let id = &*task.id.hyphenated().encode_lower(&mut buf);
    let settable = Settable::new(rendered);
    // The row at the expected version, compared on its indexed columns. The pages read
    // here are the ones the update writes next, so the read is nearly free.
    let changed = conn
        .prepare_cached(
            "SELECT title_key, completed, priority, due_at FROM tasks
             WHERE id = ? AND user_id = ? AND version = ?",
        )?
        .query_row(params![id, &task.user_id, expected_version], |r| {
            let differs = [
                r.get_ref(0)?.as_str()? != settable.title_key,
                r.get::<_, bool>(1)? != task.completed,
                r.get::<_, i64>(2)? != settable.priority,
                r.get::<_, Option<i64>>(3)? != settable.due_at,
            ];
            Ok(differs
                .iter()
                .enumerate()
                .fold(0, |mask, (bit, &d)| mask | (usize::from(d) << bit)))
        })
        .optional()?;
    let Some(changed) = changed else {
        return Err(miss(conn, &task.user_id, id));
    };
    let params = settable.params();
    let assigned = params
        .iter()
        .enumerate()
        .filter(|&(i, _)| assigns(i, changed))
        .map(|(_, &p)| p);
    let updated = conn
        .prepare_cached(&UPDATE_SQL[changed])?
        .execute(params_from_iter(assigned.chain([
            &id as &dyn ToSql,
            &task.user_id,
            &expected_version,
        ])))?;
    if updated == 1 {
        Ok(())
    } else {
        Err(miss(conn, &task.user_id, id))
    }
}

pub(super) fn delete(
    conn: &Connection,
    user_id: &str,
    id: Uuid,
    expected_version: i64,
) -> Result<()> {
    let mut buf = Uuid::encode_buffer();
    let id = &*id.hyphenated().encode_lower(&mut buf);
    let changed = conn
        .prepare_cached("DELETE FROM tasks WHERE id = ? AND user_id = ? AND version = ?")?
        .execute(params![id, user_id, expected_version])?;
    if changed == 1 {
        Ok(())
    } else {
        Err(miss(conn, user_id, id))
    }
}

/// Records that `parent_id`'s next occurrence is `child_id`; false if one already was.
pub(super) fn claim_spawn(
    conn: &Connection,
    parent_id: Uuid,
    child_id: Uuid,
    at: todo_domain::time::Timestamp,
) -> Result<bool> {
    let claimed = conn
        .prepare_cached(
            "INSERT INTO recurrence_spawns (parent_task_id, child_task_id, created_at) VALUES (?, ?, ?)
             ON CONFLICT (parent_task_id) DO NOTHING",
        )?
        .execute(params![
            parent_id.to_string(),
            child_id.to_string(),
            at.timestamp_micros()
        ])?;
    Ok(claimed == 1)
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

fn key_value(key: &CursorKey) -> Value {
    match key {
        CursorKey::Int(v) => Value::Integer(*v),
        CursorKey::Text(v) => Value::Text(v.clone()),
    }
}

/// The list query for `query`, selecting `columns`, with its arguments.
fn list_sql(user_id: &str, query: &TaskQuery, columns: &str) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {columns} FROM tasks WHERE user_id = ?");
    let mut args: Vec<Value> = vec![Value::Text(user_id.to_owned())];
    match query.status {
        StatusFilter::All => {}
        StatusFilter::Pending => sql.push_str(" AND completed = 0"),
        StatusFilter::Completed => sql.push_str(" AND completed = 1"),
    }
    if let Some(priority) = query.priority {
        sql.push_str(" AND priority = ?");
        args.push(Value::Integer(priority.rank()));
    }
    for tag in &query.tags {
        sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE json_each.value = ?)");
        args.push(Value::Text(tag.clone()));
    }
    if let Some(q) = &query.q {
        sql.push_str(" AND instr(search_text, ?) > 0");
        args.push(Value::Text(q.clone()));
    }
    if let Some(before) = query.due_before {
        sql.push_str(" AND due_at IS NOT NULL AND due_at < ?");
        args.push(Value::Integer(before.timestamp_micros()));
    }
    if let Some(after) = query.due_after {
        sql.push_str(" AND due_at IS NOT NULL AND due_at > ?");
        args.push(Value::Integer(after.timestamp_micros()));
    }
    let expr = sort_expr(query.sort, query.descending);
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(cursor) = &query.after {
        sql.push_str(&format!(
            " AND ({expr} {cmp} ? OR ({expr} = ? AND id {cmp} ?))"
        ));
        args.push(key_value(&cursor.key));
        args.push(key_value(&cursor.key));
        args.push(Value::Text(cursor.id.clone()));
    }
    sql.push_str(&format!(" ORDER BY {expr} {dir}, id {dir} LIMIT ?"));
    args.push(Value::Integer(query.limit + 1));
    (sql, args)
}

pub(super) fn list(conn: &Connection, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>> {
    let (sql, args) = list_sql(user_id, query, TASK_COLUMNS);
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(stmt.query(params_from_iter(args))?, rows::task)
}

/// The page [`list`] returns, as JSON copied from the `doc` column. A page holding a task
/// without one (written before the column existed) is rendered from the columns instead.
pub(super) fn list_json(
    conn: &Connection,
    user_id: &str,
    query: &TaskQuery,
) -> Result<TaskPageJson> {
    // As a blob: SQLite hands a blob out where it lies in the page, while text is first
    // copied to add a terminating NUL.
    let (sql, args) = list_sql(user_id, query, "CAST(doc AS BLOB)");
    let mut page = TaskPageJson::for_limit(query.limit);
    {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            let Some(doc) = row.get_ref(0)?.as_blob_or_null()? else {
                return Ok(TaskPageJson::from_tasks(
                    &list(conn, user_id, query)?,
                    query.limit,
                ));
            };
            let doc = stored_json(doc)?;
            if !page.offer(|out| out.extend_from_slice(doc.as_bytes())) {
                break;
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_assigns_the_indexed_columns_that_changed_and_every_other() {
        let unindexed = SETTABLE_COLUMNS.len() - INDEXED.len();
        for changed in 0..16 {
            let sql = &UPDATE_SQL[changed];
            let assigned = SETTABLE_COLUMNS
                .iter()
                .filter(|c| sql.contains(&format!(" {c} = ?")))
                .count();
            assert_eq!(assigned, unindexed + changed.count_ones() as usize, "{sql}");
            for (bit, &at) in INDEXED.iter().enumerate() {
                let column = SETTABLE_COLUMNS[at];
                assert_eq!(
                    sql.contains(&format!(" {column} = ?")),
                    changed & (1 << bit) != 0,
                    "{column} in {sql}"
                );
            }
            // One placeholder per assigned column, then the three of the WHERE clause.
            assert_eq!(sql.matches('?').count(), assigned + 3, "{sql}");
        }
    }

    #[test]
    fn the_indexed_columns_are_the_ones_the_indexes_of_the_migrated_schema_hold() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate::to_latest(&mut conn).unwrap();
        let indexed: Vec<String> = conn
            .prepare(
                "SELECT DISTINCT c.name FROM pragma_index_list('tasks') AS i,
                     pragma_index_info(i.name) AS c ORDER BY c.name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (i, column) in SETTABLE_COLUMNS.iter().enumerate() {
            assert_eq!(
                INDEXED.contains(&i),
                indexed.iter().any(|c| c == column),
                "{column}: the indexes hold {indexed:?}"
            );
        }
    }
}
