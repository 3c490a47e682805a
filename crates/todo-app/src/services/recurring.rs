//! `recurring`: when an occurrence of a recurring task is completed, creates the next one.
//!
//! A series ends when its next due date would fall outside years 1970–9999
//! ([`todo_domain::Recurrence::next_due`] gives none): the completion is handled, creating
//! nothing, and counted as `series_ended`.

use std::sync::Arc;

use async_trait::async_trait;
use todo_bus::Delivery;
use todo_domain::{CloudEvent, EventType, Task, Topic, time};
use todo_store::Store;
use todo_telemetry::Metrics;
use uuid::Uuid;

use tracing::Instrument;

use super::consumer::{Handled, Handler, Reason, Rejected, event_span};

const SERVICE: &str = "recurring";

/// The next occurrence of `done` (a completed recurring task), stepping its due date from
/// the previous one with the series' anchor day. `None` for a one-off task, a task without
/// a due date, or when the step leaves years 1970–9999: the series has ended.
pub fn next_occurrence(
    done: &Task,
    anchor_day: Option<u32>,
    id: Uuid,
    now: time::Timestamp,
) -> Option<Task> {
    let recurrence = done.recurrence?;
    let due = recurrence.next_due(done.due_at?, anchor_day)?;
    Some(Task {
        id,
        completed: false,
        completed_at: None,
        due_at: Some(due),
        parent_task_id: Some(done.id),
        version: 1,
        created_at: now,
        updated_at: now,
        recurrence_anchor_day: anchor_day,
        ..done.clone()
    })
}

/// Consumer creating next occurrences.
pub struct Recurring {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Recurring {
    /// A handler over `store`, counting outcomes in `metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Recurring { store, metrics }
    }

    /// Handles one `task.completed` event (the caller passes no other kind): rejected
    /// when its data is not a task, a duplicate when its next occurrence exists already.
    async fn handle_one(&self, delivery: &Delivery, handled: &mut Handled) -> anyhow::Result<()> {
        let event = &*delivery.event;
        let done = match event.task_data() {
            Ok(data) => data.task,
            Err(e) => {
                handled.reject(Rejected::new(delivery, Reason::UnreadableData, e));
                return Ok(());
            }
        };
        if done.recurrence.is_none() {
            return Ok(());
        }
        // The anchor day is kept on the stored row; the event carries only the public shape.
        let anchor = self
            .store
            .get_task(&done.user_id, done.id)
            .await?
            .and_then(|t| t.recurrence_anchor_day)
            .or_else(|| done.anchor_day());
        let now = time::now();
        let Some(next) = next_occurrence(&done, anchor, Uuid::now_v7(), now) else {
            // Input requires a due date with a recurrence, so this is the end of the range.
            self.metrics.events.recurring_completion("series_ended");
            tracing::info!(
                task_id = %done.id,
                event_id = %event.id,
                due_at = done.due_at.map(|d| time::format_rfc3339(&d)).unwrap_or_default(),
                "recurring series ended: no next due date within years 1970-9999"
            );
            return Ok(());
        };
        // The next occurrence's event is a child of this consumer's span.
        let traceparent = todo_telemetry::trace::traceparent(&tracing::Span::current());
        let created = CloudEvent::task(EventType::TaskCreated, SERVICE, &next, now, traceparent);
        if self
            .store
            .spawn_next_occurrence(done.id, &next, &created)
            .await?
        {
            self.metrics.events.recurring_completion("created");
            tracing::info!(next_task_id = %next.id, "next occurrence created");
        } else {
            self.metrics.events.recurring_completion("already_created");
            handled.duplicate(event.id);
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for Recurring {
    fn name(&self) -> &'static str {
        "recurring"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskEvents]
    }

    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Handled> {
        let mut handled = Handled::default();
        for delivery in batch {
            // Only completions concern this consumer; every other type (including one this
            // build does not know) asks nothing of it. Skip them before opening a span.
            if delivery.event.kind().ok() != Some(EventType::TaskCompleted) {
                continue;
            }
            let span = event_span(self.name(), "recurring process", delivery);
            self.handle_one(delivery, &mut handled)
                .instrument(span)
                .await?;
        }
        Ok(handled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use todo_domain::CreateTask;

    #[test]
    fn the_next_occurrence_carries_everything_but_completion_and_links_its_parent() {
        let now = time::parse_rfc3339("2026-11-22T10:00:00Z").unwrap();
        let mut done = CreateTask::from_json(&serde_json::json!({
            "title": "Pay rent", "description": "d", "priority": "high", "tags": ["home"],
            "due_at": "2027-01-31T09:00:00Z", "remind_before_minutes": 60,
            "recurrence": {"frequency": "monthly", "interval": 1}
        }))
        .unwrap()
        .into_task(Uuid::now_v7(), "alice", now);
        done.completed = true;
        done.completed_at = Some(now);
        done.version = 2;
        let next = next_occurrence(&done, Some(31), Uuid::now_v7(), now).unwrap();
        assert_eq!(next.due_at, time::parse_rfc3339("2027-02-28T09:00:00Z"));
        assert_eq!(next.parent_task_id, Some(done.id));
        assert!(!next.completed && next.completed_at.is_none());
        assert_eq!(
            (next.version, next.priority, next.remind_before_minutes),
            (1, done.priority, Some(60))
        );
        assert_eq!(
            (next.tags.clone(), next.description.clone(), next.recurrence),
            (done.tags.clone(), done.description.clone(), done.recurrence)
        );
        let after = next_occurrence(&next, Some(31), Uuid::now_v7(), now).unwrap();
        assert_eq!(after.due_at, time::parse_rfc3339("2027-03-31T09:00:00Z"));
    }

    #[test]
    fn a_series_whose_next_due_date_leaves_the_year_9999_has_no_next_occurrence() {
        let now = time::parse_rfc3339("2026-11-22T10:00:00Z").unwrap();
        let done = CreateTask::from_json(&serde_json::json!({
            "title": "x", "due_at": "9999-12-31T23:59:59Z",
            "recurrence": {"frequency": "yearly", "interval": 365}
        }))
        .unwrap()
        .into_task(Uuid::now_v7(), "alice", now);
        assert_eq!(
            next_occurrence(&done, done.anchor_day(), Uuid::now_v7(), now),
            None
        );
    }
}
