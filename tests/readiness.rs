//! `/readyz` names what is not ready, and no request runs past the request timeout.

mod common;

use std::time::{Duration, Instant};

use common::reply::{assert_problem, send};
use common::{Options, TestApp};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn readyz_names_every_check_and_each_is_ok_when_ready() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let reply = send(app.client.get(format!("{}/readyz", app.base))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"status": "ready", "checks": {"store": "ok", "writer": "ok", "consumers": "ok"}})
    );
}

#[tokio::test]
async fn readyz_fails_naming_the_writer_while_writes_are_stuck_though_reads_answer() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    // Another process holds the database's write lock: reads go on (WAL), writes wait.
    let blocker = rusqlite::Connection::open(app.data_dir.join("todo.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let reply = send(app.client.get(format!("{}/readyz", app.base))).await;
    let problem = assert_problem(&reply, 503);
    assert_eq!(problem["type"], "urn:todo:problem:not-ready");
    assert_eq!(problem["checks"]["store"], "ok", "{problem}");
    assert_ne!(problem["checks"]["writer"], "ok", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("writer"),
        "{problem}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    app.wait_ready().await;
}

#[tokio::test]
async fn a_request_that_runs_past_the_timeout_is_a_503_problem_not_a_hang() {
    let app = TestApp::spawn_with(Options::default().env("TODO_REQUEST_TIMEOUT_MS", "300")).await;
    app.wait_ready().await;
    // A client that declares a body and sends only part of it keeps the handler waiting.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"title\":",
        app.addr,
        app.token("alice")
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("urn:todo:problem:timeout"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before the timeout"
    );
    // Other requests are unaffected.
    app.create_task("alice", json!({"title": "after"})).await;
}

/// A write that waits longer than `TODO_SQLITE_SLOW_WRITE_MS` for its commit is logged as
/// a stall (WARN `slow write commit`, with how long it waited), and still succeeds.
#[tokio::test]
async fn a_write_stalled_past_the_threshold_is_logged_as_a_slow_commit() {
    let app = TestApp::spawn_with(Options::default().env("TODO_SQLITE_SLOW_WRITE_MS", "100")).await;
    app.wait_ready().await;
    // A write that does not wait is not a stall.
    app.create_task("alice", json!({"title": "quick"})).await;
    assert!(
        !app.logs().iter().any(|l| l.contains("slow write commit")),
        "a quick write was logged as a stall"
    );
    let blocker = rusqlite::Connection::open(app.data_dir.join("todo.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let held = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        blocker.execute_batch("ROLLBACK").unwrap();
    });
    let started = Instant::now();
    app.create_task("alice", json!({"title": "waits for the lock"}))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    held.join().unwrap();
    let line = common::eventually(Duration::from_secs(5), || async {
        app.logs()
            .into_iter()
            .find(|l| l.contains("\"message\":\"slow write commit\""))
    })
    .await
    .expect("a WARN for the stalled write");
    let fields = common::log_fields(&line).unwrap();
    assert_eq!(fields["level"], "WARN");
    assert!(fields["waited_ms"].as_f64().unwrap() >= 300.0, "{line}");
    assert_eq!(fields["threshold_ms"].as_f64(), Some(100.0), "{line}");
}
