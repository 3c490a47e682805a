//! The outbox read scheme against real concurrent transactions on the real server.

use std::collections::HashSet;
use std::time::Duration;

use todo_domain::{CloudEvent, CreateTask, EventType, Task, Topic, time};
use uuid::Uuid;

use super::PostgresStore;
use super::events::{self, OutboxRow};
use crate::{EventLog, Store};

#[path = "../../tests/support/postgres.rs"]
mod support;

const TOPICS: [Topic; 2] = [Topic::TaskEvents, Topic::Reminders];

fn new_task(title: &str) -> (Task, CloudEvent) {
    let task = CreateTask::from_json(&serde_json::json!({ "title": title }))
        .expect("a valid task")
        .into_task(Uuid::now_v7(), "alice", time::now());
    let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
    (task, event)
}

/// Reads everything after `position` one event at a time, as a consumer following
/// positions would, until nothing more is readable.
async fn follow(store: &PostgresStore, position: &mut i64, seen: &mut Vec<CloudEvent>) {
    loop {
        let batch = store
            .read_events(*position, &TOPICS, 1)
            .await
            .expect("read_events");
        let Some(event) = batch.into_iter().next() else {
            return;
        };
        assert!(event.seq > *position, "positions only move forward");
        *position = event.seq;
        seen.push((*event.event).clone());
    }
}

/// Transaction A takes its position first but commits last; B commits in between. A reader
/// must not be shown B while A is open (it would move past A's position and skip A), and
/// once A commits it reads A and then B, each exactly once. B's write is not held up by A.
#[tokio::test]
async fn a_reader_by_position_never_skips_an_event_whose_transaction_commits_late() {
    let schema = support::Schema::create().await;
    let store = PostgresStore::connect(&schema.url())
        .await
        .expect("connect");
    let mut position = store.last_event_seq().await.expect("last_event_seq");
    let mut seen = Vec::new();

    // A: its own connection, an open transaction holding an appended event.
    let mut conn_a = store.pool.get().await.expect("connection A");
    let tx_a = conn_a.transaction().await.expect("begin A");
    let (_, event_a) = new_task("A");
    let pos_a = events::append(&tx_a, &OutboxRow::new(&event_a).expect("row"), 0)
        .await
        .expect("append in A");

    // B: a whole write through the store, on another connection, committed while A is
    // open. It is not held up by A.
    let (task_b, event_b) = new_task("B");
    tokio::time::timeout(Duration::from_secs(2), store.insert_task(&task_b, &event_b))
        .await
        .expect("B commits while A is open")
        .expect("insert_task B");
    assert!(
        store
            .get_task("alice", task_b.id)
            .await
            .expect("get_task")
            .is_some()
    );

    // B is committed and A is not: nothing may be readable, since B's event comes after
    // A's position. (Each read waits a moment for A, then answers with nothing.)
    follow(&store, &mut position, &mut seen).await;
    assert!(seen.is_empty(), "B was shown ahead of open A: {seen:?}");
    assert_eq!(store.last_event_seq().await.expect("last_event_seq"), 0);
    assert_eq!(
        store
            .read_events(0, &TOPICS, 100)
            .await
            .expect("read_events"),
        Vec::new()
    );

    // A reader that is already waiting when A commits gets both at once.
    let reader = store.clone();
    let waiting = tokio::spawn(async move { reader.read_events(0, &TOPICS, 100).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    tx_a.commit().await.expect("commit A");
    let both = waiting.await.expect("reader").expect("read_events");
    assert_eq!(both.len(), 2, "A and B, once A has committed: {both:?}");

    follow(&store, &mut position, &mut seen).await;
    assert_eq!(seen, vec![event_a, event_b], "A then B, each once");
    let log = store
        .read_events(0, &TOPICS, 100)
        .await
        .expect("read_events");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].seq, pos_a);
    assert!(log[0].seq < log[1].seq);
    assert_eq!(
        store.last_event_seq().await.expect("last_event_seq"),
        log[1].seq
    );
}

