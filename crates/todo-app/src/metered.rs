//! [`Store`] and [`EventLog`] wrappers that time every operation and count failures by
//! kind, so the store's latency and errors show up in `/metrics` whatever engine is behind
//! it. Both record into the same store families: the log is tables of the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use todo_domain::reminder::Notification;
use todo_domain::time::Timestamp;
use todo_domain::{
    AuditEntry, CloudEvent, EventType, Reminder, ReminderPlan, Task, TaskQuery, Topic,
};
use todo_store::{
    AuditQuery, DeadLetter, EventLog, PageQuery, Planned, Result, Store, StoredDeadLetter,
    StoredEvent, TailRead, WebhookDelivery, WebhookOutcome,
};
use todo_telemetry::Metrics;
use uuid::Uuid;

/// Whether the database is in an outage, shared by the store's and the log's wrappers, so
/// an outage logs `database unavailable` once when it begins and `database available
/// again` once when it ends, rather than a line per failed call.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    fn failed(&self, op: &'static str, error: &todo_store::StoreError) {
        if error.is_unavailable() && !self.0.swap(true, Ordering::AcqRel) {
            tracing::error!(op, error = %error, "database unavailable");
        }
    }

    fn answered(&self, op: &'static str) {
        // Load first: the swap's write would contend on every call otherwise.
        if self.0.load(Ordering::Acquire) && self.0.swap(false, Ordering::AcqRel) {
            tracing::info!(op, "database available again");
        }
    }
}

/// Times `call` as store operation `op`, counting its failure by kind.
async fn timed<T>(
    metrics: &Metrics,
    outage: &Outage,
    op: &'static str,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = call.await;
    metrics.store.observe(op, started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => outage.answered(op),
        // Not-found and version conflicts are answers, not failures.
        Err(todo_store::StoreError::NotFound | todo_store::StoreError::VersionConflict { .. }) => {
            outage.answered(op);
        }
        Err(e) => {
            metrics.store.error(op, e.kind());
            outage.failed(op, e);
        }
    }
    result
}

/// Every operation name the wrappers time (the `op` label); their error series are created
/// at zero on start.
pub const STORE_OPS: [&str; 28] = [
    "claim_webhooks",
    "commit_position",
    "consumer_position",
    "count_events_after",
    "delete_task",
    "deliver_due_reminders",
    "finish_webhook",
    "get_task",
    "insert_task",
    "last_event_seq",
    "list_audit",
    "list_dead_letters",
    "list_notifications",
    "list_reminders",
    "list_tasks",
    "migrate",
    "next_reminder_at",
    "next_webhook_at",
    "oldest_event_after",
    "ping",
    "ping_writer",
    "plan_reminder",
    "prune_events",
    "read_events",
    "record_audit",
    "record_dead_letters",
    "spawn_next_occurrence",
    "update_task",
];

/// The `type` label of an event type: known types as they are, anything else `other`.
pub(crate) fn event_type_label(event_type: &str) -> &'static str {
    EventType::parse(event_type).map_or("other", EventType::as_str)
}

/// Times and counts calls to the inner store.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    outage: Outage,
}

