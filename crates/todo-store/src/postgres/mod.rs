//! The PostgreSQL store: tokio-postgres connections in a deadpool pool.
//!
//! Every method takes a connection from the pool for its own work and returns it. Task
//! writes are single statements that also append their event (one round trip, atomic on
//! their own); reminder planning and delivery are explicit transactions with row locks
//! ([`reminders`]). How the outbox is read without skipping an event whose transaction
//! committed late is explained in [`events`].

mod dead_letters;
mod errors;
mod events;
mod lead;
mod migrate;
mod notify;
mod reminders;
mod rows;
mod tasks;
mod tls;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use todo_domain::reminder::Notification;
use todo_domain::time::Timestamp;
use todo_domain::{AuditEntry, CloudEvent, Reminder, ReminderPlan, Task, TaskQuery, Topic};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::{
    AuditQuery, DeadLetter, EventLog, LogRead, PageQuery, Planned, PoolState, Result, Store,
    StoreError, StoredDeadLetter, TaskJson, TaskPageJson, WebhookDelivery, WebhookOutcome,
};
use events::OutboxRow;
use tasks::TaskParams;

/// Connections in the pool when `TODO_PG_POOL_SIZE` is unset.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long opening a connection may take (unless the URL sets `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free connection before getting `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// PostgreSQL-backed [`Store`] and [`EventLog`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    appended: Arc<tokio::sync::watch::Sender<u64>>,
    /// Tells other processes, and hears from them, that events were appended.
    cross: Arc<notify::CrossProcess>,
    /// For connections outside the pool (leads).
    config: tls::Connector,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("pool_size", &status.max_size)
            .field("connections", &status.size)
            .finish_non_exhaustive()
    }
}

/// The pool size from `TODO_PG_POOL_SIZE` (1–1024), else [`DEFAULT_POOL_SIZE`].
fn pool_size() -> Result<usize> {
    match std::env::var("TODO_PG_POOL_SIZE") {
        Err(_) => Ok(DEFAULT_POOL_SIZE),
        Ok(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(StoreError::Unsupported(format!(
                "TODO_PG_POOL_SIZE must be a whole number from 1 to 1024 (got {raw:?})"
            ))),
        },
    }
}

/// Applies pending migrations, logging how many there were.
async fn migrate_logged(client: &mut deadpool_postgres::Client) -> Result<()> {
    let applied = migrate::to_latest(client).await?;
    if applied > 0 {
        tracing::info!(
            applied,
            latest = migrate::LATEST,
            "applied PostgreSQL migrations"
        );
    }
    Ok(())
}