/// A transaction left open in another database of the same server can never write this
/// database's outbox, so it must not hold reading back (the server-wide oldest transaction,
/// `pg_snapshot_xmin`, would hold it back until that transaction ends).
#[tokio::test]
async fn a_transaction_open_in_another_database_does_not_hold_back_reading() {
    // A database of its own: no other test's transaction in it can hold reading back.
    let database = support::Database::create().await;
    let store = PostgresStore::connect(&database.url())
        .await
        .expect("connect");

    // Another database of the same server (the tests' own), with a transaction that has
    // taken an id.
    let (mut other, connection) =
        tokio_postgres::connect(&support::server_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
    tokio::spawn(connection);
    let open = other.transaction().await.expect("begin");
    open.query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .expect("take a transaction id");

    let (task, event) = new_task("while another database is busy");
    store.insert_task(&task, &event).await.expect("insert_task");
    // The other database's transaction stays open throughout; the deadline only allows for
    // a slow machine (a read held back waits 1 s, then answers with nothing).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let read = loop {
        let batch = store
            .read_events(0, &TOPICS, 10)
            .await
            .expect("read_events");
        if !batch.is_empty() || std::time::Instant::now() > deadline {
            break batch;
        }
    };
    assert_eq!(
        read.iter().map(|e| (*e.event).clone()).collect::<Vec<_>>(),
        vec![event],
        "the event is readable while the other database's transaction is open"
    );
    assert_eq!(
        store.last_event_seq().await.expect("last_event_seq"),
        read[0].seq
    );
    open.rollback().await.expect("rollback");
    drop(store);
}

/// Many writers whose transactions overlap and commit in any order, and one reader
/// following positions all along: it sees every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_event_of_overlapping_writers_exactly_once() {
    const WRITERS: usize = 4;
    const EACH: usize = 30;
    let schema = support::Schema::create().await;
    let store = PostgresStore::connect_with_pool_size(&schema.url(), WRITERS + 2)
        .await
        .expect("connect");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let mut conn = store.pool.get().await.expect("connection");
                let tx = conn.transaction().await.expect("begin");
                let (_, event) = new_task(&format!("w{w}-{i}"));
                events::append(&tx, &OutboxRow::new(&event).expect("row"), 0)
                    .await
                    .expect("append");
                // Hold the transaction open for a while, so commits interleave.
                tokio::time::sleep(Duration::from_micros(((w * 7 + i * 13) % 5) as u64 * 700))
                    .await;
                tx.commit().await.expect("commit");
                ids.push(event.id);
            }
            ids
        }));
    }
    let mut position = 0;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < WRITERS * EACH {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower stalled at {} events",
            seen.len()
        );
        follow(&store, &mut position, &mut seen).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.expect("writer"));
    }
    let ids: Vec<Uuid> = seen.iter().map(|e| e.id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was read twice");
    assert_eq!(unique, written, "every written event was read");
}

/// A row whose payload is no CloudEvent is handed out as unreadable, in order, by
/// `read_log`, and the rows after it are read; `read_events` refuses it.
#[tokio::test]
async fn a_row_that_is_no_cloudevent_is_read_as_unreadable_and_does_not_hide_later_rows() {
    let schema = support::Schema::create().await;
    let store = PostgresStore::connect(&schema.url())
        .await
        .expect("connect");
    let start = store.last_event_seq().await.expect("last_event_seq");
    let (bad, bad_event) = new_task("to be spoilt");
    store.insert_task(&bad, &bad_event).await.expect("insert");
    let (good, good_event) = new_task("after");
    store.insert_task(&good, &good_event).await.expect("insert");
    let client = store.pool.get().await.expect("connection");
    client
        .execute(
            "UPDATE events SET payload = '{\"id\": \"x\", \"type\": 7}' WHERE id = $1",
            &[&bad_event.id],
        )
        .await
        .expect("spoil the row");

    // Other tests' open transactions on the server may hold the read horizon back for a
    // while (a read then answers only what is final): read until both rows are there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let read = loop {
        let read = store.read_log(start, &TOPICS, 10).await.expect("read_log");
        if read.events.len() + read.unreadable.len() >= 2 || std::time::Instant::now() > deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(read.unreadable.len(), 1, "{read:?}");
    let spoilt = &read.unreadable[0];
    assert_eq!(spoilt.topic, "task-events");
    assert_eq!(spoilt.key, "alice");
    assert!(spoilt.payload.contains("\"type\""), "{spoilt:?}");
    assert!(spoilt.error.contains("not a CloudEvent"), "{spoilt:?}");
    assert_eq!(read.events.len(), 1, "the row after it is read");
    assert_eq!(read.events[0].event.id, good_event.id);
    assert!(spoilt.seq < read.events[0].seq, "in log order");
    assert_eq!(read.last_seq(), Some(read.events[0].seq));
    let strict = store.read_events(start, &TOPICS, 10).await;
    assert!(
        matches!(strict, Err(crate::StoreError::Corrupt(_))),
        "{strict:?}"
    );
}
