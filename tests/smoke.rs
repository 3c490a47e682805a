//! The platform starts, serves a task end to end, and stops on SIGTERM.

mod common;

use std::time::Duration;

use common::{TestApp, next_event};
use serde_json::json;

#[tokio::test]
async fn a_created_task_is_listed_and_pushed_to_the_websocket() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let task = app.create_task("alice", json!({"title": "Pay rent"})).await;
    let event = next_event(&mut ws, Duration::from_secs(2))
        .await
        .expect("event within 2 s");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["data"]["task"]["id"], task["id"]);
    let page = app.get_json("alice", "/tasks").await;
    assert_eq!(page["items"][0]["id"], task["id"]);
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
}
