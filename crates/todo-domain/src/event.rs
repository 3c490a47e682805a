//! CloudEvents 1.0 (structured JSON mode): the envelope every change travels in, on the
//! bus, on Kafka and on the WebSocket alike.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::task::Task;
use crate::time::{Timestamp, rfc3339};

/// The kinds of event the platform emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A task was created (by a client, or as the next occurrence of a recurring one).
    TaskCreated,
    /// A task changed (including being marked not completed).
    TaskUpdated,
    /// A task was marked completed.
    TaskCompleted,
    /// A task was deleted.
    TaskDeleted,
    /// A reminder was scheduled or moved.
    ReminderScheduled,
    /// A reminder fell due and was delivered.
    ReminderDue,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 6] = [
        EventType::TaskCreated,
        EventType::TaskUpdated,
        EventType::TaskCompleted,
        EventType::TaskDeleted,
        EventType::ReminderScheduled,
        EventType::ReminderDue,
    ];

    /// The CloudEvent `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TaskCreated => "task.created",
            EventType::TaskUpdated => "task.updated",
            EventType::TaskCompleted => "task.completed",
            EventType::TaskDeleted => "task.deleted",
            EventType::ReminderScheduled => "reminder.scheduled",
            EventType::ReminderDue => "reminder.due",
        }
    }

    /// Parses a CloudEvent `type`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The topic events of this type are published on.
    pub fn topic(self) -> Topic {
        match self {
            EventType::ReminderScheduled | EventType::ReminderDue => Topic::Reminders,
            _ => Topic::TaskEvents,
        }
    }
}

/// Logical topics; deployments may map them to other broker topic names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// `task.*` events.
    TaskEvents,
    /// `reminder.*` events.
    Reminders,
    /// What `sync` fans out to WebSocket clients.
    TaskUpdates,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::TaskEvents, Topic::Reminders, Topic::TaskUpdates];

    /// The default topic name.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::TaskEvents => "task-events",
            Topic::Reminders => "reminders",
            Topic::TaskUpdates => "task-updates",
        }
    }

    /// Parses a default topic name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The topics the outbox stores events under that make up `topics`: `task-updates`
    /// is the fan-out stream of every task and reminder event, so it stands for both.
    pub fn in_outbox(topics: &[Topic]) -> Vec<Topic> {
        let mut out = Vec::new();
        for topic in topics {
            let parts: &[Topic] = match topic {
                Topic::TaskUpdates => &[Topic::TaskEvents, Topic::Reminders],
                other => std::slice::from_ref(other),
            };
            for part in parts {
                if !out.contains(part) {
                    out.push(*part);
                }
            }
        }
        out
    }
}

/// `data` of `task.*` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskData {
    /// Owner.
    pub user_id: String,
    /// The task after the change (before it, for `task.deleted`).
    pub task: Task,
}

/// `data` of `reminder.*` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderData {
    /// Owner.
    pub user_id: String,
    /// The task reminded of.
    pub task_id: Uuid,
    /// Its title when the reminder was made.
    pub title: String,
    /// Its due date.
    #[serde(with = "rfc3339")]
    pub due_at: Timestamp,
    /// When the reminder fires.
    #[serde(with = "rfc3339")]
    pub remind_at: Timestamp,
}

/// A CloudEvents 1.0 envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique; consumers de-duplicate on it.
    pub id: Uuid,
    /// `todo/<service>`.
    pub source: String,
    /// `task.created`, ...
    #[serde(rename = "type")]
    pub event_type: String,
    /// The task id.
    pub subject: String,
    /// When the change happened.
    #[serde(with = "rfc3339")]
    pub time: Timestamp,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// W3C trace context of the request that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// [`TaskData`] or [`ReminderData`].
    pub data: serde_json::Value,
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Unknown `type`.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// `data` doesn't match the type.
    #[error("event data does not match its type: {0}")]
    BadData(#[from] serde_json::Error),
}

