//! A PostgreSQL outage drill: the server under the platform stops as in a crash
//! (`pg_ctl -m immediate stop`) and comes back. While it is down, every request is answered
//! in time with a 503 problem, `/readyz` names the store, and `/healthz` stays up; once it is
//! back the same process serves again and every event reaches the audit log exactly once.
//! The lines an operator searches for are written, and the pre-defined log queries find
//! them: a creation answered 503 (`task-creation-failed`), the outage's start and end
//! (`database-unavailable`, `database-available-again`), a reminder falling due during it
//! (`reminder-delivery-failed`), and all of the errors (`service-errors`).
//! The database is a private server (`common::private_pg`), never the machine's shared one.

#![cfg(feature = "postgres")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::logql::{query_finds, query_lines, query_matches, with_field};
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
    // A reminder that falls due during the outage: the scheduler wakes for it and fails.
    let remind_in = 6;
    let due = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 61 + remind_in, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let reminded = app
        .create_task(
            "alice",
            json!({"title": "reminded during the outage", "due_at": due, "remind_before_minutes": 1}),
        )
        .await;
    let reminded = reminded["id"].as_str().unwrap().to_owned();
    tasks.insert(reminded.clone());
    let planned = eventually(Duration::from_secs(5), || async {
        let page = app.get_json("alice", "/reminders?limit=200").await;
        page["items"]
            .as_array()?
            .iter()
            .any(|r| r["task_id"] == reminded.as_str())
            .then_some(())
    })
    .await;
    assert!(
        planned.is_some(),
        "the reminder is planned before the outage"
    );
    let remind_at = Instant::now() + Duration::from_secs(remind_in as u64);

    pg.stop_immediately().await;
    let outage = Instant::now();
    assert!(
        Instant::now() < remind_at,
        "the database stopped before the reminder fell due"
    );
    let scheduler_failed = || {
        app.logs()
            .iter()
            .any(|l| l.contains("\"message\":\"reminder delivery failed\""))
    };

    // Several rounds: the first requests meet pooled connections the server dropped, later
    // ones find nothing listening.
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    // At least three rounds and 6 s, and until the scheduler has met the outage (the
    // reminder falls due at most 6 s in; it retries every second).
    while rounds < 3
        || outage.elapsed() < Duration::from_secs(6)
        || (!scheduler_failed() && Instant::now() < remind_at + Duration::from_secs(10))
    {
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

    // What an operator finds while it lasts, with the pre-defined queries.
    let failed = query_finds(&app, "task-creation-failed", &[("service", "todo")]).await;
    assert_eq!(failed["status"], 503, "{failed}");
    assert_eq!(failed["user_id"], "alice", "{failed}");
    assert_eq!(failed["route"], "/api/{user_id}/tasks", "{failed}");
    assert!(
        !query_matches(
            "task-creation-failed",
            &[],
            &with_field(&failed, "level", "WARN")
        ),
        "the same line at WARN is not found"
    );
    let request = failed["request_id"].as_str().unwrap();
    let answered = query_lines(&app.logs(), "request", &[("request_id", request)]);
    assert!(
        answered
            .iter()
            .any(|l| l["message"] == "request finished" && l["status"] == 503),
        "the request query follows the failed creation to its answer: {answered:#?}"
    );
    let down = query_finds(&app, "database-unavailable", &[("service", "todo")]).await;
    assert!(
        down["op"].as_str().is_some_and(|op| !op.is_empty()),
        "{down}"
    );
    let reminder = query_finds(&app, "reminder-delivery-failed", &[]).await;
    assert!(
        reminder["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{reminder}"
    );
    let errors = query_finds(&app, "service-errors", &[("service", "todo")]).await;
    assert_eq!(errors["level"], "ERROR");
    let errors = query_lines(&app.logs(), "service-errors", &[("service", "todo")]);
    assert!(errors.iter().all(|l| l["level"] == "ERROR"));
    for message in ["task creation failed", "database unavailable"] {
        assert!(
            errors.iter().any(|l| l["message"] == message),
            "service-errors holds {message:?}: {errors:#?}"
        );
    }
    assert!(
        !errors
            .iter()
            .any(|l| l["message"] == "reminder delivery failed"),
        "a retried reminder is a warning"
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
    let up = query_finds(&app, "database-available-again", &[("service", "todo")]).await;
    assert!(up["op"].as_str().is_some_and(|op| !op.is_empty()), "{up}");
    let logs = app.logs();
    assert_eq!(
        query_lines(&logs, "database-available-again", &[]).len(),
        1,
        "the end of the outage, once"
    );
    assert_eq!(
        query_lines(&logs, "database-unavailable", &[]).len(),
        1,
        "its start, once"
    );
}
