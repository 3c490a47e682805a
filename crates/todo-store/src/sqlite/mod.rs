//! The SQLite store: the embedded default.
//!
//! One writer thread owns the read-write connection and commits concurrent writes together
//! ([`writer`]); a few read-only connections serve reads beside it, which WAL allows.
//! `synchronous=NORMAL` in WAL mode makes a commit survive a process crash (`kill -9`);
//! `TODO_SQLITE_SYNCHRONOUS=full` extends that to power loss at some cost in write speed.

mod checkpoint;
mod conn;
mod dead_letters;
mod errors;
mod events;
mod migrate;
mod reminders;
mod rows;
mod tail;
mod tasks;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use todo_domain::reminder::Notification;
use todo_domain::time::Timestamp;
use todo_domain::{AuditEntry, CloudEvent, Reminder, ReminderPlan, Task, TaskQuery, Topic};
use uuid::Uuid;

use crate::{
    AuditQuery, DeadLetter, EventLog, LogRead, PageQuery, Planned, PoolState, Result, Store,
    StoreError, StoredDeadLetter, TailRead, TaskJson, TaskPageJson, WebhookDelivery,
    WebhookOutcome,
};
use checkpoint::Checkpointer;
use conn::{Options, Readers};
use events::{AuditRow, OutboxRow};
use tail::Tail;
use writer::Writer;

/// Read-only connections beside the writer.
const READERS: usize = 4;

/// SQLite-backed [`Store`] and [`EventLog`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    tail: Arc<Tail>,
    appended: Arc<tokio::sync::watch::Sender<u64>>,
    _checkpointer: Checkpointer,
}

