//! Reminders, notifications and webhook deliveries.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use todo_domain::reminder::{Notification, announces_schedule};
use todo_domain::time::Timestamp;
use todo_domain::{Reminder, ReminderPlan, ReminderStatus};
use uuid::Uuid;

use super::writer::WriteCtx;
use super::{events, rows};
use crate::{PageQuery, Planned, Result, StoreError, WebhookDelivery, WebhookOutcome};

/// The columns [`reminder`] reads, in its order.
const REMINDER_COLUMNS: &str =
    "task_id, user_id, title, remind_at, due_at, status, task_version, traceparent";

fn reminder(row: &Row<'_>) -> Result<Reminder> {
    let status = row.get_ref(5)?.as_str()?;
    Ok(Reminder {
        task_id: rows::uuid_at(row, 0)?,
        user_id: row.get(1)?,
        title: row.get(2)?,
        remind_at: rows::time_at(row, 3)?,
        due_at: rows::time_at(row, 4)?,
        status: ReminderStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
        task_version: row.get(6)?,
        traceparent: row.get(7)?,
    })
}

/// The task's reminder, if it has one.
pub(super) fn get(conn: &Connection, task_id: Uuid) -> Result<Option<Reminder>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders WHERE task_id = ?"
    ))?;
    let mut rows = stmt.query([task_id.to_string()])?;
    rows.next()?.map(reminder).transpose()
}

/// Applies `plan` under the write lock (the caller settled no-op plans with a read first).
pub(super) fn plan(
    ctx: &mut WriteCtx<'_>,
    task_id: Uuid,
    user_id: &str,
    task_version: i64,
    plan: &ReminderPlan,
    now: Timestamp,
    traceparent: Option<String>,
) -> Result<Option<Planned>> {
    let existing = get(ctx.conn, task_id)?;
    let Some(mut next) = plan.apply(existing.as_ref(), task_id, user_id, task_version) else {
        return Ok(None);
    };
    // Its delivery continues the trace of the span planning it now.
    next.traceparent = traceparent.clone();
    ctx.conn
        .prepare_cached(
            "INSERT INTO reminders (task_id, user_id, title, remind_at, due_at, status, task_version, updated_at,
                traceparent)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (task_id) DO UPDATE SET title = excluded.title, remind_at = excluded.remind_at,
                due_at = excluded.due_at, status = excluded.status, task_version = excluded.task_version,
                updated_at = excluded.updated_at, traceparent = excluded.traceparent",
        )?
        .execute(params![
            task_id.to_string(),
            user_id,
            next.title,
            next.remind_at.timestamp_micros(),
            next.due_at.timestamp_micros(),
            next.status.as_str(),
            task_version,
            now.timestamp_micros(),
            next.traceparent,
        ])?;
    let announced = announces_schedule(existing.as_ref(), &next);
    if announced {
        // Timed under the write lock, so it can't predate a change committed before it.
        let event = next.scheduled_event(todo_domain::time::now().max(now), traceparent);
        events::append(ctx, &events::OutboxRow::new(&event)?)?;
    }
    Ok(Some(Planned {
        reminder: next,
        announced,
    }))
}

fn min_time(conn: &Connection, sql: &str) -> Result<Option<Timestamp>> {
    let at: Option<i64> = conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?;
    rows::opt_time(at)
}

pub(super) fn next_at(conn: &Connection) -> Result<Option<Timestamp>> {
    min_time(
        conn,
        "SELECT MIN(remind_at) FROM reminders WHERE status = 'scheduled'",
    )
}

