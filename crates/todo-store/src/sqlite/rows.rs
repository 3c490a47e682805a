//! Converting between rows and domain values. Columns are read by position, in the order
//! of the `*_COLUMNS` lists that the queries select.

use rusqlite::{Row, Rows};
use todo_domain::recurrence::{Frequency, Recurrence};
use todo_domain::time::{Timestamp, from_micros};
use todo_domain::{Priority, Task};
use uuid::Uuid;

use crate::{Result, StoreError};

/// The columns [`task`] reads, in its order.
pub(crate) const TASK_COLUMNS: &str = "id, user_id, title, description, completed, completed_at, priority, tags, \
    due_at, remind_before_minutes, recurrence_frequency, recurrence_interval, recurrence_anchor_day, \
    parent_task_id, version, created_at, updated_at";

pub(crate) fn uuid(raw: &str) -> Result<Uuid> {
    Uuid::try_parse(raw).map_err(|_| StoreError::Corrupt(format!("bad uuid {raw:?}")))
}

pub(crate) fn time(micros: i64) -> Result<Timestamp> {
    from_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("bad timestamp {micros}")))
}

pub(crate) fn opt_time(micros: Option<i64>) -> Result<Option<Timestamp>> {
    micros.map(time).transpose()
}

/// Every row of `rows`, each converted by `convert`.
pub(crate) fn collect<T>(
    mut rows: Rows<'_>,
    mut convert: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(convert(row)?);
    }
    Ok(out)
}

/// A text column holding a uuid.
pub(crate) fn uuid_at(row: &Row<'_>, i: usize) -> Result<Uuid> {
    uuid(row.get_ref(i)?.as_str()?)
}

/// A nullable text column holding a uuid.
pub(crate) fn opt_uuid_at(row: &Row<'_>, i: usize) -> Result<Option<Uuid>> {
    row.get_ref(i)?.as_str_or_null()?.map(uuid).transpose()
}

/// An integer column holding microseconds since the epoch.
pub(crate) fn time_at(row: &Row<'_>, i: usize) -> Result<Timestamp> {
    time(row.get(i)?)
}

/// A nullable integer column holding microseconds since the epoch.
pub(crate) fn opt_time_at(row: &Row<'_>, i: usize) -> Result<Option<Timestamp>> {
    opt_time(row.get(i)?)
}

/// The tags column: a JSON array of strings, most often empty.
fn tags(raw: &str) -> Result<Vec<String>> {
    if raw == "[]" {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str(raw)?)
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(crate) fn task(row: &Row<'_>) -> Result<Task> {
    let recurrence = match (
        row.get_ref(10)?.as_str_or_null()?,
        row.get::<_, Option<i64>>(11)?,
    ) {
        (Some(frequency), Some(interval)) => {
            let frequency = Frequency::parse(frequency)
                .ok_or_else(|| StoreError::Corrupt(format!("bad frequency {frequency:?}")))?;
            Some(Recurrence::new(frequency, interval).map_err(StoreError::Corrupt)?)
        }
        _ => None,
    };
    let priority: i64 = row.get(6)?;
    Ok(Task {
        id: uuid_at(row, 0)?,
        user_id: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        completed: row.get(4)?,
        completed_at: opt_time_at(row, 5)?,
        priority: Priority::from_rank(priority)
            .ok_or_else(|| StoreError::Corrupt(format!("bad priority {priority}")))?,
        tags: tags(row.get_ref(7)?.as_str()?)?,
        due_at: opt_time_at(row, 8)?,
        remind_before_minutes: row.get(9)?,
        recurrence,
        recurrence_anchor_day: row
            .get::<_, Option<i64>>(12)?
            .and_then(|d| u32::try_from(d).ok()),
        parent_task_id: opt_uuid_at(row, 13)?,
        version: row.get(14)?,
        created_at: time_at(row, 15)?,
        updated_at: time_at(row, 16)?,
    })
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
