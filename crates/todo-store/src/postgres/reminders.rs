//! Reminders, notifications and webhook deliveries, safe with several `notification`
//! processes on one database:
//!
//! - planning a task's reminder takes a transaction-level advisory lock on the task and
//!   then its row (`FOR UPDATE`), so plans for one task apply one after another, each on
//!   the reminder as the last one (or a delivery) left it;
//! - delivering takes the due rows `FOR UPDATE SKIP LOCKED`: two deliverers split the due
//!   reminders between them, and a row delivered meanwhile fails the `scheduled` check when
//!   re-read under the lock, so none is delivered twice (the unique `(task_id, remind_at)` of
//!   `notifications` stands behind that);
//! - claiming webhooks takes the due rows `FOR UPDATE SKIP LOCKED` and moves their next
//!   attempt to the lease's end in the same statement, so a claimed delivery is claimed by
//!   no one else until its lease runs out.

use deadpool_postgres::GenericClient;
use todo_domain::reminder::{Notification, announces_schedule};
use todo_domain::time::Timestamp;
use todo_domain::{Reminder, ReminderPlan, ReminderStatus};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::events::{self, OutboxRow};
use crate::{PageQuery, Result, StoreError, WebhookDelivery, WebhookOutcome};

/// The columns [`reminder`] reads, in its order.
const REMINDER_COLUMNS: &str =
    "task_id, user_id, title, remind_at, due_at, status, task_version, traceparent";

/// The advisory lock class of reminder planning ("todo" in ASCII); the key is the task's.
const PLAN_LOCK: i32 = 0x746f_646f;

fn reminder(row: &Row) -> Result<Reminder> {
    let status: &str = row.try_get(5)?;
    Ok(Reminder {
        task_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        title: row.try_get(2)?,
        remind_at: row.try_get(3)?,
        due_at: row.try_get(4)?,
        status: ReminderStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
        task_version: row.try_get(6)?,
        traceparent: row.try_get(7)?,
    })
}

/// The task's reminder, if it has one.
pub(super) async fn get(client: &impl GenericClient, task_id: Uuid) -> Result<Option<Reminder>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {REMINDER_COLUMNS} FROM reminders WHERE task_id = $1"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&task_id])
        .await?
        .as_ref()
        .map(reminder)
        .transpose()
}

/// Applies `plan` inside `tx`, locked against other plans and deliveries of this task.
/// Returns the reminder if it changed, and the position of the event appended, if any.
#[allow(clippy::too_many_arguments)]
pub(super) async fn plan(
    tx: &impl GenericClient,
    task_id: Uuid,
    user_id: &str,
    task_version: i64,
    plan: &ReminderPlan,
    now: Timestamp,
    traceparent: Option<String>,
) -> Result<(Option<Reminder>, Option<i64>)> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))")
        .await?;
    tx.execute(&lock, &[&PLAN_LOCK, &task_id]).await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {REMINDER_COLUMNS} FROM reminders WHERE task_id = $1 FOR UPDATE"
        ))
        .await?;
    let existing = tx
        .query_opt(&stmt, &[&task_id])
        .await?
        .as_ref()
        .map(reminder)
        .transpose()?;
    let Some(mut next) = plan.apply(existing.as_ref(), task_id, user_id, task_version) else {
        return Ok((None, None));
    };
    // Its delivery continues the trace of the span planning it now.
    next.traceparent = traceparent.clone();
    let upsert = tx
        .prepare_cached(
            "INSERT INTO reminders (task_id, user_id, title, remind_at, due_at, status, task_version, updated_at,
                traceparent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (task_id) DO UPDATE SET title = excluded.title, remind_at = excluded.remind_at,
                due_at = excluded.due_at, status = excluded.status, task_version = excluded.task_version,
                updated_at = excluded.updated_at, traceparent = excluded.traceparent",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &task_id,
            &user_id,
            &next.title,
            &next.remind_at,
            &next.due_at,
            &next.status.as_str(),
            &task_version,
            &now,
            &next.traceparent,
        ],
    )
    .await?;
    let mut pos = None;
    if announces_schedule(existing.as_ref(), &next) {
        // Timed under the lock, so it can't predate a change committed before it.
        let event = next.scheduled_event(todo_domain::time::now().max(now), traceparent);
        pos = Some(events::append(tx, &OutboxRow::new(&event)?, 0).await?);
    }
    Ok((Some(next), pos))
}

async fn min_time(client: &impl GenericClient, sql: &str) -> Result<Option<Timestamp>> {
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
}

pub(super) async fn next_at(client: &impl GenericClient) -> Result<Option<Timestamp>> {
    min_time(
        client,
        "SELECT MIN(remind_at) FROM reminders WHERE status = 'scheduled'",
    )
    .await
}