pub(super) fn deliver_due(
    ctx: &mut WriteCtx<'_>,
    now: Timestamp,
    limit: i64,
    webhook: bool,
) -> Result<Vec<Reminder>> {
    let due = {
        let mut stmt = ctx.conn.prepare_cached(&format!(
            "SELECT {REMINDER_COLUMNS} FROM reminders WHERE status = 'scheduled' AND remind_at <= ?
             ORDER BY remind_at LIMIT ?"
        ))?;
        rows::collect(
            stmt.query(params![now.timestamp_micros(), limit])?,
            reminder,
        )?
    };
    let at = now.timestamp_micros();
    let mut delivered = Vec::with_capacity(due.len());
    for mut r in due {
        let task_id = r.task_id.to_string();
        ctx.conn
            .prepare_cached(
                "UPDATE reminders SET status = 'sent', updated_at = ? WHERE task_id = ?",
            )?
            .execute(params![at, task_id])?;
        r.status = ReminderStatus::Sent;
        let fresh = ctx
            .conn
            .prepare_cached(
                "INSERT INTO notifications (task_id, user_id, title, due_at, remind_at, delivered_at)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_id, remind_at) DO NOTHING",
            )?
            .execute(params![
                task_id,
                r.user_id,
                r.title,
                r.due_at.timestamp_micros(),
                r.remind_at.timestamp_micros(),
                at,
            ])?
            == 1;
        if !fresh {
            continue; // this moment was delivered before
        }
        let event = r.due_event(now);
        events::append(ctx, &events::OutboxRow::new(&event)?)?;
        if webhook {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO webhook_deliveries (event_id, payload, status, attempts, next_attempt_at,
                        created_at, updated_at)
                     VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                )?
                .execute(params![
                    event.id.to_string(),
                    serde_json::to_string(&event)?,
                    at,
                    at,
                    at
                ])?;
        }
        delivered.push(r);
    }
    Ok(delivered)
}

pub(super) fn list(conn: &Connection, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>> {
    let mut sql = format!("SELECT {REMINDER_COLUMNS} FROM reminders WHERE user_id = ?");
    let mut args = vec![Value::Text(user_id.to_owned())];
    if let Some(after) = &query.after {
        sql.push_str(" AND (remind_at < ? OR (remind_at = ? AND task_id < ?))");
        args.extend([
            Value::Integer(after.key),
            Value::Integer(after.key),
            Value::Text(after.id.clone()),
        ]);
    }
    sql.push_str(" ORDER BY remind_at DESC, task_id DESC LIMIT ?");
    args.push(Value::Integer(query.limit + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(stmt.query(params_from_iter(args))?, reminder)
}

pub(super) fn list_notifications(
    conn: &Connection,
    user_id: &str,
    query: &PageQuery,
) -> Result<Vec<(i64, Notification)>> {
    let mut sql = String::from(
        "SELECT seq, task_id, title, due_at, remind_at, delivered_at FROM notifications WHERE user_id = ?",
    );
    let mut args = vec![Value::Text(user_id.to_owned())];
    if let Some(after) = &query.after {
        sql.push_str(" AND seq < ?");
        args.push(Value::Integer(after.key));
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(Value::Integer(query.limit + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    rows::collect(stmt.query(params_from_iter(args))?, |row| {
        Ok((
            row.get(0)?,
            Notification {
                task_id: rows::uuid_at(row, 1)?,
                title: row.get(2)?,
                due_at: rows::time_at(row, 3)?,
                remind_at: rows::time_at(row, 4)?,
                delivered_at: rows::time_at(row, 5)?,
            },
        ))
    })
}

pub(super) fn claim_webhooks(
    conn: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> Result<Vec<WebhookDelivery>> {
    let claimed = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_id, payload, attempts FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        )?;
        rows::collect(stmt.query(params![now.timestamp_micros(), limit])?, |row| {
            Ok(WebhookDelivery {
                id: row.get(0)?,
                event_id: rows::uuid_at(row, 1)?,
                payload: row.get(2)?,
                attempts: row.get(3)?,
            })
        })?
    };
    let mut lease =
        conn.prepare_cached("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?")?;
    for delivery in &claimed {
        lease.execute(params![lease_until.timestamp_micros(), delivery.id])?;
    }
    Ok(claimed)
}

pub(super) fn next_webhook_at(conn: &Connection) -> Result<Option<Timestamp>> {
    min_time(
        conn,
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
    )
}

pub(super) fn finish_webhook(
    conn: &Connection,
    id: i64,
    outcome: &WebhookOutcome,
    now: Timestamp,
) -> Result<()> {
    let (status, next, error) = outcome.row(now);
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?,
            last_error = ?, updated_at = ? WHERE id = ?",
    )?
    .execute(params![
        status,
        next.timestamp_micros(),
        error,
        now.timestamp_micros(),
        id
    ])?;
    Ok(())
}