/// The file a `sqlite:` URL names: `sqlite://path`, `sqlite:path`, with any `?...` ignored.
fn database_path(url: &str) -> Result<PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Unsupported(
            "an in-memory SQLite database would vanish with its connection; use sqlite://<file>"
                .into(),
        ));
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Unsupported(format!("not a sqlite: URL: {url:?}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Unsupported(
            "DATABASE_URL names no file; use sqlite://<file>".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    /// `TODO_SQLITE_SYNCHRONOUS` (`normal` or `full`) sets the commit durability.
    pub async fn connect(url: &str) -> Result<Self> {
        let synchronous = match std::env::var("TODO_SQLITE_SYNCHRONOUS").as_deref() {
            Err(_) | Ok("normal") => "NORMAL",
            Ok("full") => "FULL",
            Ok(other) => {
                return Err(StoreError::Unsupported(format!(
                    "TODO_SQLITE_SYNCHRONOUS must be normal or full (got {other:?})"
                )));
            }
        };
        let options = Options {
            path: database_path(url)?,
            synchronous,
        };
        let writer_options = options.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = writer_options.open_writer()?;
            migrate::to_latest(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("opening the database failed: {e}")))??;
        let (appended, _) = tokio::sync::watch::channel(0u64);
        let appended = Arc::new(appended);
        let signal = Arc::clone(&appended);
        let tail = Arc::new(Tail::default());
        let committed = Arc::clone(&tail);
        let commits = Arc::new(AtomicU64::new(0));
        let readers = Readers::new(options.clone(), READERS, Arc::clone(&commits));
        let progress = Arc::new(checkpoint::Progress::default());
        let checkpointer = Checkpointer::start(
            options.clone(),
            Arc::clone(&commits),
            Arc::clone(&readers),
            Arc::clone(&progress),
        )?;
        let writer = Writer::start(
            conn,
            options,
            commits,
            Arc::clone(&readers),
            progress,
            move |events| {
                if !events.is_empty() {
                    committed.extend(events);
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
            },
        )?;
        Ok(SqliteStore {
            writer,
            readers,
            tail,
            appended,
            _checkpointer: checkpointer,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.readers
            .read_now(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(())
    }

    async fn ping_writer(&self) -> Result<()> {
        // An empty job: it waits behind every queued write and the batch's commit.
        self.writer.write(|_| Ok(())).await
    }

    fn pools(&self) -> Vec<PoolState> {
        vec![self.readers.pool_state(), self.writer.pool_state()]
    }

    async fn migrate(&self) -> Result<()> {
        // Migrations run when the store is opened; this confirms the file is current.
        let version = self.readers.read_now(migrate::version).await?;
        if version < migrate::LATEST {
            return Err(StoreError::Migrate(format!(
                "schema version {version} is behind this build's {}",
                migrate::LATEST
            )));
        }
        Ok(())
    }

    async fn insert_task(&self, task: &Task, event: &CloudEvent) -> Result<()> {
        let task = tasks::Rendered::new(task);
        let event = OutboxRow::new(event)?;
        self.writer
            .write(move |ctx| {
                tasks::insert(ctx.conn, &task)?;
                events::append(ctx, &event)
            })
            .await
    }

    async fn get_task(&self, user_id: &str, id: Uuid) -> Result<Option<Task>> {
        let user_id = user_id.to_owned();
        self.readers
            .read_now(move |c| tasks::get(c, &user_id, id))
            .await
    }

    async fn get_task_json(&self, user_id: &str, id: Uuid) -> Result<Option<TaskJson>> {
        let user_id = user_id.to_owned();
        self.readers
            .read_now(move |c| tasks::get_json(c, &user_id, id))
            .await
    }

    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let task = tasks::Rendered::new(task);
        let event = OutboxRow::new(event)?;
        self.writer
            .write(move |ctx| {
                tasks::update(ctx.conn, &task, expected_version)?;
                events::append(ctx, &event)
            })
            .await
    }

    async fn delete_task(
        &self,
        user_id: &str,
        id: Uuid,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let user_id = user_id.to_owned();
        let event = OutboxRow::new(event)?;
        self.writer
            .write(move |ctx| {
                tasks::delete(ctx.conn, &user_id, id, expected_version)?;
                events::append(ctx, &event)
            })
            .await
    }

    async fn list_tasks(&self, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>> {
        let user_id = user_id.to_owned();
        let query = query.clone();
        self.readers
            .read(move |c| tasks::list(c, &user_id, &query))
            .await
    }

    async fn list_tasks_json(&self, user_id: &str, query: &TaskQuery) -> Result<TaskPageJson> {
        let user_id = user_id.to_owned();
        let query = query.clone();
        self.readers
            .read(move |c| tasks::list_json(c, &user_id, &query))
            .await
    }

    async fn spawn_next_occurrence(
        &self,
        parent_id: Uuid,
        next: &Task,
        event: &CloudEvent,
    ) -> Result<bool> {
        let next = tasks::Rendered::new(next);
        let event = OutboxRow::new(event)?;
        self.writer
            .write(move |ctx| {
                let claimed =
                    tasks::claim_spawn(ctx.conn, parent_id, next.task.id, next.task.created_at)?;
                if claimed {
                    tasks::insert(ctx.conn, &next)?;
                    events::append(ctx, &event)?;
                }
                Ok(claimed)
            })
            .await
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let letters = letters.to_vec();
        self.writer
            .write(move |ctx| dead_letters::record(ctx.conn, &letters))
            .await
    }

    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<StoredDeadLetter>> {
        self.readers
            .read(move |c| dead_letters::list(c, limit))
            .await
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<Vec<Uuid>> {
        let rows = entries
            .iter()
            .map(AuditRow::new)
            .collect::<Result<Vec<_>>>()?;
        self.writer
            .write(move |ctx| events::record_audit(ctx.conn, &rows))
            .await
    }

    async fn list_audit(
        &self,
        user_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        let user_id = user_id.to_owned();
        let query = query.clone();
        self.readers
            .read(move |c| events::list_audit(c, &user_id, &query))
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
        // Most events change no reminder (a task without a due date, a repeated event):
        // settle those with a read, and queue a write only for a change, checked again there.
        let seen = self
            .readers
            .read_now(move |c| reminders::get(c, task_id))
            .await?;
        if plan
            .apply(seen.as_ref(), task_id, user_id, task_version)
            .is_none()
        {
            return Ok(None);
        }
        let user_id = user_id.to_owned();
        let plan = plan.clone();
        self.writer
            .write(move |ctx| {
                reminders::plan(
                    ctx,
                    task_id,
                    &user_id,
                    task_version,
                    &plan,
                    now,
                    traceparent.clone(),
                )
            })
            .await
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>> {
        self.readers.read_now(reminders::next_at).await
    }

    async fn deliver_due_reminders(
        &self,
        now: Timestamp,
        limit: i64,
        webhook: bool,
    ) -> Result<Vec<Reminder>> {
        self.writer
            .write(move |ctx| reminders::deliver_due(ctx, now, limit, webhook))
            .await
    }

    async fn list_reminders(&self, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>> {
        let user_id = user_id.to_owned();
        let query = query.clone();
        self.readers
            .read(move |c| reminders::list(c, &user_id, &query))
            .await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        query: &PageQuery,
    ) -> Result<Vec<(i64, Notification)>> {
        let user_id = user_id.to_owned();
        let query = query.clone();
        self.readers
            .read(move |c| reminders::list_notifications(c, &user_id, &query))
            .await
    }

    async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        self.writer
            .write(move |ctx| reminders::claim_webhooks(ctx.conn, now, lease_until, limit))
            .await
    }

    async fn next_webhook_at(&self) -> Result<Option<Timestamp>> {
        self.readers.read_now(reminders::next_webhook_at).await
    }

    async fn finish_webhook(
        &self,
        id: i64,
        outcome: &WebhookOutcome,
        now: Timestamp,
    ) -> Result<()> {
        let outcome = outcome.clone();
        self.writer
            .write(move |ctx| reminders::finish_webhook(ctx.conn, id, &outcome, now))
            .await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    async fn read_log(&self, after: i64, topics: &[Topic], limit: i64) -> Result<LogRead> {
        let topics = topics.to_vec();
        self.readers
            .read_now(move |c| events::read(c, after, &topics, limit))
            .await
    }

    fn recent_events(&self, after: i64, topics: &[Topic], limit: usize) -> Option<TailRead> {
        self.tail.read(after, topics, limit)
    }

    async fn last_event_seq(&self) -> Result<i64> {
        self.readers
            .read_now(|c| {
                let seq: Option<i64> = c
                    .prepare_cached("SELECT MAX(seq) FROM events")?
                    .query_row([], |r| r.get(0))?;
                Ok(seq.unwrap_or(0))
            })
            .await
    }

    async fn count_events_after(&self, after: i64, topics: &[Topic]) -> Result<i64> {
        let topics = topics.to_vec();
        self.readers
            .read(move |c| events::count_after(c, after, &topics))
            .await
    }

    async fn oldest_event_after(&self, after: i64, topics: &[Topic]) -> Result<Option<Timestamp>> {
        let topics = topics.to_vec();
        self.readers
            .read_now(move |c| events::oldest_after(c, after, &topics))
            .await
    }

    /// One writer job per chunk ([`events::PRUNE_CHUNK`]), each queued after the last has
    /// committed, so other writes take turns with the trim instead of waiting for all of it.
    async fn prune_events(&self, before: Timestamp, consumers: &[&str]) -> Result<u64> {
        let consumers: Arc<Vec<String>> =
            Arc::new(consumers.iter().map(|&c| c.to_owned()).collect());
        let mut deleted = 0;
        loop {
            let consumers = Arc::clone(&consumers);
            let (chunk, more) = self
                .writer
                .write(move |ctx| {
                    let names: Vec<&str> = consumers.iter().map(String::as_str).collect();
                    events::prune_chunk(ctx.conn, before, &names)
                })
                .await?;
            deleted += chunk;
            if !more {
                return Ok(deleted);
            }
        }
    }

    async fn consumer_position(&self, consumer: &str) -> Result<i64> {
        let consumer = consumer.to_owned();
        self.readers
            .read_now(move |c| events::position(c, &consumer))
            .await
    }

    async fn commit_position(&self, consumer: &str, position: i64) -> Result<()> {
        let consumer = consumer.to_owned();
        self.writer
            .write(move |ctx| events::commit_position(ctx.conn, &consumer, position))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::database_path;

    #[test]
    fn urls_name_their_file_and_memory_is_refused() {
        assert_eq!(
            database_path("sqlite:///var/lib/todo/todo.db").unwrap(),
            std::path::PathBuf::from("/var/lib/todo/todo.db")
        );
        assert_eq!(
            database_path("sqlite://./data/todo.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("./data/todo.db")
        );
        assert_eq!(
            database_path("sqlite:todo.db").unwrap(),
            std::path::PathBuf::from("todo.db")
        );
        for bad in [
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "sqlite://",
            "mysql://x",
        ] {
            assert!(database_path(bad).is_err(), "{bad} should be refused");
        }
    }
}
