//! Reminders, notifications and webhook deliveries.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use todo_domain::event::{EventType, ReminderData};
use todo_domain::reminder::Notification;
use todo_domain::time::Timestamp;
use todo_domain::{CloudEvent, Reminder, ReminderPlan, ReminderStatus, TraceParent};
use uuid::Uuid;

use super::conn::Conn;
use super::tx::WriteTx;
use super::{events, rows};
use crate::{PageQuery, Result, StoreError, WebhookDelivery, WebhookOutcome};

const SERVICE: &str = "notification";

fn reminder(row: &SqliteRow) -> Result<Reminder> {
    let status: String = row.try_get("status")?;
    Ok(Reminder {
        task_id: rows::uuid(&row.try_get::<String, _>("task_id")?)?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        remind_at: rows::time(row.try_get("remind_at")?)?,
        due_at: rows::time(row.try_get("due_at")?)?,
        status: ReminderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
        task_version: row.try_get("task_version")?,
    })
}

const REMINDER_COLUMNS: &str = "task_id, user_id, title, remind_at, due_at, status, task_version";

async fn get(conn: &mut SqliteConnection, task_id: Uuid) -> Result<Option<Reminder>> {
    let row = sqlx::query(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders WHERE task_id = ?"
    ))
    .bind(task_id.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(reminder).transpose()
}

fn data(r: &Reminder) -> ReminderData {
    ReminderData {
        user_id: r.user_id.clone(),
        task_id: r.task_id,
        title: r.title.clone(),
        due_at: r.due_at,
        remind_at: r.remind_at,
    }
}

pub(super) async fn plan(
    store: &super::SqliteStore,
    task_id: Uuid,
    user_id: &str,
    task_version: i64,
    plan: &ReminderPlan,
    now: Timestamp,
    traceparent: Option<String>,
) -> Result<Option<Reminder>> {
    // Most events change no reminder (a task without a due date, a repeated event): settle
    // those with a read, and take the write lock only for a change, checked again under it.
    let mut conn = store.readers.get().await?;
    let seen = get(&mut conn, task_id).await?;
    drop(conn);
    if plan
        .apply(seen.as_ref(), task_id, user_id, task_version)
        .is_none()
    {
        return Ok(None);
    }
    let mut tx = WriteTx::begin(&store.writer).await?;
    let existing = get(&mut tx, task_id).await?;
    let Some(next) = plan.apply(existing.as_ref(), task_id, user_id, task_version) else {
        tx.commit().await?;
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO reminders (task_id, user_id, title, remind_at, due_at, status, task_version, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (task_id) DO UPDATE SET title = excluded.title, remind_at = excluded.remind_at,
            due_at = excluded.due_at, status = excluded.status, task_version = excluded.task_version,
            updated_at = excluded.updated_at",
    )
    .bind(task_id.to_string())
    .bind(user_id)
    .bind(next.title.as_str())
    .bind(next.remind_at.timestamp_micros())
    .bind(next.due_at.timestamp_micros())
    .bind(next.status.as_str())
    .bind(task_version)
    .bind(now.timestamp_micros())
    .execute(&mut *tx)
    .await?;
    let moved = existing
        .as_ref()
        .is_none_or(|r| r.remind_at != next.remind_at || r.status != next.status);
    if next.status == ReminderStatus::Scheduled && moved {
        // Timed under the write lock, so it can't predate a change committed before it.
        let event = CloudEvent::reminder(
            EventType::ReminderScheduled,
            SERVICE,
            &data(&next),
            todo_domain::time::now().max(now),
            traceparent,
        );
        events::append(&mut tx, &event).await?;
    }
    tx.commit().await?;
    Ok(Some(next))
}

pub(super) async fn next_at(conn: &mut SqliteConnection) -> Result<Option<Timestamp>> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT MIN(remind_at) FROM reminders WHERE status = 'scheduled'")
            .fetch_one(&mut *conn)
            .await?;
    rows::opt_time(at)
}

