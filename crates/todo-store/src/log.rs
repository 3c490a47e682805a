//! The event log: the outbox read as the bus's durable log, with consumer positions.
//!
//! Both stores keep it in the same database as the tasks (the `events` and
//! `consumer_positions` tables), since a change and its event are written in one
//! transaction; [`Store`](crate::Store) writes to it, [`EventLog`] reads and trims it.

use async_trait::async_trait;
use todo_domain::Topic;
use todo_domain::time::Timestamp;

use crate::{LogRead, Result, StoredEvent, TailRead};

/// The outbox as a log: what the in-process bus reads and where consumers keep their
/// positions. Implementations must pass `tests/log_conformance.rs`.
#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// A signal bumped after every commit that appended to the outbox in this process, so
    /// in-process consumers wake at once instead of polling. A log may also bump it when
    /// another process appended (the PostgreSQL store does, through `LISTEN`/`NOTIFY`).
    fn appended(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The next rows after `after` (exclusive) on any of `topics`, oldest first, at most
    /// `limit`: the events, and apart from them the rows whose payload is not a readable
    /// CloudEvent, so a reader can keep those and move past them.
    async fn read_log(&self, after: i64, topics: &[Topic], limit: i64) -> Result<LogRead>;

    /// Events after `after` (exclusive) on any of `topics`, oldest first, at most `limit`;
    /// a row that is no readable event fails the read ([`EventLog::read_log`] returns it).
    async fn read_events(
        &self,
        after: i64,
        topics: &[Topic],
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        self.read_log(after, topics, limit).await?.into_events()
    }

    /// Events after `after` on `topics` (at most `limit`) from this process's in-memory tail
    /// of the log, without touching the database. `None` when the tail does not hold the
    /// event right after `after` (say, after a restart, or when another process wrote in
    /// between): the caller then reads with [`EventLog::read_events`]. An empty answer means
    /// nothing newer was committed by this process; writers elsewhere are seen only through
    /// `read_events`.
    fn recent_events(&self, after: i64, topics: &[Topic], limit: usize) -> Option<TailRead> {
        let _ = (after, topics, limit);
        None
    }

    /// Sequence number of the newest event (0 when none).
    async fn last_event_seq(&self) -> Result<i64>;

    /// How many events on `topics` come after `after`: a consumer's lag.
    async fn count_events_after(&self, after: i64, topics: &[Topic]) -> Result<i64>;

    /// When the first event on `topics` after `after` (in log order: the next one a reader
    /// at `after` gets) was appended: its `created_at` as stored, `None` when there is no
    /// such event. Like [`EventLog::count_events_after`] it sees every committed event, also
    /// one a PostgreSQL reader still waits for; from a consumer's committed position, it
    /// dates the oldest event the consumer has yet to commit.
    async fn oldest_event_after(&self, after: i64, topics: &[Topic]) -> Result<Option<Timestamp>>;

    /// Deletes events older than `before` that every one of `consumers` has committed past
    /// (nothing, if any of them has never committed). Returns how many were deleted.
    async fn prune_events(&self, before: Timestamp, consumers: &[&str]) -> Result<u64>;

    /// A consumer's committed position (0 before its first commit).
    async fn consumer_position(&self, consumer: &str) -> Result<i64>;

    /// Records that `consumer` has handled every event up to `position`.
    async fn commit_position(&self, consumer: &str, position: i64) -> Result<()>;
}
