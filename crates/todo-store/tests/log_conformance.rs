//! Log conformance: what every [`EventLog`] must do, whatever the engine. Events reach the
//! log only through [`Store`] writes, so each scenario gets both handles on one database,
//! as [`todo_store::connect`] gives them.
//!
//! Run like `conformance.rs`: each scenario is written once, and [`log_conformance_tests!`]
//! makes one thin test per scenario on a fresh database for each backend, named
//! `sqlite::<scenario>` and `postgres::<scenario>`. Positions differ between engines
//! (SQLite counts up from 1, PostgreSQL derives them from transaction ids), so scenarios
//! compare positions only with positions the log handed out.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use todo_domain::event::EventType;
use todo_domain::time::{self, Timestamp};
use todo_domain::{CloudEvent, Topic};
use todo_store::{EventLog, Store};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::*;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Inserts `n` tasks for alice and returns their events' positions, oldest first.
async fn appended_tasks(store: &dyn Store, log: &dyn EventLog, n: usize) -> Vec<i64> {
    let start = last_seq(log).await;
    for i in 0..n {
        insert(store, &task("alice", &format!("t{i}"))).await;
    }
    let positions: Vec<i64> = events_after(log, start, Topic::TaskEvents)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(positions.len(), n, "one event per insert");
    positions
}

/// When a write was made: between `from` and `to`, both read from the clock around it.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Timestamp,
    to: Timestamp,
}

impl Window {
    fn holds(&self, at: Option<Timestamp>) -> bool {
        at.is_some_and(|at| self.from <= at && at <= self.to)
    }
}

/// Runs `write` and returns the clock window it ran in. Waits first until the clock has
/// moved past `after`, so windows taken one after another never share a microsecond and a
/// time falls in one of them at most.
async fn timed_write(after: Option<Window>, write: impl AsyncFnOnce()) -> Window {
    if let Some(previous) = after {
        let deadline = Instant::now() + StdDuration::from_secs(1);
        while time::now() <= previous.to {
            assert!(Instant::now() < deadline, "the clock stands still");
            tokio::time::sleep(StdDuration::from_millis(1)).await;
        }
    }
    let from = time::now();
    write().await;
    Window {
        from,
        to: time::now(),
    }
}

// ---------------------------------------------------------------------------------------
// Reading and waking
// ---------------------------------------------------------------------------------------

/// Reads and counts start after the position given, stop at the limit, and keep to their
/// topics.
pub async fn reads_and_counts_start_after_a_position_stop_at_the_limit_and_keep_to_their_topics(
    store: &dyn Store,
    log: &dyn EventLog,
) {
    let start = last_seq(log).await;
    let positions = appended_tasks(store, log, 5).await;
    let events = events_after(log, start, Topic::TaskEvents).await;
    assert_eq!(last_seq(log).await, positions[4]);
    let count = async |after: i64, topics: &[Topic]| {
        log.count_events_after(after, topics)
            .await
            .expect("count_events_after")
    };
    assert_eq!(count(start, &[Topic::TaskEvents]).await, 5);
    assert_eq!(
        count(positions[1], &[Topic::TaskEvents, Topic::Reminders]).await,
        3
    );
    assert_eq!(count(start, &[Topic::Reminders]).await, 0);
    assert_eq!(count(positions[4], &[Topic::TaskEvents]).await, 0);

    assert!(
        events_after(log, start, Topic::Reminders).await.is_empty(),
        "task events are not reminders"
    );
    let rest = log
        .read_events(positions[1], &[Topic::TaskEvents, Topic::Reminders], 2)
        .await
        .expect("read_events");
    assert_eq!(
        rest,
        events[2..4].to_vec(),
        "read_events starts after `after` and stops at `limit`"
    );
    assert!(
        events_after(log, positions[4], Topic::TaskEvents)
            .await
            .is_empty()
    );
}

/// In-process consumers are woken by every write that appended to the outbox.
pub async fn every_append_bumps_the_in_process_signal(store: &dyn Store, log: &dyn EventLog) {
    let mut signal = log.appended();
    let mut bumped = || {
        let changed = signal
            .has_changed()
            .expect("the log keeps its sender alive");
        signal.borrow_and_update();
        changed
    };
    assert!(!bumped(), "nothing was appended yet");

    let v1 = task("alice", "Signal");
    insert(store, &v1).await;
    assert!(bumped(), "after insert_task");
    let v2 = edited(&v1, |t| t.title = "Signal, renamed".into());
    store
        .update_task(&v2, 1, &event(EventType::TaskUpdated, &v2))
        .await
        .expect("update");
    assert!(bumped(), "after update_task");
    store
        .delete_task("alice", v1.id, 2, &event(EventType::TaskDeleted, &v2))
        .await
        .expect("delete");
    assert!(bumped(), "after delete_task");

    let mut child = task("alice", "Next");
    child.parent_task_id = Some(v1.id);
    assert!(
        store
            .spawn_next_occurrence(v1.id, &child, &event(EventType::TaskCreated, &child))
            .await
            .expect("spawn")
    );
    assert!(bumped(), "after spawn_next_occurrence");

    let remind_at = t0() + Duration::hours(1);
    plan(store, child.id, "alice", 1, &schedule(remind_at, "Next")).await;
    assert!(bumped(), "after plan_reminder scheduled a reminder");
    assert_eq!(
        store
            .deliver_due_reminders(remind_at, 10, false)
            .await
            .expect("deliver")
            .len(),
        1
    );
    assert!(bumped(), "after deliver_due_reminders");
    get(store, "alice", child.id).await;
    events_after(log, 0, Topic::TaskEvents).await;
    store
        .list_tasks("alice", &all_tasks(10))
        .await
        .expect("list_tasks");
    assert!(!bumped(), "reads never bump");
}