impl CloudEvent {
    fn new(
        event_type: EventType,
        service: &str,
        subject: String,
        time: Timestamp,
        traceparent: Option<String>,
        data: serde_json::Value,
    ) -> Self {
        CloudEvent {
            specversion: "1.0".into(),
            id: Uuid::now_v7(),
            source: format!("todo/{service}"),
            event_type: event_type.as_str().into(),
            subject,
            time,
            datacontenttype: "application/json".into(),
            traceparent,
            data,
        }
    }

    /// A `task.*` event carrying `task`.
    pub fn task(
        event_type: EventType,
        service: &str,
        task: &Task,
        time: Timestamp,
        traceparent: Option<String>,
    ) -> Self {
        let data = TaskData {
            user_id: task.user_id.clone(),
            task: task.clone(),
        };
        // Serializing a Task cannot fail: every field is plain data.
        let data = serde_json::to_value(data).unwrap_or_default();
        Self::new(
            event_type,
            service,
            task.id.to_string(),
            time,
            traceparent,
            data,
        )
    }

    /// A `reminder.*` event.
    pub fn reminder(
        event_type: EventType,
        service: &str,
        data: &ReminderData,
        time: Timestamp,
        traceparent: Option<String>,
    ) -> Self {
        let value = serde_json::to_value(data).unwrap_or_default();
        Self::new(
            event_type,
            service,
            data.task_id.to_string(),
            time,
            traceparent,
            value,
        )
    }

    /// The parsed `type`.
    pub fn kind(&self) -> Result<EventType, EventError> {
        EventType::parse(&self.event_type)
            .ok_or_else(|| EventError::UnknownType(self.event_type.clone()))
    }

    /// The owner, read from `data.user_id` (the partition key).
    pub fn user_id(&self) -> Option<&str> {
        self.data.get("user_id").and_then(serde_json::Value::as_str)
    }

    /// The task id in `subject`, if it is a UUID.
    pub fn task_id(&self) -> Option<Uuid> {
        self.subject.parse().ok()
    }

    /// `data` as [`TaskData`].
    pub fn task_data(&self) -> Result<TaskData, EventError> {
        Ok(serde_json::from_value(self.data.clone())?)
    }

    /// `data` as [`ReminderData`].
    pub fn reminder_data(&self) -> Result<ReminderData, EventError> {
        Ok(serde_json::from_value(self.data.clone())?)
    }

    /// The topic this event belongs on, from its type.
    pub fn topic(&self) -> Result<Topic, EventError> {
        Ok(self.kind()?.topic())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::CreateTask;
    use crate::time::parse_rfc3339;

    #[test]
    fn a_task_event_has_the_contract_envelope() {
        let now = parse_rfc3339("2026-11-22T10:00:00Z").unwrap();
        let task = CreateTask::from_json(&serde_json::json!({"title": "Pay rent"}))
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", now);
        let event = CloudEvent::task(
            EventType::TaskCreated,
            "api",
            &task,
            now,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        let json = serde_json::to_value(&event).unwrap();
        for key in [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "traceparent",
            "data",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["source"], "todo/api");
        assert_eq!(json["type"], "task.created");
        assert_eq!(json["subject"], task.id.to_string());
        assert_eq!(json["data"]["user_id"], "alice");
        assert_eq!(json["data"]["task"]["title"], "Pay rent");
        let back: CloudEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back.task_data().unwrap().task.title, "Pay rent");
        assert_eq!(back.topic().unwrap(), Topic::TaskEvents);
    }

    #[test]
    fn reminder_types_go_to_the_reminders_topic() {
        assert_eq!(EventType::ReminderDue.topic(), Topic::Reminders);
        assert_eq!(
            EventType::parse("reminder.scheduled"),
            Some(EventType::ReminderScheduled)
        );
        assert_eq!(EventType::parse("task.exploded"), None);
    }

    #[test]
    fn task_updates_stands_for_every_outbox_topic() {
        assert_eq!(
            Topic::in_outbox(&[Topic::TaskUpdates]),
            [Topic::TaskEvents, Topic::Reminders]
        );
        assert_eq!(
            Topic::in_outbox(&[Topic::Reminders, Topic::TaskUpdates]),
            [Topic::Reminders, Topic::TaskEvents]
        );
        assert_eq!(Topic::in_outbox(&[Topic::TaskEvents]), [Topic::TaskEvents]);
    }
}
