//! Converting between rows and domain values.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use todo_domain::recurrence::{Frequency, Recurrence};
use todo_domain::time::{Timestamp, from_micros};
use todo_domain::{Priority, Task};
use uuid::Uuid;

use crate::{Result, StoreError};

pub(crate) const TASK_COLUMNS: &str = "id, user_id, title, description, completed, completed_at, priority, tags, \
    due_at, remind_before_minutes, recurrence_frequency, recurrence_interval, recurrence_anchor_day, \
    parent_task_id, version, created_at, updated_at";

pub(crate) fn uuid(raw: &str) -> Result<Uuid> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad uuid {raw:?}")))
}

pub(crate) fn time(micros: i64) -> Result<Timestamp> {
    from_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("bad timestamp {micros}")))
}

pub(crate) fn opt_time(micros: Option<i64>) -> Result<Option<Timestamp>> {
    micros.map(time).transpose()
}

pub(crate) fn task(row: &SqliteRow) -> Result<Task> {
    let recurrence = match (
        row.try_get::<Option<String>, _>("recurrence_frequency")?,
        row.try_get::<Option<i64>, _>("recurrence_interval")?,
    ) {
        (Some(frequency), Some(interval)) => {
            let frequency = Frequency::parse(&frequency)
                .ok_or_else(|| StoreError::Corrupt(format!("bad frequency {frequency:?}")))?;
            Some(Recurrence::new(frequency, interval).map_err(StoreError::Corrupt)?)
        }
        _ => None,
    };
    let priority: i64 = row.try_get("priority")?;
    Ok(Task {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        completed: row.try_get("completed")?,
        completed_at: opt_time(row.try_get("completed_at")?)?,
        priority: Priority::from_rank(priority)
            .ok_or_else(|| StoreError::Corrupt(format!("bad priority {priority}")))?,
        tags: serde_json::from_str(&row.try_get::<String, _>("tags")?)?,
        due_at: opt_time(row.try_get("due_at")?)?,
        remind_before_minutes: row.try_get("remind_before_minutes")?,
        recurrence,
        parent_task_id: row
            .try_get::<Option<String>, _>("parent_task_id")?
            .map(|raw| uuid(&raw))
            .transpose()?,
        version: row.try_get("version")?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        recurrence_anchor_day: row
            .try_get::<Option<i64>, _>("recurrence_anchor_day")?
            .and_then(|d| u32::try_from(d).ok()),
    })
}
