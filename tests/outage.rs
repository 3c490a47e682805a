//! A PostgreSQL outage drill: the server under the platform stops as in a crash
//! (`pg_ctl -m immediate stop`) and comes back. While it is down, every request is answered
//! in time with a 503 problem, `/readyz` names the store, and `/healthz` stays up; once it is
//! back the same process serves again and every event reaches the audit log exactly once.
//! The database is a private server (`common::private_pg`), never the machine's shared one.

#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::private_pg::PrivatePostgres;
use common::reply::{Reply, assert_problem, send};
use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::json;

/// `TODO_REQUEST_TIMEOUT_MS` of the server under test.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(2000);

/// What a request may take beyond the timeout before it counts as hanging.
const MARGIN: Duration = Duration::from_millis(1500);

/// Sends `request`, asserting it is answered within the timeout plus the margin; records
/// how long it took in `slowest`.
async fn timed(what: &str, request: reqwest::RequestBuilder, slowest: &mut Duration) -> Reply {
    let started = Instant::now();
    let reply = tokio::time::timeout(REQUEST_TIMEOUT + MARGIN * 4, send(request))
        .await
        .unwrap_or_else(|_| panic!("{what} hung while the database was down"));
    let took = started.elapsed();
    *slowest = (*slowest).max(took);
    assert!(
        took <= REQUEST_TIMEOUT + MARGIN,
        "{what} took {took:?} while the database was down (timeout {REQUEST_TIMEOUT:?})"
    );
    reply
}

async fn readyz(app: &TestApp) -> Reply {
    send(app.client.get(format!("{}/readyz", app.base))).await
}

#[tokio::test]
async fn while_postgres_is_down_requests_are_503_problems_in_time_and_all_recovers_without_a_restart()
 {
    let pg = PrivatePostgres::start().await;
    let app = TestApp::spawn_with(
        Options::default()
            .env("DATABASE_URL", pg.url())
            .env("TODO_BUS", "memory")
            .env(
                "TODO_REQUEST_TIMEOUT_MS",
                REQUEST_TIMEOUT.as_millis().to_string(),
            ),
    )
    .await;
    app.wait_ready().await;
    let mut tasks = BTreeSet::new();
    for i in 0..5 {
        let task = app
            .create_task("alice", json!({"title": format!("before {i}")}))
            .await;
        tasks.insert(task["id"].as_str().unwrap().to_owned());
    }
    let kept = tasks.first().unwrap().clone();

    pg.stop_immediately().await;
    let outage = Instant::now();

    // Several rounds: the first requests meet pooled connections the server dropped, later
    // ones find nothing listening.
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    while rounds < 3 || outage.elapsed() < Duration::from_secs(6) {
        rounds += 1;
        let create = timed(
            "POST /tasks",
            app.request(Method::POST, "alice", "/tasks")
                .json(&json!({"title": "during"})),
            &mut slowest,
        )
        .await;
        let get = timed(
            "GET /tasks/{id}",
            app.request(Method::GET, "alice", &format!("/tasks/{kept}")),
            &mut slowest,
        )
        .await;
        let list = timed(
            "GET /tasks",
            app.request(Method::GET, "alice", "/tasks"),
            &mut slowest,
        )
        .await;
        for (what, reply) in [("create", &create), ("get", &get), ("list", &list)] {
            assert_eq!(
                reply.status, 503,
                "{what} in round {rounds} while the database was down: {}",
                reply.text
            );
            assert_problem(reply, 503);
        }

        let ready = timed(
            "GET /readyz",
            app.client.get(format!("{}/readyz", app.base)),
            &mut slowest,
        )
        .await;
        assert_ne!(ready.status, 200, "/readyz while the database was down");
        let checks = &ready.json()["checks"];
        let store = checks["store"].as_str().unwrap_or_default();
        assert!(
            store != "ok" && !store.is_empty(),
            "/readyz names the store as failing: {}",
            ready.text
        );
        let health = timed(
            "GET /healthz",
            app.client.get(format!("{}/healthz", app.base)),
            &mut slowest,
        )
        .await;
        assert_eq!(health.status, 200, "/healthz stays up: {}", health.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!(
        "outage: {rounds} rounds in {:?}; slowest answer {slowest:?}",
        outage.elapsed()
    );
    pg.restart().await;
    let back = Instant::now();
    let recovered = eventually(Duration::from_secs(30), || async {
        (readyz(&app).await.status == 200).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "/readyz is 200 within 30 s of the database's return: {}\nserver logs:\n{}",
        readyz(&app).await.text,
        app.logs().join("\n")
    );
    eprintln!("ready again {:?} after the database was", back.elapsed());
    assert!(
        app.get_task("alice", &kept).await.is_some(),
        "a task from before the outage is served again"
    );
    for i in 0..5 {
        let task = app
            .create_task("alice", json!({"title": format!("after {i}")}))
            .await;
        let id = task["id"].as_str().unwrap().to_owned();
        assert_eq!(app.get_task("alice", &id).await.as_ref(), Some(&task));
        tasks.insert(id);
    }

    // Every task's task.created reaches the audit log, once.
    let audited = eventually(Duration::from_secs(30), || async {
        let items = app
            .all_pages("alice", "/audit?event_type=task.created&limit=200")
            .await;
        let ids: BTreeSet<String> = items
            .iter()
            .filter_map(|i| i["task_id"].as_str().map(str::to_owned))
            .collect();
        (ids == tasks).then_some(items)
    })
    .await;
    let Some(items) = audited else {
        let items = app
            .all_pages("alice", "/audit?event_type=task.created&limit=200")
            .await;
        panic!(
            "every task.created audited within 30 s; got {} of {}: {items:?}\nserver logs:\n{}",
            items.len(),
            tasks.len(),
            app.logs().join("\n")
        );
    };
    assert_eq!(items.len(), tasks.len(), "each task.created audited once");
    let events: BTreeSet<&str> = items
        .iter()
        .filter_map(|i| i["event_id"].as_str())
        .collect();
    assert_eq!(events.len(), items.len(), "no event audited twice");

    // The outage is logged once when it begins and once when it ends, not per failed call.
    let messages: Vec<String> = app
        .logs()
        .iter()
        .filter_map(|l| common::log_fields(l))
        .filter_map(|f| f.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .collect();
    let count = |m: &str| messages.iter().filter(|x| x.as_str() == m).count();
    assert_eq!(count("database unavailable"), 1, "{messages:?}");
    assert_eq!(count("database available again"), 1, "{messages:?}");
}
