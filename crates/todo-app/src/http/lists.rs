//! Audit, reminder and notification lists (newest first, cursor-paged like tasks).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use todo_domain::cursor::{Cursor, CursorKey};
use todo_domain::query::parse_limit;
use todo_domain::reminder::Notification;
use todo_domain::{AuditEntry, EventType, Reminder, ValidationErrors};
use todo_store::{AuditPosition, AuditQuery, PageQuery, Seek};

use super::auth::AuthUser;
use super::error::ApiError;
use super::extract::QueryPairs;
use crate::state::AppState;

/// A page of audit entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditEntry>,
    /// Cursor for older entries; `null` when none are left.
    pub next_cursor: Option<String>,
}

/// A page of reminders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReminderPage {
    /// Reminders (scheduled, sent, cancelled), latest `remind_at` first.
    pub items: Vec<Reminder>,
    /// Cursor for the next page; `null` when none are left.
    pub next_cursor: Option<String>,
}

/// A page of notifications.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// Delivered reminders, newest first.
    pub items: Vec<Notification>,
    /// Cursor for the next page; `null` when none are left.
    pub next_cursor: Option<String>,
}

fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads `limit` and `cursor` for a list sorted by one integer key (descending); with
/// `uuid_ids` the cursor's tie-breaking id must be a UUID (a task id), else any text.
fn page(
    pairs: &[(String, String)],
    list: &str,
    uuid_ids: bool,
    errors: &mut ValidationErrors,
) -> (i64, Option<Seek>) {
    let limit = parse_limit(last(pairs, "limit"), errors);
    let after = last(pairs, "cursor")
        .filter(|raw| !raw.is_empty())
        .and_then(|raw| {
            match Cursor::decode(raw, list, true).and_then(|c| {
                if uuid_ids {
                    c.uuid_id()?;
                }
                Ok(Seek {
                    key: c.int_key()?,
                    id: c.id,
                })
            }) {
                Ok(seek) => Some(seek),
                Err(e) => {
                    errors.push("cursor", e.to_string());
                    None
                }
            }
        });
    (limit, after)
}

fn next_cursor<T>(
    items: &mut Vec<T>,
    limit: i64,
    list: &str,
    key: impl Fn(&T) -> (i64, String),
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    items.last().map(|item| {
        let (k, id) = key(item);
        Cursor {
            sort: list.into(),
            descending: true,
            key: CursorKey::Int(k),
            id,
        }
        .encode()
    })
}

/// The user's audit log.
#[utoipa::path(
    get, path = "/api/{user_id}/audit", tag = "audit",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        todo_domain::params::AuditParams,
    ),
    responses(
        (status = 200, description = "Entries, newest first", body = AuditPage),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    user: AuthUser,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditPage>, ApiError> {
    let mut errors = ValidationErrors::default();
    let task_id = last(&pairs, "task_id").and_then(|raw| {
        let parsed = raw.parse().ok();
        if parsed.is_none() {
            errors.push("task_id", "must be a task id (UUID)");
        }
        parsed
    });
    let event_type = last(&pairs, "event_type").map(|raw| {
        if EventType::parse(raw).is_none() {
            let known: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            errors.push("event_type", format!("must be one of {}", known.join(", ")));
        }
        raw.to_owned()
    });
    // Audit cursors hold the last entry's occurred_at (as the key) and sequence number.
    let (limit, after) = page(&pairs, "audit", false, &mut errors);
    let before = after.and_then(|seek| {
        let position = seek
            .id
            .parse()
            .ok()
            .zip(todo_domain::time::from_micros(seek.key));
        if position.is_none() {
            errors.push("cursor", "is not a valid cursor");
        }
        position.map(|(seq, occurred_at)| AuditPosition { occurred_at, seq })
    });
    let query = AuditQuery {
        task_id,
        event_type,
        limit,
        before,
    };
    errors.into_result(())?;
    let mut rows = state.store.list_audit(&user.user_id, &query).await?;
    let next_cursor = next_cursor(&mut rows, limit, "audit", |(seq, e)| {
        (e.occurred_at.timestamp_micros(), seq.to_string())
    });
    Ok(Json(AuditPage {
        items: rows.into_iter().map(|(_, e)| e).collect(),
        next_cursor,
    }))
}

/// The user's reminders: scheduled, sent and cancelled.
#[utoipa::path(
    get, path = "/api/{user_id}/reminders", tag = "reminders",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        todo_domain::params::PageParams,
    ),
    responses(
        (status = 200, description = "Reminders, latest remind_at first", body = ReminderPage),
    )
)]
pub async fn list_reminders(
    State(state): State<AppState>,
    user: AuthUser,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<ReminderPage>, ApiError> {
    let mut errors = ValidationErrors::default();
    let (limit, after) = page(&pairs, "reminders", true, &mut errors);
    errors.into_result(())?;
    let mut items = state
        .store
        .list_reminders(&user.user_id, &PageQuery { limit, after })
        .await?;
    let next_cursor = next_cursor(&mut items, limit, "reminders", |r| {
        (r.remind_at.timestamp_micros(), r.task_id.to_string())
    });
    Ok(Json(ReminderPage { items, next_cursor }))
}

/// The user's delivered reminders.
#[utoipa::path(
    get, path = "/api/{user_id}/notifications", tag = "reminders",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        todo_domain::params::PageParams,
    ),
    responses(
        (status = 200, description = "Notifications, newest first", body = NotificationPage),
    )
)]
pub async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<NotificationPage>, ApiError> {
    let mut errors = ValidationErrors::default();
    let (limit, after) = page(&pairs, "notifications", true, &mut errors);
    errors.into_result(())?;
    let mut rows = state
        .store
        .list_notifications(&user.user_id, &PageQuery { limit, after })
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, "notifications", |(seq, n)| {
        (*seq, n.task_id.to_string())
    });
    Ok(Json(NotificationPage {
        items: rows.into_iter().map(|(_, n)| n).collect(),
        next_cursor,
    }))
}
