//! The write-ahead log is copied into the database file in the background: the writer
//! never checkpoints itself, so this is all that keeps the log from growing for ever.

use std::time::{Duration, Instant};

use todo_domain::{CloudEvent, CreateTask, EventType, time};
use uuid::Uuid;

#[tokio::test]
async fn committed_pages_reach_the_database_file_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = todo_store::connect(&url).await.unwrap().store;
    let db = dir.path().join("t.db");
    let before = std::fs::metadata(&db).unwrap().len();

    for i in 0..300 {
        let task = CreateTask::from_json(
            &serde_json::json!({"title": format!("t{i}"), "description": "x".repeat(1900)}),
        )
        .unwrap()
        .into_task(Uuid::now_v7(), "alice", time::now());
        let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
        store.insert_task(&task, &event).await.unwrap();
    }

    // 300 tasks of about 2 KB, each also in its event: well over 1 MB of pages.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut size = before;
    while Instant::now() < deadline {
        size = std::fs::metadata(&db).unwrap().len();
        if size >= before + 1_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        size >= before + 1_000_000,
        "the database file grew from {before} to only {size} bytes: the log was not checkpointed"
    );
}

fn new_task(i: usize, description_len: usize) -> (todo_domain::Task, CloudEvent) {
    let task = CreateTask::from_json(
        &serde_json::json!({"title": format!("t{i}"), "description": "x".repeat(description_len)}),
    )
    .unwrap()
    .into_task(Uuid::now_v7(), "alice", time::now());
    let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
    (task, event)
}

/// Readers keep their snapshot between reads; one left open by a reader that went idle
/// must not hold the log back from the database file.
#[tokio::test]
async fn an_idle_reader_does_not_hold_back_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = todo_store::connect(&url).await.unwrap().store;
    let (task, event) = new_task(0, 10);
    store.insert_task(&task, &event).await.unwrap();
    // This read leaves a snapshot open on a reader that is not used again.
    assert!(store.get_task("alice", task.id).await.unwrap().is_some());

    let db = dir.path().join("t.db");
    let before = std::fs::metadata(&db).unwrap().len();
    for i in 1..300 {
        let (task, event) = new_task(i, 1900);
        store.insert_task(&task, &event).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut size = before;
    while Instant::now() < deadline && size < before + 1_000_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        size = std::fs::metadata(&db).unwrap().len();
    }
    assert!(
        size >= before + 1_000_000,
        "checkpoints stalled at {size} bytes"
    );
}

/// A write made through another connection to the file (another process) is seen by this
/// store's readers within a few milliseconds, however busy they are.
#[tokio::test]
async fn a_write_from_another_process_is_seen_within_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let here = todo_store::connect(&url).await.unwrap().store;
    let elsewhere = todo_store::connect(&url).await.unwrap().store;
    let (task, event) = new_task(0, 10);
    // Keep this store's readers busy (and their snapshots warm) while the other writes.
    assert!(here.get_task("alice", task.id).await.unwrap().is_none());
    elsewhere.insert_task(&task, &event).await.unwrap();
    let written = Instant::now();
    loop {
        if here.get_task("alice", task.id).await.unwrap().is_some() {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_millis(100),
            "still unseen after {:?}",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
