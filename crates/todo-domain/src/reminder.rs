//! Reminders: when they fire, and how a task change moves, keeps or cancels one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{CloudEvent, EventType, ReminderData};
use crate::task::Task;
use crate::time::{Timestamp, rfc3339};

/// The service that writes reminder events (their `source` is `todo/notification`).
pub const REMINDER_SERVICE: &str = "notification";

/// Where a reminder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReminderStatus {
    /// Waiting for `remind_at`.
    Scheduled,
    /// Delivered.
    Sent,
    /// Withdrawn: the task was completed, deleted, or lost its due date or offset.
    Cancelled,
}

impl ReminderStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderStatus::Scheduled => "scheduled",
            ReminderStatus::Sent => "sent",
            ReminderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Scheduled, Self::Sent, Self::Cancelled]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One task's reminder (a task has at most one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reminder {
    /// The task.
    pub task_id: Uuid,
    /// Owner.
    #[serde(skip)]
    pub user_id: String,
    /// Task title when last scheduled.
    #[serde(skip)]
    pub title: String,
    /// `due_at - remind_before_minutes`.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub remind_at: Timestamp,
    /// The task's due date.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
    /// Scheduled, sent or cancelled.
    pub status: ReminderStatus,
    /// The task version this reminder reflects; older events are ignored.
    #[serde(skip)]
    pub task_version: i64,
    /// The W3C `traceparent` of the span that last planned it: its `reminder.due`
    /// continues that trace.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

impl Reminder {
    /// The `data` of this reminder's CloudEvents.
    pub fn event_data(&self) -> ReminderData {
        ReminderData {
            user_id: self.user_id.clone(),
            task_id: self.task_id,
            title: self.title.clone(),
            due_at: self.due_at,
            remind_at: self.remind_at,
        }
    }

    /// `reminder.scheduled`, appended when a reminder is scheduled or moved, in the trace of
    /// the task event that caused it.
    pub fn scheduled_event(&self, time: Timestamp, traceparent: Option<String>) -> CloudEvent {
        CloudEvent::reminder(
            EventType::ReminderScheduled,
            REMINDER_SERVICE,
            &self.event_data(),
            time,
            traceparent,
        )
    }

    /// `reminder.due`, appended when the reminder is delivered at `now`, in the trace of
    /// the span that planned it.
    pub fn due_event(&self, now: Timestamp) -> CloudEvent {
        CloudEvent::reminder(
            EventType::ReminderDue,
            REMINDER_SERVICE,
            &self.event_data(),
            now,
            self.traceparent.clone(),
        )
    }
}

/// A delivered reminder, as `/notifications` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// The task.
    pub task_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its due date.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
    /// When the reminder was meant to fire.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub remind_at: Timestamp,
    /// When it was delivered.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub delivered_at: Timestamp,
}

/// What a task event asks of its reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderPlan {
    /// There should be a reminder at `remind_at`.
    Schedule {
        /// When to fire.
        remind_at: Timestamp,
        /// The due date.
        due_at: Timestamp,
        /// The title to show.
        title: String,
    },
    /// There should be none.
    Cancel,
}

impl ReminderPlan {
    /// The plan for `task` after an event of `event_type`. A reminder is wanted only for a
    /// pending task with a due date and an offset whose due date is still ahead of `now`
    /// (a reminder whose time has passed but whose task is not yet due fires at once).
    pub fn for_task(event_type: EventType, task: &Task, now: Timestamp) -> Self {
        if matches!(event_type, EventType::TaskDeleted) || task.completed {
            return ReminderPlan::Cancel;
        }
        match (task.due_at, task.remind_at()) {
            (Some(due_at), Some(remind_at)) if due_at > now => ReminderPlan::Schedule {
                remind_at,
                due_at,
                title: task.title.clone(),
            },
            _ => ReminderPlan::Cancel,
        }
    }

