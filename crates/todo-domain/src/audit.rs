//! Audit log entries: one per event, as `/audit` lists them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::CloudEvent;
use crate::time::{Timestamp, rfc3339};

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The event's id (unique: recording the same event twice keeps one row).
    pub event_id: Uuid,
    /// The CloudEvent `type`.
    pub event_type: String,
    /// The task concerned.
    pub task_id: Option<Uuid>,
    /// Owner.
    #[serde(skip)]
    pub user_id: String,
    /// The event's `time`.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// When the audit service recorded it.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: Timestamp,
    /// The event's `source`.
    pub source: String,
    /// The event's `data`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl AuditEntry {
    /// The entry for `event`, or `None` when the event names no owner.
    pub fn from_event(event: &CloudEvent, recorded_at: Timestamp) -> Option<Self> {
        Some(AuditEntry {
            event_id: event.id,
            event_type: event.event_type.clone(),
            task_id: event.task_id(),
            user_id: event.user_id()?.to_owned(),
            occurred_at: event.time,
            recorded_at,
            source: event.source.clone(),
            data: event.data.clone(),
        })
    }
}