impl MeteredStore {
    /// Wraps `inner`; `outage` is shared with the log's wrapper.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>, outage: Outage) -> Self {
        MeteredStore {
            inner,
            metrics,
            outage,
        }
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        timed(&self.metrics, &self.outage, op, call).await
    }

    /// Counts a task event once its write committed.
    fn published<T>(&self, result: Result<T>, event: &CloudEvent) -> Result<T> {
        if result.is_ok() {
            self.count_published(EventType::parse(&event.event_type), 1);
        }
        result
    }

    /// Counts `n` events of `kind` (`None`: a type this build does not know).
    fn count_published(&self, kind: Option<EventType>, n: u64) {
        let topic = kind.map_or(todo_domain::Topic::TaskEvents, EventType::topic);
        let label = kind.map_or("other", EventType::as_str);
        self.metrics.events.published(topic.as_str(), label, n);
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn ping_writer(&self) -> Result<()> {
        self.timed("ping_writer", self.inner.ping_writer()).await
    }

    async fn try_lead(&self, name: &str) -> Result<Option<todo_store::Leadership>> {
        self.inner.try_lead(name).await
    }

    async fn migrate(&self) -> Result<()> {
        self.timed("migrate", self.inner.migrate()).await
    }

    async fn insert_task(&self, task: &Task, event: &CloudEvent) -> Result<()> {
        let result = self
            .timed("insert_task", self.inner.insert_task(task, event))
            .await;
        self.published(result, event)
    }

    async fn get_task(&self, user_id: &str, id: Uuid) -> Result<Option<Task>> {
        self.timed("get_task", self.inner.get_task(user_id, id))
            .await
    }

    async fn get_task_json(&self, user_id: &str, id: Uuid) -> Result<Option<todo_store::TaskJson>> {
        // The same operation as `get_task`, as clients see it.
        self.timed("get_task", self.inner.get_task_json(user_id, id))
            .await
    }

    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let result = self
            .timed(
                "update_task",
                self.inner.update_task(task, expected_version, event),
            )
            .await;
        self.published(result, event)
    }

    async fn delete_task(
        &self,
        user_id: &str,
        id: Uuid,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let result = self
            .timed(
                "delete_task",
                self.inner.delete_task(user_id, id, expected_version, event),
            )
            .await;
        self.published(result, event)
    }

    async fn list_tasks(&self, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>> {
        self.timed("list_tasks", self.inner.list_tasks(user_id, query))
            .await
    }

    async fn list_tasks_json(
        &self,
        user_id: &str,
        query: &TaskQuery,
    ) -> Result<todo_store::TaskPageJson> {
        // The same operation as `list_tasks`, as clients see it.
        self.timed("list_tasks", self.inner.list_tasks_json(user_id, query))
            .await
    }

    async fn spawn_next_occurrence(
        &self,
        parent_id: Uuid,
        next: &Task,
        event: &CloudEvent,
    ) -> Result<bool> {
        let created = self
            .timed(
                "spawn_next_occurrence",
                self.inner.spawn_next_occurrence(parent_id, next, event),
            )
            .await;
        if matches!(created, Ok(true)) {
            self.count_published(EventType::parse(&event.event_type), 1);
        }
        created
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        self.timed(
            "record_dead_letters",
            self.inner.record_dead_letters(letters),
        )
        .await
    }

    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<StoredDeadLetter>> {
        self.timed("list_dead_letters", self.inner.list_dead_letters(limit))
            .await
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<Vec<Uuid>> {
        self.timed("record_audit", self.inner.record_audit(entries))
            .await
    }

    async fn list_audit(
        &self,
        user_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        self.timed("list_audit", self.inner.list_audit(user_id, query))
            .await
    }

    async fn plan_reminder(
        &self,
        task_id: Uuid,
        user_id: &str,
        task_version: i64,
        plan: &ReminderPlan,
        now: Timestamp,
        traceparent: Option<String>,
    ) -> Result<Option<Planned>> {
        let call = self
            .inner
            .plan_reminder(task_id, user_id, task_version, plan, now, traceparent);
        let planned = self.timed("plan_reminder", call).await;
        if let Ok(Some(Planned {
            announced: true, ..
        })) = &planned
        {
            self.metrics.reminders.scheduled();
            self.count_published(Some(EventType::ReminderScheduled), 1);
        }
        planned
    }

    fn pools(&self) -> Vec<todo_store::PoolState> {
        self.inner.pools()
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>> {
        self.timed("next_reminder_at", self.inner.next_reminder_at())
            .await
    }

    async fn deliver_due_reminders(
        &self,
        now: Timestamp,
        limit: i64,
        webhook: bool,
    ) -> Result<Vec<Reminder>> {
        let delivered = self
            .timed(
                "deliver_due_reminders",
                self.inner.deliver_due_reminders(now, limit, webhook),
            )
            .await;
        if let Ok(delivered) = &delivered
            && !delivered.is_empty()
        {
            // Each delivery appends one `reminder.due`.
            self.count_published(Some(EventType::ReminderDue), delivered.len() as u64);
        }
        delivered
    }

    async fn list_reminders(&self, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>> {
        self.timed("list_reminders", self.inner.list_reminders(user_id, query))
            .await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        query: &PageQuery,
    ) -> Result<Vec<(i64, Notification)>> {
        self.timed(
            "list_notifications",
            self.inner.list_notifications(user_id, query),
        )
        .await
    }

    async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        self.timed(
            "claim_webhooks",
            self.inner.claim_webhooks(now, lease_until, limit),
        )
        .await
    }

    async fn next_webhook_at(&self) -> Result<Option<Timestamp>> {
        self.timed("next_webhook_at", self.inner.next_webhook_at())
            .await
    }

    async fn finish_webhook(
        &self,
        id: i64,
        outcome: &WebhookOutcome,
        now: Timestamp,
    ) -> Result<()> {
        self.timed(
            "finish_webhook",
            self.inner.finish_webhook(id, outcome, now),
        )
        .await
    }
}

/// Times and counts calls to the inner log, under the same operation names as the store's.
#[derive(Debug)]
pub struct MeteredLog {
    inner: Arc<dyn EventLog>,
    metrics: Arc<Metrics>,
    outage: Outage,
}

impl MeteredLog {
    /// Wraps `inner`; `outage` is shared with the store's wrapper.
    pub fn new(inner: Arc<dyn EventLog>, metrics: Arc<Metrics>, outage: Outage) -> Self {
        MeteredLog {
            inner,
            metrics,
            outage,
        }
    }

    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        timed(&self.metrics, &self.outage, op, call).await
    }
}

#[async_trait]
impl EventLog for MeteredLog {
    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.appended()
    }

    fn recent_events(&self, after: i64, topics: &[Topic], limit: usize) -> Option<TailRead> {
        // In memory and lock-only: not timed, so the store histograms stay about I/O.
        self.inner.recent_events(after, topics, limit)
    }

    async fn read_events(
        &self,
        after: i64,
        topics: &[Topic],
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        self.timed("read_events", self.inner.read_events(after, topics, limit))
            .await
    }

    async fn read_log(
        &self,
        after: i64,
        topics: &[Topic],
        limit: i64,
    ) -> Result<todo_store::LogRead> {
        // The same operation as `read_events`, for the metrics.
        self.timed("read_events", self.inner.read_log(after, topics, limit))
            .await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        self.timed("last_event_seq", self.inner.last_event_seq())
            .await
    }

    async fn count_events_after(&self, after: i64, topics: &[Topic]) -> Result<i64> {
        self.timed(
            "count_events_after",
            self.inner.count_events_after(after, topics),
        )
        .await
    }

    async fn oldest_event_after(&self, after: i64, topics: &[Topic]) -> Result<Option<Timestamp>> {
        self.timed(
            "oldest_event_after",
            self.inner.oldest_event_after(after, topics),
        )
        .await
    }

    async fn prune_events(&self, before: Timestamp, consumers: &[&str]) -> Result<u64> {
        self.timed("prune_events", self.inner.prune_events(before, consumers))
            .await
    }

    async fn consumer_position(&self, consumer: &str) -> Result<i64> {
        self.timed("consumer_position", self.inner.consumer_position(consumer))
            .await
    }

    async fn commit_position(&self, consumer: &str, position: i64) -> Result<()> {
        self.timed(
            "commit_position",
            self.inner.commit_position(consumer, position),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::STORE_OPS;

    #[test]
    fn every_timed_operation_is_listed() {
        let source = include_str!("metered.rs");
        let mut timed: Vec<&str> = source
            .match_indices("timed(")
            .filter_map(|(at, _)| {
                let rest = source[at + "timed(".len()..].trim_start();
                let name = rest.strip_prefix('"')?;
                name.split('"').next()
            })
            .filter(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .collect();
        timed.sort_unstable();
        timed.dedup();
        assert!(timed.len() > 20, "{timed:?}");
        assert_eq!(
            timed, STORE_OPS,
            "STORE_OPS lists exactly the timed operations"
        );
    }
}