/// Delivers due reminders inside `tx`. Returns them, and the position of the last event
/// appended, if any.
pub(super) async fn deliver_due(
    tx: &impl GenericClient,
    now: Timestamp,
    limit: i64,
    webhook: bool,
) -> Result<(Vec<Reminder>, Option<i64>)> {
    let due = tx
        .prepare_cached(&format!(
            "SELECT {REMINDER_COLUMNS} FROM reminders WHERE status = 'scheduled' AND remind_at <= $1
             ORDER BY remind_at, task_id LIMIT $2 FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    let due = tx
        .query(&due, &[&now, &limit.max(0)])
        .await?
        .iter()
        .map(reminder)
        .collect::<Result<Vec<_>>>()?;
    if due.is_empty() {
        return Ok((Vec::new(), None));
    }
    let mark = tx
        .prepare_cached(
            "UPDATE reminders SET status = 'sent', updated_at = $1 WHERE task_id = ANY($2)",
        )
        .await?;
    let ids: Vec<Uuid> = due.iter().map(|r| r.task_id).collect();
    tx.execute(&mark, &[&now, &ids]).await?;
    let note = tx
        .prepare_cached(
            "INSERT INTO notifications (task_id, user_id, title, due_at, remind_at, delivered_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id, remind_at) DO NOTHING",
        )
        .await?;
    let hook = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (event_id, payload, status, attempts, next_attempt_at,
                created_at, updated_at)
             VALUES ($1, $2, 'pending', 0, $3, $3, $3) ON CONFLICT (event_id) DO NOTHING",
        )
        .await?;
    let mut delivered = Vec::with_capacity(due.len());
    let mut last = None;
    let mut ordinal = 0;
    for mut r in due {
        r.status = ReminderStatus::Sent;
        let fresh = tx
            .execute(
                &note,
                &[
                    &r.task_id,
                    &r.user_id,
                    &r.title,
                    &r.due_at,
                    &r.remind_at,
                    &now,
                ],
            )
            .await?
            == 1;
        if !fresh {
            continue; // this moment was delivered before
        }
        let event = r.due_event(now);
        let row = OutboxRow::new(&event)?;
        last = Some(events::append(tx, &row, ordinal).await?);
        ordinal += 1;
        if webhook {
            tx.execute(&hook, &[&event.id, &row.payload, &now]).await?;
        }
        delivered.push(r);
    }
    Ok((delivered, last))
}

pub(super) async fn list(
    client: &impl GenericClient,
    user_id: &str,
    query: &PageQuery,
) -> Result<Vec<Reminder>> {
    let limit = query.limit.saturating_add(1).max(0);
    let rows = match &query.after {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {REMINDER_COLUMNS} FROM reminders WHERE user_id = $1
                     ORDER BY remind_at DESC, task_id DESC LIMIT $2"
                ))
                .await?;
            client.query(&stmt, &[&user_id, &limit]).await?
        }
        Some(after) => {
            let id = Uuid::try_parse(&after.id)
                .map_err(|_| StoreError::Failed("the cursor's id is not a UUID".into()))?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {REMINDER_COLUMNS} FROM reminders WHERE user_id = $1
                       AND (remind_at, task_id) < ($2, $3)
                     ORDER BY remind_at DESC, task_id DESC LIMIT $4"
                ))
                .await?;
            let key = super::rows::SortTime(after.key);
            let params: [&(dyn ToSql + Sync); 4] = [&user_id, &key, &id, &limit];
            client.query(&stmt, &params).await?
        }
    };
    rows.iter().map(reminder).collect()
}

pub(super) async fn list_notifications(
    client: &impl GenericClient,
    user_id: &str,
    query: &PageQuery,
) -> Result<Vec<(i64, Notification)>> {
    let stmt = client
        .prepare_cached(
            "SELECT seq, task_id, title, due_at, remind_at, delivered_at FROM notifications
             WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .await?;
    let before = query.after.as_ref().map_or(i64::MAX, |a| a.key);
    let limit = query.limit.saturating_add(1).max(0);
    let rows = client.query(&stmt, &[&user_id, &before, &limit]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                Notification {
                    task_id: row.try_get(1)?,
                    title: row.try_get(2)?,
                    due_at: row.try_get(3)?,
                    remind_at: row.try_get(4)?,
                    delivered_at: row.try_get(5)?,
                },
            ))
        })
        .collect()
}

pub(super) async fn claim_webhooks(
    client: &impl GenericClient,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    let stmt = client
        .prepare_cached(
            "WITH due AS (
                SELECT id, next_attempt_at FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= $1
                ORDER BY next_attempt_at, id LIMIT $3
                FOR UPDATE SKIP LOCKED
             ),
             leased AS (
                UPDATE webhook_deliveries w SET next_attempt_at = $2
                FROM due WHERE w.id = due.id
                RETURNING w.id, w.event_id, w.payload, w.attempts, due.next_attempt_at AS was_due
             )
             SELECT id, event_id, payload, attempts FROM leased ORDER BY was_due, id",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&now, &lease_until, &limit.max(0)])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(WebhookDelivery {
                id: row.try_get(0)?,
                event_id: row.try_get(1)?,
                payload: row.try_get(2)?,
                attempts: row.try_get(3)?,
            })
        })
        .collect()
}

pub(super) async fn next_webhook_at(client: &impl GenericClient) -> Result<Option<Timestamp>> {
    min_time(
        client,
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
    )
    .await
}

pub(super) async fn finish_webhook(
    client: &impl GenericClient,
    id: i64,
    outcome: &WebhookOutcome,
    now: Timestamp,
) -> Result<()> {
    let (status, next, error) = outcome.row(now);
    let stmt = client
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2,
                last_error = $3, updated_at = $4 WHERE id = $5",
        )
        .await?;
    client
        .execute(&stmt, &[&status, &next, &error, &now, &id])
        .await?;
    Ok(())
}