    /// The reminder after applying this plan to `existing`, or `None` when nothing changes.
    /// A reminder already sent for the same `remind_at` stays sent: it is never delivered
    /// twice for one moment.
    pub fn apply(
        &self,
        existing: Option<&Reminder>,
        task_id: Uuid,
        user_id: &str,
        task_version: i64,
    ) -> Option<Reminder> {
        if existing.is_some_and(|r| r.task_version >= task_version) {
            return None; // stale or repeated event
        }
        match (self, existing) {
            (ReminderPlan::Cancel, Some(r)) if r.status == ReminderStatus::Scheduled => {
                Some(Reminder {
                    status: ReminderStatus::Cancelled,
                    task_version,
                    ..r.clone()
                })
            }
            (ReminderPlan::Cancel, _) => None,
            (
                ReminderPlan::Schedule {
                    remind_at,
                    due_at,
                    title,
                },
                existing,
            ) => {
                let status = match existing {
                    Some(r) if r.status == ReminderStatus::Sent && r.remind_at == *remind_at => {
                        ReminderStatus::Sent
                    }
                    _ => ReminderStatus::Scheduled,
                };
                let next = Reminder {
                    task_id,
                    user_id: user_id.to_owned(),
                    title: title.clone(),
                    remind_at: *remind_at,
                    due_at: *due_at,
                    status,
                    task_version,
                    traceparent: None,
                };
                let unchanged = existing.is_some_and(|r| {
                    r.remind_at == next.remind_at
                        && r.due_at == next.due_at
                        && r.title == next.title
                        && r.status == next.status
                });
                if unchanged { None } else { Some(next) }
            }
        }
    }
}

