//! A write that fails for lack of space fails loudly, and loses nothing afterwards.
//!
//! When a commit cannot be written, SQLite rolls the transaction back by itself. The store
//! must not then go on answering "written" for writes held in a transaction nobody will
//! commit: once space is back, every acknowledged write must survive a restart.
//!
//! The full disk is simulated with this process's file-size limit (`prlimit --fsize`),
//! which makes the write-ahead log's next append fail exactly like a full filesystem.
//! This file holds one test so the limit affects nothing else.

use todo_domain::{CloudEvent, CreateTask, EventType, Task, time};
use uuid::Uuid;

fn task(i: usize) -> (Task, CloudEvent) {
    let task = CreateTask::from_json(
        &serde_json::json!({"title": format!("t{i}"), "description": "x".repeat(1900)}),
    )
    .unwrap()
    .into_task(Uuid::now_v7(), "alice", time::now());
    let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
    (task, event)
}

fn limit_file_size(limit: &str) {
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--fsize={limit}:")])
        .status()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(status.success(), "prlimit failed");
}

#[tokio::test]
async fn writes_acknowledged_after_a_failed_commit_survive_a_restart() {
    // Exceeding the limit raises SIGXFSZ, which would kill the process; catching it turns
    // the overflow into a plain write error.
    let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = todo_store::connect(&url).await.unwrap().store;
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let (task, event) = task(i);
        store.insert_task(&task, &event).await.unwrap();
        acknowledged.push(task);
    }

    let wal = std::fs::metadata(dir.path().join("t.db-wal"))
        .unwrap()
        .len();
    limit_file_size(&(wal + 30_000).to_string());
    let mut failures = 0;
    for i in 5..40 {
        let (task, event) = task(i);
        match store.insert_task(&task, &event).await {
            Ok(()) => acknowledged.push(task),
            Err(e) => {
                assert!(
                    e.is_unavailable(),
                    "a full disk should read as unavailable (503), got: {e}"
                );
                failures += 1;
            }
        }
    }
    limit_file_size("unlimited");
    assert!(failures > 0, "the file-size limit never made a write fail");

    for i in 40..60 {
        let (task, event) = task(i);
        store
            .insert_task(&task, &event)
            .await
            .expect("writes succeed once space is back");
        acknowledged.push(task);
    }
    drop(store);

    let reopened = todo_store::connect(&url).await.unwrap().store;
    let mut lost = Vec::new();
    for t in &acknowledged {
        if reopened.get_task("alice", t.id).await.unwrap().is_none() {
            lost.push(t.title.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost after restart: {lost:?}",
        lost.len()
    );
}