impl PostgresStore {
    /// Opens a pool on the database at `url` (`postgres://` or `postgresql://`, as libpq
    /// takes them; `?options=-c search_path=...` picks the schema) and applies migrations.
    /// `TODO_PG_POOL_SIZE` sets the pool size.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_pool_size(url, pool_size()?).await
    }

    /// [`PostgresStore::connect`] with a pool of `size` connections.
    pub async fn connect_with_pool_size(url: &str, size: usize) -> Result<Self> {
        let mut connector = tls::Connector::from_url(url)?;
        let config = &mut connector.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("todo");
        }
        let manager = Manager::from_config(
            connector.config.clone(),
            connector.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unsupported(format!("cannot build the pool: {e}")))?;
        let schema = {
            let mut client = pool.get().await?;
            migrate_logged(&mut client).await?;
            let schema: Option<String> = client
                .query_one("SELECT current_schema()", &[])
                .await?
                .get(0);
            schema.unwrap_or_default()
        };
        let appended = Arc::new(tokio::sync::watch::channel(0u64).0);
        let cross = notify::CrossProcess::start(
            connector.clone(),
            pool.clone(),
            schema,
            Uuid::new_v4().simple().to_string(),
            Arc::clone(&appended),
        );
        Ok(PostgresStore {
            pool,
            appended,
            cross: Arc::new(cross),
            config: connector,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }

    async fn apply_migrations(&self) -> Result<()> {
        migrate_logged(&mut self.client().await?).await
    }

    /// Wakes in-process consumers, and soon those of other processes: this store committed
    /// events.
    fn bump(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        self.cross.ping();
    }

    /// Runs a single statement that appends at most one event and returns its position;
    /// wakes consumers if it did. Returns the position, if an event was appended.
    async fn write_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<i64>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, params).await?;
        let pos = rows
            .first()
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?;
        if pos.is_some() {
            self.bump();
        }
        Ok(pos)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolState> {
        let status = self.pool.status();
        vec![PoolState {
            pool: "postgres",
            size: status.size as i64,
            idle: status.available as i64,
            waiting: status.waiting as i64,
        }]
    }

    async fn try_lead(&self, name: &str) -> Result<Option<crate::Leadership>> {
        lead::try_lead(&self.config, name).await
    }

    async fn migrate(&self) -> Result<()> {
        self.apply_migrations().await
    }

    async fn insert_task(&self, task: &Task, event: &CloudEvent) -> Result<()> {
        let row = OutboxRow::new(event)?;
        let task_params = TaskParams::new(task);
        let event_params = row.params(&0);
        let params = tasks::insert_params(&event_params, &task_params);
        self.write_one(&tasks::INSERT, &params).await?;
        Ok(())
    }

    async fn get_task(&self, user_id: &str, id: Uuid) -> Result<Option<Task>> {
        tasks::get(&self.client().await?, user_id, id).await
    }

    async fn get_task_json(&self, user_id: &str, id: Uuid) -> Result<Option<TaskJson>> {
        tasks::get_json(&self.client().await?, user_id, id).await
    }

    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let row = OutboxRow::new(event)?;
        let task_params = TaskParams::new(task);
        let event_params = row.params(&0);
        let params = tasks::update_params(&event_params, &task_params, &expected_version);
        match self.write_one(&tasks::UPDATE, &params).await? {
            Some(_) => Ok(()),
            None => Err(tasks::miss(&self.client().await?, &task.user_id, task.id).await),
        }
    }

    async fn delete_task(
        &self,
        user_id: &str,
        id: Uuid,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<()> {
        let row = OutboxRow::new(event)?;
        let event_params = row.params(&0);
        let user_id = user_id.to_owned();
        let params: Vec<&(dyn ToSql + Sync)> = event_params
            .iter()
            .copied()
            .chain([&id as &(dyn ToSql + Sync), &user_id, &expected_version])
            .collect();
        match self.write_one(&tasks::DELETE, &params).await? {
            Some(_) => Ok(()),
            None => Err(tasks::miss(&self.client().await?, &user_id, id).await),
        }
    }

    async fn list_tasks(&self, user_id: &str, query: &TaskQuery) -> Result<Vec<Task>> {
        tasks::list(&self.client().await?, user_id, query).await
    }

    async fn list_tasks_json(&self, user_id: &str, query: &TaskQuery) -> Result<TaskPageJson> {
        tasks::list_json(&self.client().await?, user_id, query).await
    }

    async fn spawn_next_occurrence(
        &self,
        parent_id: Uuid,
        next: &Task,
        event: &CloudEvent,
    ) -> Result<bool> {
        let row = OutboxRow::new(event)?;
        let task_params = TaskParams::new(next);
        let event_params = row.params(&0);
        let mut params = tasks::insert_params(&event_params, &task_params);
        params.push(&parent_id);
        Ok(self.write_one(&tasks::SPAWN, &params).await?.is_some())
    }

    async fn record_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        dead_letters::record(&tx, letters).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<StoredDeadLetter>> {
        dead_letters::list(&self.client().await?, limit).await
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<Vec<Uuid>> {
        events::record_audit(&self.client().await?, entries).await
    }

    async fn list_audit(
        &self,
        user_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        events::list_audit(&self.client().await?, user_id, query).await
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
        let mut client = self.client().await?;
        // Most events change no reminder: settle those with a plain read, and lock only
        // for a change, checked again under the lock.
        let seen = reminders::get(&client, task_id).await?;
        if plan
            .apply(seen.as_ref(), task_id, user_id, task_version)
            .is_none()
        {
            return Ok(None);
        }
        let tx = client.transaction().await?;
        let (changed, pos) =
            reminders::plan(&tx, task_id, user_id, task_version, plan, now, traceparent).await?;
        tx.commit().await?;
        if pos.is_some() {
            self.bump();
        }
        Ok(changed.map(|reminder| Planned {
            reminder,
            announced: pos.is_some(),
        }))
    }

    async fn next_reminder_at(&self) -> Result<Option<Timestamp>> {
        reminders::next_at(&self.client().await?).await
    }

    async fn deliver_due_reminders(
        &self,
        now: Timestamp,
        limit: i64,
        webhook: bool,
    ) -> Result<Vec<Reminder>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (delivered, pos) = reminders::deliver_due(&tx, now, limit, webhook).await?;
        tx.commit().await?;
        if pos.is_some() {
            self.bump();
        }
        Ok(delivered)
    }

    async fn list_reminders(&self, user_id: &str, query: &PageQuery) -> Result<Vec<Reminder>> {
        reminders::list(&self.client().await?, user_id, query).await
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        query: &PageQuery,
    ) -> Result<Vec<(i64, Notification)>> {
        reminders::list_notifications(&self.client().await?, user_id, query).await
    }

    async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        reminders::claim_webhooks(&self.client().await?, now, lease_until, limit).await
    }

    async fn next_webhook_at(&self) -> Result<Option<Timestamp>> {
        reminders::next_webhook_at(&self.client().await?).await
    }

    async fn finish_webhook(
        &self,
        id: i64,
        outcome: &WebhookOutcome,
        now: Timestamp,
    ) -> Result<()> {
        reminders::finish_webhook(&self.client().await?, id, outcome, now).await
    }
}

#[async_trait]
impl EventLog for PostgresStore {
    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    async fn read_log(&self, after: i64, topics: &[Topic], limit: i64) -> Result<LogRead> {
        events::read(&self.client().await?, after, topics, limit).await
    }

    async fn last_event_seq(&self) -> Result<i64> {
        events::last_pos(&self.client().await?).await
    }

    async fn count_events_after(&self, after: i64, topics: &[Topic]) -> Result<i64> {
        events::count_after(&self.client().await?, after, topics).await
    }

    async fn oldest_event_after(&self, after: i64, topics: &[Topic]) -> Result<Option<Timestamp>> {
        events::oldest_after(&self.client().await?, after, topics).await
    }

    async fn prune_events(&self, before: Timestamp, consumers: &[&str]) -> Result<u64> {
        events::prune(&self.client().await?, before, consumers).await
    }

    async fn consumer_position(&self, consumer: &str) -> Result<i64> {
        events::position(&self.client().await?, consumer).await
    }

    async fn commit_position(&self, consumer: &str, position: i64) -> Result<()> {
        events::commit_position(&self.client().await?, consumer, position).await
    }
}