/// Whether storing `next` over `existing` schedules something new (a first schedule, a
/// moved `remind_at`, or a cancelled or sent one scheduled again): then a
/// `reminder.scheduled` event goes with it.
pub fn announces_schedule(existing: Option<&Reminder>, next: &Reminder) -> bool {
    next.status == ReminderStatus::Scheduled
        && existing.is_none_or(|r| r.remind_at != next.remind_at || r.status != next.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::CreateTask;
    use crate::time::parse_rfc3339;

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    fn task(body: serde_json::Value) -> Task {
        CreateTask::from_json(&body).unwrap().into_task(
            Uuid::now_v7(),
            "alice",
            ts("2026-11-22T10:00:00Z"),
        )
    }

    #[test]
    fn reminder_events_carry_the_reminder_and_name_the_notification_service() {
        let t = task(serde_json::json!({"title": "x", "due_at": "2026-12-01T09:00:00Z"}));
        let r = ReminderPlan::for_task(EventType::TaskCreated, &t, ts("2026-11-22T10:00:00Z"))
            .apply(None, t.id, "alice", 1)
            .unwrap();
        let at = ts("2026-11-22T10:00:01Z");
        let scheduled = r.scheduled_event(at, Some("00-trace".into()));
        assert_eq!(scheduled.event_type, "reminder.scheduled");
        assert_eq!(scheduled.source, "todo/notification");
        assert_eq!(scheduled.subject, t.id.to_string());
        assert_eq!(
            (scheduled.time, scheduled.traceparent.as_deref()),
            (at, Some("00-trace"))
        );
        assert_eq!(scheduled.reminder_data().unwrap(), r.event_data());
        let planned = Reminder {
            traceparent: Some("00-plan".into()),
            ..r.clone()
        };
        let due = planned.due_event(r.remind_at);
        assert_eq!(due.event_type, "reminder.due");
        assert_eq!(due.user_id(), Some("alice"));
        assert_eq!(
            due.traceparent.as_deref(),
            Some("00-plan"),
            "a delivery continues the trace that planned it"
        );
    }

    #[test]
    fn a_due_task_is_reminded_fifteen_minutes_before_by_default() {
        let t = task(serde_json::json!({"title": "x", "due_at": "2026-12-01T09:00:00Z"}));
        let plan = ReminderPlan::for_task(EventType::TaskCreated, &t, ts("2026-11-22T10:00:00Z"));
        assert_eq!(
            plan,
            ReminderPlan::Schedule {
                remind_at: ts("2026-12-01T08:45:00Z"),
                due_at: ts("2026-12-01T09:00:00Z"),
                title: "x".into()
            }
        );
        let r = plan.apply(None, t.id, "alice", 1).unwrap();
        assert_eq!(r.status, ReminderStatus::Scheduled);
    }

    #[test]
    fn completion_deletion_and_past_due_dates_cancel() {
        let now = ts("2026-11-22T10:00:00Z");
        let mut t = task(serde_json::json!({"title": "x", "due_at": "2026-12-01T09:00:00Z"}));
        assert_eq!(
            ReminderPlan::for_task(EventType::TaskDeleted, &t, now),
            ReminderPlan::Cancel
        );
        assert_eq!(
            ReminderPlan::for_task(EventType::TaskCreated, &t, ts("2026-12-02T00:00:00Z")),
            ReminderPlan::Cancel
        );
        t.completed = true;
        assert_eq!(
            ReminderPlan::for_task(EventType::TaskCompleted, &t, now),
            ReminderPlan::Cancel
        );
    }

    #[test]
    fn stale_or_repeated_events_change_nothing() {
        let t = task(serde_json::json!({"title": "x", "due_at": "2026-12-01T09:00:00Z"}));
        let plan = ReminderPlan::for_task(EventType::TaskCreated, &t, ts("2026-11-22T10:00:00Z"));
        let r = plan.apply(None, t.id, "alice", 2).unwrap();
        assert_eq!(plan.apply(Some(&r), t.id, "alice", 2), None);
        assert_eq!(ReminderPlan::Cancel.apply(Some(&r), t.id, "alice", 1), None);
        let cancelled = ReminderPlan::Cancel
            .apply(Some(&r), t.id, "alice", 3)
            .unwrap();
        assert_eq!(cancelled.status, ReminderStatus::Cancelled);
    }

    #[test]
    fn a_sent_reminder_is_not_rescheduled_for_the_same_moment_but_is_for_a_new_one() {
        let t = task(serde_json::json!({"title": "x", "due_at": "2026-12-01T09:00:00Z"}));
        let now = ts("2026-11-22T10:00:00Z");
        let mut sent = ReminderPlan::for_task(EventType::TaskCreated, &t, now)
            .apply(None, t.id, "alice", 1)
            .unwrap();
        sent.status = ReminderStatus::Sent;
        let mut renamed = t.clone();
        renamed.title = "y".into();
        let kept = ReminderPlan::for_task(EventType::TaskUpdated, &renamed, now)
            .apply(Some(&sent), t.id, "alice", 2)
            .unwrap();
        assert_eq!(kept.status, ReminderStatus::Sent);
        let mut moved = t.clone();
        moved.due_at = Some(ts("2026-12-02T09:00:00Z"));
        let again = ReminderPlan::for_task(EventType::TaskUpdated, &moved, now)
            .apply(Some(&sent), t.id, "alice", 3)
            .unwrap();
        assert_eq!(again.status, ReminderStatus::Scheduled);
        assert_eq!(again.remind_at, ts("2026-12-02T08:45:00Z"));
    }

    #[test]
    fn a_schedule_is_announced_when_it_is_new_moved_or_revived_and_not_otherwise() {
        let reminder = Reminder {
            task_id: Uuid::now_v7(),
            user_id: "alice".into(),
            title: "Pay rent".into(),
            remind_at: ts("2030-12-01T08:45:00Z"),
            due_at: ts("2030-12-01T09:00:00Z"),
            status: ReminderStatus::Scheduled,
            task_version: 1,
            traceparent: None,
        };
        assert!(announces_schedule(None, &reminder));
        assert!(!announces_schedule(Some(&reminder), &reminder));
        let moved = Reminder {
            remind_at: ts("2030-12-01T08:00:00Z"),
            ..reminder.clone()
        };
        assert!(announces_schedule(Some(&reminder), &moved));
        let cancelled = Reminder {
            status: ReminderStatus::Cancelled,
            ..reminder.clone()
        };
        assert!(announces_schedule(Some(&cancelled), &reminder));
        assert!(!announces_schedule(Some(&reminder), &cancelled));

        let event = reminder.scheduled_event(ts("2030-11-01T00:00:00Z"), None);
        assert_eq!(event.event_type, "reminder.scheduled");
        assert_eq!(event.source, "todo/notification");
        assert_eq!(event.reminder_data().unwrap(), reminder.event_data());
        let due = reminder.due_event(ts("2030-12-01T08:45:00Z"));
        assert_eq!(due.event_type, "reminder.due");
        assert_eq!(
            due.traceparent, None,
            "a reminder planned outside any trace is delivered outside one"
        );
    }
}
