//! Fixtures the store and log conformance suites share: small builders and one-line calls
//! that fail the test with the call's name.

#![allow(dead_code)]

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use todo_domain::event::EventType;
use todo_domain::time::{Timestamp, parse_rfc3339};
use todo_domain::{CloudEvent, Priority, Reminder, ReminderPlan, Task, TaskQuery, Topic};
use todo_store::{EventLog, Store, StoredEvent};
use uuid::Uuid;

pub fn at(s: &str) -> Timestamp {
    parse_rfc3339(s).expect("a valid RFC 3339 timestamp")
}

/// The fixed "now" every scenario starts from.
pub fn t0() -> Timestamp {
    at("2026-11-22T10:00:00Z")
}

pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A pending, medium-priority task with nothing optional set, at version 1.
pub fn task(user_id: &str, title: &str) -> Task {
    Task {
        id: Uuid::now_v7(),
        user_id: user_id.to_owned(),
        title: title.to_owned(),
        description: None,
        completed: false,
        completed_at: None,
        priority: Priority::Medium,
        tags: Vec::new(),
        due_at: None,
        remind_before_minutes: None,
        recurrence: None,
        parent_task_id: None,
        version: 1,
        created_at: t0(),
        updated_at: t0(),
        recurrence_anchor_day: None,
    }
}

/// `current` after `change`, one version higher and a second later.
pub fn edited(current: &Task, change: impl FnOnce(&mut Task)) -> Task {
    let mut next = current.clone();
    change(&mut next);
    next.version = current.version + 1;
    next.updated_at = current.updated_at + Duration::seconds(1);
    next
}

pub fn event(kind: EventType, task: &Task) -> CloudEvent {
    CloudEvent::task(
        kind,
        "api",
        task,
        task.updated_at,
        Some(TRACEPARENT.to_owned()),
    )
}

/// Inserts `task` with its `task.created` event and returns the event.
pub async fn insert(store: &dyn Store, task: &Task) -> CloudEvent {
    let created = event(EventType::TaskCreated, task);
    store
        .insert_task(task, &created)
        .await
        .expect("insert_task");
    created
}

/// The task, read both ways: `get_task_json` must give what `get_task` gives, as the API
/// renders it.
pub async fn get(store: &dyn Store, user_id: &str, id: Uuid) -> Option<Task> {
    let task = store.get_task(user_id, id).await.expect("get_task");
    let json = store
        .get_task_json(user_id, id)
        .await
        .expect("get_task_json");
    assert_eq!(
        json.map(|j| (j.version, String::from_utf8(j.json).expect("UTF-8"))),
        task.as_ref()
            .map(|t| (t.version, serde_json::to_string(t).expect("JSON"))),
        "get_task_json of {user_id}/{id}"
    );
    task
}

/// The newest position, once every event committed before the call is readable.
///
/// On PostgreSQL an event committed behind a transaction still open anywhere on the server
/// (another test's: some hold one open on purpose) is not readable yet, and a bare read
/// right after a write can stop short of it. `last_event_seq` waits for such events for at
/// most 1 s and then answers with what is readable (`postgres/events.rs`), so an answer
/// that took that long may be short: ask again, for up to 10 s.
pub async fn last_seq(log: &dyn EventLog) -> i64 {
    const READ_WAIT: StdDuration = StdDuration::from_secs(1);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let asked = Instant::now();
        let seq = log.last_event_seq().await.expect("last_event_seq");
        if asked.elapsed() < READ_WAIT {
            return seq;
        }
        assert!(
            Instant::now() < deadline,
            "committed events still not readable after 10 s"
        );
    }
}

/// The events after `after` on `topic`, up to the newest committed before the call (see
/// [`last_seq`]).
pub async fn events_after(log: &dyn EventLog, after: i64, topic: Topic) -> Vec<StoredEvent> {
    last_seq(log).await;
    log.read_events(after, &[topic], 1_000)
        .await
        .expect("read_events")
}

pub fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.event_type.as_str()).collect()
}

pub fn all_tasks(limit: i64) -> TaskQuery {
    TaskQuery {
        limit,
        ..TaskQuery::default()
    }
}

pub fn schedule(remind_at: Timestamp, title: &str) -> ReminderPlan {
    ReminderPlan::Schedule {
        remind_at,
        due_at: remind_at + Duration::minutes(15),
        title: title.to_owned(),
    }
}

pub async fn plan(
    store: &dyn Store,
    task_id: Uuid,
    user_id: &str,
    version: i64,
    plan: &ReminderPlan,
) -> Option<Reminder> {
    planned(store, task_id, user_id, version, plan)
        .await
        .map(|p| p.reminder)
}

/// Like [`plan`], also saying whether `reminder.scheduled` was appended.
pub async fn planned(
    store: &dyn Store,
    task_id: Uuid,
    user_id: &str,
    version: i64,
    plan: &ReminderPlan,
) -> Option<todo_store::Planned> {
    store
        .plan_reminder(task_id, user_id, version, plan, t0(), None)
        .await
        .expect("plan_reminder")
}