/// The first event after a position on the topics asked for gives its append time; past
/// the end, or on topics with nothing newer, there is none.
pub async fn the_oldest_event_after_a_position_is_the_next_one_on_its_topics(
    store: &dyn Store,
    log: &dyn EventLog,
) {
    let oldest = async |after: i64, topics: &[Topic]| {
        log.oldest_event_after(after, topics)
            .await
            .expect("oldest_event_after")
    };
    let both = [Topic::TaskEvents, Topic::Reminders];
    let start = last_seq(log).await;
    assert_eq!(oldest(start, &both).await, None, "an empty log has none");

    // A task event, a reminder event, then another task event, each in a window of its own.
    let first = task("alice", "First");
    let first_at = timed_write(None, async || {
        insert(store, &first).await;
    })
    .await;
    let reminder_at = timed_write(Some(first_at), async || {
        plan(
            store,
            first.id,
            "alice",
            1,
            &schedule(t0() + Duration::hours(1), "First"),
        )
        .await
        .expect("a reminder scheduled");
    })
    .await;
    let third_at = timed_write(Some(reminder_at), async || {
        insert(store, &task("alice", "Third")).await;
    })
    .await;
    let tasks = events_after(log, start, Topic::TaskEvents).await;
    let reminders = events_after(log, start, Topic::Reminders).await;
    assert_eq!((tasks.len(), reminders.len()), (2, 1));
    let (first_pos, reminder_pos, third_pos) = (tasks[0].seq, reminders[0].seq, tasks[1].seq);
    assert!(first_pos < reminder_pos && reminder_pos < third_pos);

    assert!(first_at.holds(oldest(start, &both).await));
    assert!(first_at.holds(oldest(start, &[Topic::TaskEvents]).await));
    assert!(
        reminder_at.holds(oldest(start, &[Topic::Reminders]).await),
        "an event on another topic is passed over"
    );
    assert!(reminder_at.holds(oldest(first_pos, &both).await));
    assert!(
        third_at.holds(oldest(first_pos, &[Topic::TaskEvents]).await),
        "after a position, on the topics asked for"
    );
    assert!(third_at.holds(oldest(reminder_pos, &both).await));
    assert_eq!(
        oldest(reminder_pos, &[Topic::Reminders]).await,
        None,
        "nothing newer on this topic, though there is on another"
    );
    assert_eq!(oldest(third_pos, &both).await, None, "past the end");
    assert_eq!(oldest(start, &[Topic::TaskUpdates]).await, None);
    assert_eq!(oldest(start, &[]).await, None, "no topic, no event");
}

// ---------------------------------------------------------------------------------------
// Consumer positions and trimming
// ---------------------------------------------------------------------------------------

/// Positions start at zero, and a late or repeated commit never rewinds them.
pub async fn a_consumer_position_starts_at_zero_and_never_moves_backwards(
    _store: &dyn Store,
    log: &dyn EventLog,
) {
    assert_eq!(log.consumer_position("audit").await.expect("position"), 0);
    log.commit_position("audit", 5).await.expect("commit");
    assert_eq!(log.consumer_position("audit").await.expect("position"), 5);
    log.commit_position("audit", 3).await.expect("commit");
    assert_eq!(
        log.consumer_position("audit").await.expect("position"),
        5,
        "a position never goes backwards"
    );
    log.commit_position("audit", 5).await.expect("commit");
    log.commit_position("audit", 8).await.expect("commit");
    assert_eq!(log.consumer_position("audit").await.expect("position"), 8);
    assert_eq!(
        log.consumer_position("sync").await.expect("position"),
        0,
        "consumers are independent"
    );
}

/// A committed position is durable: a second handle on the same database reads it.
pub async fn a_committed_position_is_seen_by_a_second_connection(
    first: &dyn EventLog,
    second: &dyn EventLog,
) {
    first
        .commit_position("recurring", 42)
        .await
        .expect("commit");
    assert_eq!(
        second
            .consumer_position("recurring")
            .await
            .expect("position"),
        42
    );
    second
        .commit_position("recurring", 7)
        .await
        .expect("commit");
    assert_eq!(
        first
            .consumer_position("recurring")
            .await
            .expect("position"),
        42
    );
}

