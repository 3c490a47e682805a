//! The SQLite store: the embedded default.
//!
//! One writer connection and a few read-only connections. SQLite allows one writer at a
//! time anyway; funnelling writes through one connection queues them on its lock instead of
//! failing with `SQLITE_BUSY`, while WAL lets reads run beside the writer.
//! `synchronous=NORMAL` in WAL mode makes a commit survive a process crash (`kill -9`);
//! `TODO_SQLITE_SYNCHRONOUS=full` extends that to power loss at some cost in write speed.

mod conn;
mod events;
mod reminders;
mod rows;
mod tasks;
mod tx;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use todo_domain::reminder::Notification;
use todo_domain::time::Timestamp;
use todo_domain::{AuditEntry, CloudEvent, Reminder, ReminderPlan, Task, TaskQuery, Topic};
use uuid::Uuid;

use crate::{
    AuditQuery, PageQuery, Result, Store, StoreError, StoredEvent, WebhookDelivery, WebhookOutcome,
};
use conn::{Conn, Readers};
use tx::WriteTx;

/// Connection options for [`SqliteStore::connect_with`].
pub use sqlx::sqlite::SqliteConnectOptions as ConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: Conn,
    readers: Readers,
    appended: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies migrations.
    /// `TODO_SQLITE_SYNCHRONOUS` (`normal` or `full`) sets the commit durability.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Unsupported(
                "an in-memory SQLite database would vanish with its connection; use sqlite://<file>".into(),
            ));
        }
        let synchronous = match std::env::var("TODO_SQLITE_SYNCHRONOUS").as_deref() {
            Err(_) | Ok("normal") => SqliteSynchronous::Normal,
            Ok("full") => SqliteSynchronous::Full,
            Ok(other) => {
                return Err(StoreError::Unsupported(format!(
                    "TODO_SQLITE_SYNCHRONOUS must be normal or full (got {other:?})"
                )));
            }
        };
        let options = SqliteConnectOptions::from_str(url)?.synchronous(synchronous);
        Self::connect_with(options).await
    }

    /// Opens the database described by `options` (WAL, busy timeout and cache settings are
    /// added) and applies migrations.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let writer = Conn::new(options.clone());
        MIGRATOR.run_direct(&mut *writer.get().await?).await?;
        let readers = Readers::new(options, 4);
        let (appended, _) = tokio::sync::watch::channel(0);
        Ok(SqliteStore {
            writer,
            readers,
            appended: std::sync::Arc::new(appended),
        })
    }

    fn signal_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.readers.get().await?)
            .await?;
        Ok(())
    }

    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run_direct(&mut *self.writer.get().await?).await?;
        Ok(())
    }

    async fn insert_task(&self, task: &Task, event: &CloudEvent) -> Result<()> {
        // The hottest write: the whole transaction goes to SQLite's thread as one batch,
        // one hand-off instead of four (BEGIN, two INSERTs, COMMIT).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "BEGIN IMMEDIATE; {}; {}; COMMIT",
                tasks::INSERT,
                events::APPEND
            )
        });
        let query =
            events::bind_append(tasks::bind_insert(sqlx::query(SQL.as_str()), task), event)?;
        let mut batch = WriteTx::batch(&self.writer).await?;
        query.execute(&mut *batch).await?;
        batch.finished();
        self.signal_append();
        Ok(())
    }

    async fn get_task(&self, user_id: &str, id: Uuid) -> Result<Option<Task>> {
        tasks::get(&mut *self.readers.get().await?, user_id, id).await
    }

    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        if let Err(e) = tasks::update(&mut tx, task, expected_version).await {
            tx.rollback().await;
            return Err(e);
        }
        events::append(&mut tx, event).await?;
        tx.commit().await?;
        self.signal_append();
        Ok(())
    }

    async fn delete_task(
        &self,
        user_id: &str,
        id: Uuid,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        if let Err(e) = tasks::delete(&mut tx, user_id, id, expected_version).await {
            tx.rollback().await;
            return Err(e);
        }
        events::append(&mut tx, event).await?;
        tx.commit().await?;
        self.signal_append();
        Ok(())
    }

    async fn list_tasks(&self, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>> {
        tasks::list(&mut *self.readers.get().await?, user_id, query).await
    }

    async fn spawn_next_occurrence(
        &self,
        parent_id: Uuid,
        next: &Task,
        event: &CloudEvent,
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        let claimed = sqlx::query(
            "INSERT INTO recurrence_spawns (parent_task_id, child_task_id, created_at) VALUES (?, ?, ?)
             ON CONFLICT (parent_task_id) DO NOTHING",
        )
        .bind(parent_id.to_string())
        .bind(next.id.to_string())
        .bind(next.created_at.timestamp_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if claimed {
            tasks::insert(&mut tx, next).await?;
            events::append(&mut tx, event).await?;
        }
        tx.commit().await?;
        if claimed {
            self.signal_append();
        }
        Ok(claimed)
    }

    async fn read_events(
        &self,
        after: i64,
        topics: &[Topic],
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        events::read(&mut *self.readers.get().await?, after, topics, limit).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&mut *self.readers.get().await?)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn count_events_after(&self, after: i64, topics: &[Topic]) -> Result<i64> {
        events::count_after(&mut *self.readers.get().await?, after, topics).await
    }

    async fn prune_events(&self, before: Timestamp, consumers: &[&str]) -> Result<u64> {
        events::prune(&mut *self.writer.get().await?, before, consumers).await
    }

    async fn consumer_position(&self, consumer: &str) -> Result<i64> {
        // Read through the writer: a consumer resuming must see its own latest commit.
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM consumer_positions WHERE consumer = ?")
                .bind(consumer)
                .fetch_optional(&mut *self.writer.get().await?)
                .await?;
        Ok(position.unwrap_or(0))
    }

    async fn commit_position(&self, consumer: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO consumer_positions (consumer, position, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (consumer) DO UPDATE SET position = MAX(position, excluded.position), updated_at = excluded.updated_at",
        )
        .bind(consumer)
        .bind(position)
        .bind(todo_domain::time::now().timestamp_micros())
        .execute(&mut *self.writer.get().await?)
        .await?;
        Ok(())
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<u64> {
        events::record_audit(&mut *self.writer.get().await?, entries).await
    }

    async fn list_audit(
        &self,
        user_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        events::list_audit(&mut *self.readers.get().await?, user_id, query).await
    }

    async fn plan_reminder(
        &self,
        task_id: Uuid,
        user_id: &str,
        task_version: i64,
        plan: &ReminderPlan,
        now: Timestamp,
        traceparent: Option<String>,
    ) -> Result<Option<Reminder>> {
        let changed =
            reminders::plan(self, task_id, user_id, task_version, plan, now, traceparent).await?;
        if changed.is_some() {
            self.signal_append();
        }
        Ok(changed)
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>> {
        reminders::next_at(&mut *self.writer.get().await?).await
    }

    async fn deliver_due_reminders(
        &self,
        now: Timestamp,
        limit: i64,
        webhook: bool,
    ) -> Result<Vec<Reminder>> {
        let delivered = reminders::deliver_due(&self.writer, now, limit, webhook).await?;
        if !delivered.is_empty() {
            self.signal_append();
        }
        Ok(delivered)
    }

    async fn list_reminders(&self, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>> {
        reminders::list(&mut *self.readers.get().await?, user_id, query).await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        query: &PageQuery,
    ) -> Result<Vec<(i64, Notification)>> {
        reminders::list_notifications(&mut *self.readers.get().await?, user_id, query).await
    }

    async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        reminders::claim_webhooks(&self.writer, now, lease_until, limit).await
    }

    async fn next_webhook_at(&self) -> Result<Option<Timestamp>> {
        reminders::next_webhook_at(&mut *self.writer.get().await?).await
    }

    async fn finish_webhook(
        &self,
        id: i64,
        outcome: &WebhookOutcome,
        now: Timestamp,
    ) -> Result<()> {
        reminders::finish_webhook(&mut *self.writer.get().await?, id, outcome, now).await
    }
}