pub(super) async fn deliver_due(
    writer: &Conn,
    now: Timestamp,
    limit: i64,
    webhook: bool,
) -> Result<Vec<Reminder>> {
    let mut tx = WriteTx::begin(writer).await?;
    let due = sqlx::query(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders WHERE status = 'scheduled' AND remind_at <= ? ORDER BY remind_at LIMIT ?"
    ))
    .bind(now.timestamp_micros())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut delivered = Vec::with_capacity(due.len());
    for row in &due {
        let mut r = reminder(row)?;
        sqlx::query("UPDATE reminders SET status = 'sent', updated_at = ? WHERE task_id = ?")
            .bind(now.timestamp_micros())
            .bind(r.task_id.to_string())
            .execute(&mut *tx)
            .await?;
        r.status = ReminderStatus::Sent;
        let fresh = sqlx::query(
            "INSERT INTO notifications (task_id, user_id, title, due_at, remind_at, delivered_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_id, remind_at) DO NOTHING",
        )
        .bind(r.task_id.to_string())
        .bind(r.user_id.as_str())
        .bind(r.title.as_str())
        .bind(r.due_at.timestamp_micros())
        .bind(r.remind_at.timestamp_micros())
        .bind(now.timestamp_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            continue; // this moment was delivered before
        }
        let event = CloudEvent::reminder(
            EventType::ReminderDue,
            SERVICE,
            &data(&r),
            now,
            Some(TraceParent::new_root().header()),
        );
        events::append(&mut tx, &event).await?;
        if webhook {
            sqlx::query(
                "INSERT INTO webhook_deliveries (event_id, payload, status, attempts, next_attempt_at, created_at, updated_at)
                 VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.id.to_string())
            .bind(serde_json::to_string(&event)?)
            .bind(now.timestamp_micros())
            .bind(now.timestamp_micros())
            .bind(now.timestamp_micros())
            .execute(&mut *tx)
            .await?;
        }
        delivered.push(r);
    }
    tx.commit().await?;
    Ok(delivered)
}

pub(super) async fn list(
    conn: &mut SqliteConnection,
    user_id: &str,
    query: &PageQuery,
) -> Result<Vec<Reminder>> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders WHERE user_id = "
    ));
    sql.push_bind(user_id);
    if let Some(after) = &query.after {
        sql.push(" AND (remind_at < ")
            .push_bind(after.key)
            .push(" OR (remind_at = ")
            .push_bind(after.key)
            .push(" AND task_id < ")
            .push_bind(after.id.clone())
            .push("))");
    }
    sql.push(" ORDER BY remind_at DESC, task_id DESC LIMIT ")
        .push_bind(query.limit + 1);
    let rows = sql.build().fetch_all(&mut *conn).await?;
    rows.iter().map(reminder).collect()
}

pub(super) async fn list_notifications(
    conn: &mut SqliteConnection,
    user_id: &str,
    query: &PageQuery,
) -> Result<Vec<(i64, Notification)>> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT seq, task_id, title, due_at, remind_at, delivered_at FROM notifications WHERE user_id = ",
    );
    sql.push_bind(user_id);
    if let Some(after) = &query.after {
        sql.push(" AND seq < ").push_bind(after.key);
    }
    sql.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(query.limit + 1);
    let rows = sql.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("seq")?,
                Notification {
                    task_id: rows::uuid(&row.try_get::<String, _>("task_id")?)?,
                    title: row.try_get("title")?,
                    due_at: rows::time(row.try_get("due_at")?)?,
                    remind_at: rows::time(row.try_get("remind_at")?)?,
                    delivered_at: rows::time(row.try_get("delivered_at")?)?,
                },
            ))
        })
        .collect()
}

pub(super) async fn claim_webhooks(
    writer: &Conn,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    let mut tx = WriteTx::begin(writer).await?;
    let rows = sqlx::query(
        "SELECT id, event_id, payload, attempts FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
    )
    .bind(now.timestamp_micros())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let delivery = WebhookDelivery {
            id: row.try_get("id")?,
            event_id: rows::uuid(&row.try_get::<String, _>("event_id")?)?,
            payload: row.try_get("payload")?,
            attempts: row.try_get("attempts")?,
        };
        sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?")
            .bind(lease_until.timestamp_micros())
            .bind(delivery.id)
            .execute(&mut *tx)
            .await?;
        claimed.push(delivery);
    }
    tx.commit().await?;
    Ok(claimed)
}

pub(super) async fn next_webhook_at(conn: &mut SqliteConnection) -> Result<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(&mut *conn)
    .await?;
    rows::opt_time(at)
}

pub(super) async fn finish_webhook(
    conn: &mut SqliteConnection,
    id: i64,
    outcome: &WebhookOutcome,
    now: Timestamp,
) -> Result<()> {
    let (status, next, error) = match outcome {
        WebhookOutcome::Delivered => ("delivered", now, None),
        WebhookOutcome::Retry { at, error } => ("pending", *at, Some(error.as_str())),
        WebhookOutcome::GaveUp { error } => ("failed", now, Some(error.as_str())),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_error = ?,
            updated_at = ? WHERE id = ?",
    )
    .bind(status)
    .bind(next.timestamp_micros())
    .bind(error)
    .bind(now.timestamp_micros())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