/// Trimming waits for every consumer named and keeps whatever any of them still needs, and
/// anything newer than the cut-off time.
pub async fn pruning_waits_for_every_consumer_and_keeps_what_any_still_needs(
    store: &dyn Store,
    log: &dyn EventLog,
) {
    let positions = appended_tasks(store, log, 10).await;
    let later = time::now() + Duration::seconds(1);
    let consumers = ["audit", "sync"];
    let prune = async |before: Timestamp| {
        log.prune_events(before, &consumers)
            .await
            .expect("prune_events")
    };

    log.commit_position("audit", positions[9])
        .await
        .expect("commit");
    assert_eq!(
        prune(later).await,
        0,
        "a consumer that never committed needs everything"
    );

    log.commit_position("sync", positions[3])
        .await
        .expect("commit");
    assert_eq!(prune(later).await, 4, "only what both have passed goes");
    let left = events_after(log, 0, Topic::TaskEvents).await;
    assert_eq!(left.first().map(|e| e.seq), Some(positions[4]));
    assert_eq!(left.len(), 6);

    log.commit_position("sync", positions[9])
        .await
        .expect("commit");
    let earlier = time::now() - Duration::hours(1);
    assert_eq!(
        prune(earlier).await,
        0,
        "nothing newer than the cut-off goes, whatever the positions"
    );
    assert_eq!(
        log.prune_events(later, &[]).await.expect("prune_events"),
        0,
        "no consumer named, nothing goes"
    );
}

/// Commits `audit` (the only consumer named) at `position` and trims everything it has
/// passed, whatever its age; answers how many events went.
async fn trim_past(log: &dyn EventLog, position: i64) -> u64 {
    log.commit_position("audit", position)
        .await
        .expect("commit");
    log.prune_events(time::now() + Duration::seconds(1), &["audit"])
        .await
        .expect("prune_events")
}

/// A trim takes every event that is due however many there are (the SQLite store deletes
/// them a chunk of 1,000 per transaction), oldest first, and keeps those still needed.
pub async fn pruning_takes_every_due_event_however_many(store: &dyn Store, log: &dyn EventLog) {
    let all = async || {
        let mut seqs = Vec::new();
        loop {
            let after = seqs.last().copied().unwrap_or(0);
            let page = events_after(log, after, Topic::TaskEvents).await;
            if page.is_empty() {
                return seqs;
            }
            seqs.extend(page.iter().map(|e| e.seq));
        }
    };
    for i in 0..2_345 {
        insert(store, &task("alice", &format!("t{i}"))).await;
    }
    let positions = all().await;
    assert_eq!(positions.len(), 2_345);
    let keep = 5;
    let passed = positions.len() - keep;
    assert_eq!(trim_past(log, positions[passed - 1]).await, passed as u64);
    assert_eq!(
        all().await,
        positions[passed..],
        "only what the consumer still needs is left"
    );
}

/// A position is never handed out twice, even once every event before it was trimmed.
pub async fn positions_are_never_reused_after_pruning(store: &dyn Store, log: &dyn EventLog) {
    let positions = appended_tasks(store, log, 3).await;
    assert_eq!(trim_past(log, positions[2]).await, 3);
    let after: CloudEvent = insert(store, &task("alice", "after")).await;
    let newer = events_after(log, positions[2], Topic::TaskEvents).await;
    assert_eq!(newer.len(), 1);
    assert_eq!(*newer[0].event, after);
    assert_eq!(last_seq(log).await, newer[0].seq);
}

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// One test per scenario, each on its own fresh database from `$fresh_database`, an
/// `async fn() -> (String, impl Sized)` giving a `DATABASE_URL` and a guard to keep alive.
macro_rules! log_conformance_tests {
    (@each $fresh_database:path; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (url, _guard) = $fresh_database().await;
                let backend = todo_store::connect(&url).await.expect("connect");
                super::$scenario(&*backend.store, &*backend.log).await;
            }
        )*
    };
    ($fresh_database:path) => {
        log_conformance_tests!(@each $fresh_database;
            reads_and_counts_start_after_a_position_stop_at_the_limit_and_keep_to_their_topics,
            every_append_bumps_the_in_process_signal,
            the_oldest_event_after_a_position_is_the_next_one_on_its_topics,
            a_consumer_position_starts_at_zero_and_never_moves_backwards,
            pruning_waits_for_every_consumer_and_keeps_what_any_still_needs,
            positions_are_never_reused_after_pruning,
            pruning_takes_every_due_event_however_many,
        );

        #[tokio::test]
        async fn a_committed_position_is_seen_by_a_second_connection() {
            let (url, _guard) = $fresh_database().await;
            let first = todo_store::connect(&url).await.expect("connect");
            let second = todo_store::connect(&url).await.expect("connect again");
            super::a_committed_position_is_seen_by_a_second_connection(&*first.log, &*second.log)
                .await;
        }
    };
}

mod sqlite {
    use tempfile::TempDir;

    /// A new database file in its own directory, removed when the guard drops.
    async fn fresh_database() -> (String, TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        (format!("sqlite://{}/t.db", dir.path().display()), dir)
    }

    log_conformance_tests!(fresh_database);
}

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg_support;

/// The same scenarios on PostgreSQL, each in a schema of its own, dropped afterwards.
#[cfg(feature = "postgres")]
mod postgres {
    use super::pg_support::fresh_database;

    log_conformance_tests!(fresh_database);
}
