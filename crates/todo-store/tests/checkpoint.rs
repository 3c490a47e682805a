//! The write-ahead log is copied into the database file in the background: the writer
//! never checkpoints itself, so this is all that keeps the log from growing for ever.

use std::time::{Duration, Instant};

use todo_domain::{CloudEvent, CreateTask, EventType, time};
use uuid::Uuid;

#[tokio::test]
async fn committed_pages_reach_the_database_file_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = todo_store::connect(&url).await.unwrap();
    let db = dir.path().join("t.db");
    let before = std::fs::metadata(&db).unwrap().len();

    for i in 0..300 {
        let task = CreateTask::parse(
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
