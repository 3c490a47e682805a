//! The whole platform on PostgreSQL through the real binary: one process running all five
//! services, and the services split over two processes sharing one database (the memory
//! bus reading the shared outbox, woken across processes by LISTEN/NOTIFY). Each test works
//! in a schema of its own on the machine's PostgreSQL (or `TODO_TEST_DATABASE_URL`), dropped
//! afterwards.

#![cfg(feature = "postgres")]

mod common;

#[path = "../crates/todo-store/tests/support/postgres.rs"]
mod pg;

use std::time::Duration;

use common::{Options, TestApp, eventually, next_event};
use serde_json::{Value, json};

async fn spawn(url: &str, services: &str) -> TestApp {
    let app = TestApp::spawn_with(
        Options::default()
            .env("DATABASE_URL", url)
            .env("TODO_SERVICES", services),
    )
    .await;
    app.wait_ready().await;
    app
}

fn types(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["event_type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_platform_runs_end_to_end_on_postgres() {
    let schema = pg::Schema::create().await;
    let app = spawn(&schema.url(), "all").await;
    let mut ws = app.connect_ws("alice").await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "Water plants", "due_at": "2030-01-06T09:00:00Z",
                   "recurrence": {"frequency": "weekly"}, "tags": ["Home"]}),
        )
        .await;
    let id = task["id"].as_str().expect("id").to_owned();
    let event = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("task.created on the WebSocket");
    assert_eq!(event["type"], "task.created");
    assert_eq!(app.list_all("alice", "tag=home&q=plants").await.len(), 1);

    app.complete_task("alice", &id, None).await;
    let next = eventually(Duration::from_secs(10), || async {
        let tasks = app.list_all("alice", "status=pending").await;
        (tasks.len() == 1 && tasks[0]["id"] != id.as_str()).then(|| tasks[0].clone())
    })
    .await
    .expect("the next occurrence is created");
    assert_eq!(next["due_at"], "2030-01-13T09:00:00Z");
    assert_eq!(next["parent_task_id"], id.as_str());

    let audit = eventually(Duration::from_secs(10), || async {
        let items = app.get_json("alice", "/audit?limit=50").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let t = types(&items);
        (t.iter().filter(|t| *t == "task.created").count() == 2
            && t.contains(&"task.completed".to_owned()))
        .then_some(items)
    })
    .await
    .expect("audit records both creations and the completion");
    let ids: Vec<&str> = audit
        .iter()
        .filter_map(|i| i["event_id"].as_str())
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each event audited once");
    let reminders = eventually(Duration::from_secs(10), || async {
        let items = app.get_json("alice", "/reminders").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await
    .expect("a reminder per occurrence");
    let statuses: Vec<&str> = reminders
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, ["scheduled", "cancelled"], "newest first");
}

/// `api` in one process, the four consumers in another, on one database: what the first
/// writes, the second handles (a next occurrence, audit), promptly.
#[tokio::test]
async fn split_processes_on_one_database_hand_events_over() {
    let schema = pg::Schema::create().await;
    let api = spawn(&schema.url(), "api").await;
    let workers = spawn(&schema.url(), "recurring,notification,sync,audit").await;
    let task = api
        .create_task(
            "alice",
            json!({"title": "Pay rent", "due_at": "2030-01-31T09:00:00Z",
                   "recurrence": {"frequency": "monthly"}}),
        )
        .await;
    let id = task["id"].as_str().expect("id").to_owned();
    api.complete_task("alice", &id, None).await;
    let next = eventually(Duration::from_secs(10), || async {
        let tasks = api.list_all("alice", "status=pending").await;
        (tasks.len() == 1).then(|| tasks[0].clone())
    })
    .await
    .expect("the other process creates the next occurrence");
    assert_eq!(next["due_at"], "2030-02-28T09:00:00Z");
    let audit = eventually(Duration::from_secs(10), || async {
        let items = workers.get_json("alice", "/audit").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (items.len() >= 3).then_some(items)
    })
    .await
    .expect("the other process audits what the first wrote");
    assert_eq!(
        types(&audit)
            .iter()
            .filter(|t| t.starts_with("task."))
            .count(),
        3,
        "created, completed, created: {audit:?}"
    );
}
