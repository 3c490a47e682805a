//! Persistence for the Todo platform behind two traits: [`Store`] and [`EventLog`].
//!
//! Every write that changes a task also appends its CloudEvent to the outbox (`events`) in
//! the same transaction, so a change and its event are never separated by a crash. The
//! outbox doubles as the bus's durable log, read through [`EventLog`]; consumers keep their
//! positions there too. Each engine implements both traits on one object, the log being
//! tables of the same database. [`connect`] picks the engine from the `DATABASE_URL` scheme
//! and returns both handles as a [`Backend`].

mod error;
mod lead;
mod log;
pub mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use todo_domain::reminder::Notification;
use todo_domain::{AuditEntry, CloudEvent, Reminder, ReminderPlan, Task, TaskQuery};
use uuid::Uuid;

pub use error::{Result, StoreError};
pub use lead::Leadership;
pub use log::EventLog;
pub use model::{
    AuditPosition, AuditQuery, DeadLetter, LogRead, PageQuery, Planned, PoolState, Seek,
    StoredDeadLetter, StoredEvent, TailRead, TaskJson, TaskPageJson, UnreadableEvent,
    WebhookDelivery, WebhookOutcome,
};
use todo_domain::time::Timestamp;

/// Everything the services persist. Writes that change a task append their event to the
/// outbox here; reading the outbox as a log, and consumer positions, are [`EventLog`]'s.
/// Implementations must pass `tests/conformance.rs`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Runs a trivial query: the store is reachable and answering.
    async fn ping(&self) -> Result<()>;

    /// Takes a round trip through the write path: fails (or hangs, so callers bound it)
    /// when writes are stuck although reads still answer. By default the same as `ping`.
    async fn ping_writer(&self) -> Result<()> {
        self.ping().await
    }

    /// The store's connection pools as they are now; cheap, never waits. None by default.
    fn pools(&self) -> Vec<PoolState> {
        Vec::new()
    }

    /// Takes the lead named `name` if no other process holds it: `None` while another one
    /// does. The lead lasts while the returned value lives and until it reports it is lost.
    /// By default the lead is unconditional: a store one process owns (SQLite) has no other
    /// process to share it with.
    async fn try_lead(&self, name: &str) -> Result<Option<Leadership>> {
        let _ = name;
        Ok(Some(Leadership::unconditional()))
    }

    /// Applies pending schema migrations.
    async fn migrate(&self) -> Result<()>;

    /// Inserts a new task and its `task.created` event atomically.
    async fn insert_task(&self, task: &Task, event: &CloudEvent) -> Result<()>;

    /// The user's task, or `None` when absent or owned by someone else.
    async fn get_task(&self, user_id: &str, id: Uuid) -> Result<Option<Task>>;

    /// The task [`Store::get_task`] returns, as the JSON clients get ([`Task::write_json`]),
    /// copied from the JSON the store keeps beside its columns (see
    /// [`Store::list_tasks_json`]) rather than decoded and rendered.
    async fn get_task_json(&self, user_id: &str, id: Uuid) -> Result<Option<TaskJson>>;

    /// Replaces a task whose stored version is `expected_version` with `task` (whose
    /// version is one higher), appending `event`. `VersionConflict` if the stored version
    /// differs, `NotFound` if the task is gone.
    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()>;

    /// Deletes a task at `expected_version`, appending its `task.deleted` event.
    async fn delete_task(
        &self,
        user_id: &str,
        id: Uuid,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()>;

    /// One page of the user's tasks matching `query`, in its order, after its cursor.
    /// Returns up to `query.limit + 1` items: the extra one tells that more remain.
    async fn list_tasks(&self, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>>;

    /// The page [`Store::list_tasks`] returns, as the JSON clients get: the first
    /// `query.limit` tasks rendered as [`Task::write_json`] renders them, and the last of
    /// them again when more remain (for the next cursor). A store keeps each task's JSON
    /// beside its columns, written with the task, so a page is copied rather than decoded
    /// and rendered.
    async fn list_tasks_json(&self, user_id: &str, query: &TaskQuery) -> Result<TaskPageJson>;

    /// Creates `next`, the next occurrence of `parent_id`, with its event, unless one was
    /// already created. Returns whether it was created now.
    async fn spawn_next_occurrence(
        &self,
        parent_id: Uuid,
        next: &Task,
        event: &CloudEvent,
    ) -> Result<bool>;

    /// Keeps events that consumers could not handle, all in one transaction. A letter for
    /// a consumer and event already kept updates that row instead of adding one: `attempts`
    /// goes up by one, and the last failure's time, position, payload, reason and error
    /// replace the previous ones; the first failure's time stays.
    async fn record_dead_letters(&self, letters: &[DeadLetter]) -> Result<()>;

    /// Kept dead letters, oldest first failure first (ties by row id), at most `limit`.
    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<StoredDeadLetter>>;

    /// Records audit entries, skipping any whose event id is already recorded. Returns the
    /// event ids that were new (an id given twice counts once).
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<Vec<Uuid>>;

    /// The user's audit entries, newest `occurred_at` first (ties: latest recorded first),
    /// with their sequence numbers.
    async fn list_audit(&self, user_id: &str, query: &AuditQuery)
    -> Result<Vec<(i64, AuditEntry)>>;

    /// Applies a reminder plan for a task at `task_version`, appending `reminder.scheduled`
    /// when a reminder is scheduled or moved. Returns the reminder if it changed, and
    /// whether that event was appended.
    async fn plan_reminder(
        &self,
        task_id: Uuid,
        user_id: &str,
        task_version: i64,
        plan: &ReminderPlan,
        now: Timestamp,
        traceparent: Option<String>,
    ) -> Result<Option<Planned>>;

    /// The earliest `remind_at` among scheduled reminders.
    async fn next_reminder_at(&self) -> Result<Option<Timestamp>>;

    /// Delivers up to `limit` scheduled reminders due at `now`: each is marked sent and
    /// gets a notification row and a `reminder.due` event (and, when `webhook` is set, a
    /// webhook delivery), all in one transaction. Returns the reminders delivered.
    async fn deliver_due_reminders(
        &self,
        now: Timestamp,
        limit: i64,
        webhook: bool,
    ) -> Result<Vec<Reminder>>;

    /// The user's reminders (any status), newest `remind_at` first.
    async fn list_reminders(&self, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>>;

    /// The user's delivered reminders, newest first, with their sequence numbers.
    async fn list_notifications(
        &self,
        user_id: &str,
        query: &PageQuery,
    ) -> Result<Vec<(i64, Notification)>>;

    /// Claims up to `limit` pending webhook deliveries due at `now`: their next attempt is
    /// moved to `lease_until`, so a delivery in flight is not picked again, and one whose
    /// sender died is retried once the lease ends.
    async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>>;

    /// The earliest next attempt among pending webhook deliveries.
    async fn next_webhook_at(&self) -> Result<Option<Timestamp>>;

    /// Records the outcome of one webhook attempt.
    async fn finish_webhook(&self, id: i64, outcome: &WebhookOutcome, now: Timestamp)
    -> Result<()>;
}

/// Both handles on one opened database: the same object behind each.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Tasks, reminders, webhooks, audit and dead letters.
    pub store: Arc<dyn Store>,
    /// The outbox as the bus's log, and consumer positions.
    pub log: Arc<dyn EventLog>,
}

impl Backend {
    // Unused only in a build with neither engine (say, the bus crate's own checks).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    fn new<S: Store + EventLog>(engine: S) -> Self {
        let engine = Arc::new(engine);
        Backend {
            store: engine.clone(),
            log: engine,
        }
    }
}

/// Opens the store named by `database_url` (`sqlite://path`, or `postgres://...` and
/// `postgresql://...` when built with the `postgres` feature) and applies its migrations.
pub async fn connect(database_url: &str) -> Result<Backend> {
    if database_url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return Ok(Backend::new(
            sqlite::SqliteStore::connect(database_url).await?,
        ));
        #[cfg(not(feature = "sqlite"))]
        return Err(StoreError::Unsupported(
            "SQLite is not built into this binary (cargo feature `sqlite`)".into(),
        ));
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        connect_postgres(database_url).await
    } else {
        Err(StoreError::Unsupported(format!(
            "DATABASE_URL must start with sqlite:// or postgres:// (got scheme {:?})",
            database_url.split(':').next().unwrap_or_default()
        )))
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(database_url: &str) -> Result<Backend> {
    Ok(Backend::new(
        postgres::PostgresStore::connect(database_url).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_database_url: &str) -> Result<Backend> {
    Err(StoreError::Unsupported(
        "PostgreSQL is not built into this binary (the `postgres` feature is off); use a sqlite:// DATABASE_URL".into(),
    ))
}
