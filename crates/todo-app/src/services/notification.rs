//! `notification`: keeps each task's reminder in step with its events, and delivers
//! reminders when they fall due.
//!
//! The scheduler sleeps until the earliest scheduled `remind_at` (or until the consumer
//! says the schedule changed), so delivery is on time without polling. Delivery marks the
//! reminder sent, records the notification and appends `reminder.due` in one transaction:
//! a reminder is delivered once, and one that fell due while the process was down is
//! delivered at the next start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use todo_bus::Delivery;
use todo_domain::{EventType, ReminderPlan, Topic, time};
use todo_store::Store;
use todo_telemetry::Metrics;
use tokio::sync::Notify;

use tracing::Instrument;

use super::consumer::{Handled, Handler, Reason, Rejected, event_span};
use crate::shutdown::ShutdownSignal;

/// Reminders delivered per transaction.
const DELIVERY_BATCH: i64 = 100;
/// Longest sleep without looking: guards against wall-clock jumps, not a polling interval.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// What an event asks of a task's reminder: the task, the version the plan reflects, and
/// the plan.
type Planned = (todo_domain::Task, i64, ReminderPlan);

/// Consumer planning reminders from task events.
pub struct Planner {
    store: Arc<dyn Store>,
    schedule_changed: Arc<Notify>,
}

impl Planner {
    /// A handler that wakes the scheduler through `schedule_changed`.
    pub fn new(store: Arc<dyn Store>, schedule_changed: Arc<Notify>) -> Self {
        Planner {
            store,
            schedule_changed,
        }
    }

    /// What one event asks of the schedule, `None` when it cannot change it, or why the
    /// event cannot be read (an unknown type, data that is not a task).
    fn plan_for(
        event: &todo_domain::CloudEvent,
        now: time::Timestamp,
    ) -> Result<Option<Planned>, (Reason, String)> {
        let kind = event
            .kind()
            .map_err(|e| (Reason::UnknownType, e.to_string()))?;
        let task = event
            .task_data()
            .map_err(|e| (Reason::UnreadableData, e.to_string()))?
            .task;
        // A deletion is a change after the task's last version.
        let version = if kind == EventType::TaskDeleted {
            task.version + 1
        } else {
            task.version
        };
        let plan = ReminderPlan::for_task(kind, &task, now);
        if kind == EventType::TaskCreated && plan == ReminderPlan::Cancel {
            // A new task without a reminder: there is nothing to cancel.
            return Ok(None);
        }
        Ok(Some((task, version, plan)))
    }

    /// Applies one event's plan; returns whether the schedule changed.
    async fn plan_one(
        &self,
        (task, version, plan): Planned,
        now: time::Timestamp,
    ) -> anyhow::Result<bool> {
        // `reminder.scheduled` is a child of this consumer's span, and so is the delivery.
        let traceparent = todo_telemetry::trace::traceparent(&tracing::Span::current());
        let changed = self
            .store
            .plan_reminder(task.id, &task.user_id, version, &plan, now, traceparent)
            .await?;
        if let Some(todo_store::Planned { reminder, .. }) = &changed {
            tracing::debug!(status = reminder.status.as_str(), remind_at = %reminder.remind_at, "reminder planned");
        }
        Ok(changed.is_some())
    }
}

#[async_trait]
impl Handler for Planner {
    fn name(&self) -> &'static str {
        "notification"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskEvents]
    }

    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Handled> {
        let now = time::now();
        let mut changed = false;
        let mut rejected = Vec::new();
        for delivery in batch {
            let planned = match Self::plan_for(&delivery.event, now) {
                Ok(Some(planned)) => planned,
                Ok(None) => continue,
                Err((reason, error)) => {
                    rejected.push(Rejected::new(delivery, reason, error));
                    continue;
                }
            };
            let span = event_span(self.name(), "notification process", delivery);
            changed |= self.plan_one(planned, now).instrument(span).await?;
        }
        if changed {
            self.schedule_changed.notify_one();
        }
        Ok(rejected.into())
    }
}

/// Delivers due reminders, sleeping until the next one.
pub async fn run_scheduler(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    schedule_changed: Arc<Notify>,
    webhook: Option<Arc<Notify>>,
    mut shutdown: ShutdownSignal,
) {
    tracing::info!("reminder scheduler started");
    loop {
        let wait = match deliver_due(store.as_ref(), &metrics, webhook.is_some()).await {
            Ok(delivered) => {
                if let Some(webhook) = webhook.as_ref().filter(|_| delivered > 0) {
                    webhook.notify_one();
                }
                if delivered as i64 == DELIVERY_BATCH {
                    continue; // more may be due right now
                }
                match store.next_reminder_at().await {
                    Ok(Some(at)) => (at - chrono::Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_SLEEP),
                    Ok(None) => MAX_SLEEP,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the reminder schedule failed");
                        Duration::from_secs(1)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reminder delivery failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = shutdown.wait() => break,
            () = schedule_changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("reminder scheduler stopped");
}

/// One scheduler step: delivers what is due now and returns how many.
pub async fn deliver_due(
    store: &dyn Store,
    metrics: &Metrics,
    webhook: bool,
) -> anyhow::Result<usize> {
    let now = time::now();
    let delivered = store
        .deliver_due_reminders(now, DELIVERY_BATCH, webhook)
        .await?;
    for reminder in &delivered {
        let lag = (now - reminder.remind_at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
        metrics.reminders.observe_lag(lag);
        let upcoming = todo_telemetry::trace::upcoming_parent(reminder.traceparent.as_deref());
        let span = tracing::info_span!("reminder deliver", task_id = %reminder.task_id, user_id = reminder.user_id.as_str());
        drop(upcoming);
        todo_telemetry::trace::set_parent(&span, reminder.traceparent.as_deref());
        span.in_scope(|| tracing::info!(lag_seconds = lag, "reminder delivered"));
    }
    metrics.reminders.delivered(delivered.len() as u64);
    Ok(delivered.len())
}
