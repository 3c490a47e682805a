//! What an operator sees, against the real binary: the metric series of
//! `docs/metrics.md` move as the platform works, with bounded labels and trace exemplars,
//! and the documented log lines appear.

mod common;

use std::time::Duration;

use common::reply::send;
use common::{Options, TestApp, eventually, metric_sample};
use futures_util::SinkExt;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A creation with a reminder, traced: counted as published, consumed by every consumer,
/// the reminder as scheduled; the request's trace id is the exemplar of its latency
/// bucket and of the consumers' processing latency.
#[tokio::test]
async fn a_traced_creation_moves_event_reminder_and_latency_series_with_its_exemplar() {
    let app = TestApp::spawn_with(Options::default()).await;
    app.wait_ready().await;
    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .json(&json!({"title": "traced", "due_at": "2031-03-10T09:00:00Z",
                          "remind_before_minutes": 30})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    let text = app
        .wait_metric(
            "todo_events_consumed_total",
            &[
                "consumer=\"audit\"",
                "type=\"reminder.scheduled\"",
                "outcome=\"ok\"",
            ],
            1.0,
        )
        .await;
    for consumer in ["audit", "notification", "recurring", "sync"] {
        assert!(
            metric_sample(
                &text,
                "todo_events_consumed_total",
                &[
                    &format!("consumer=\"{consumer}\""),
                    "type=\"task.created\"",
                    "outcome=\"ok\""
                ]
            )
            .is_some_and(|v| v >= 1.0),
            "{consumer} consumed the creation:\n{text}"
        );
    }
    let expect = [
        (
            "todo_events_published_total",
            vec!["topic=\"task-events\"", "type=\"task.created\""],
        ),
        (
            "todo_events_published_total",
            vec!["topic=\"reminders\"", "type=\"reminder.scheduled\""],
        ),
        ("todo_reminders_scheduled_total", vec![]),
        (
            "todo_http_requests_total",
            vec![
                "service=\"api\"",
                "method=\"POST\"",
                "route=\"/api/{user_id}/tasks\"",
                "status_class=\"2xx\"",
            ],
        ),
    ];
    for (name, labels) in expect {
        assert!(
            metric_sample(&text, name, &labels).is_some_and(|v| v >= 1.0),
            "{name}{labels:?} in\n{text}"
        );
    }
    let exemplar = format!("# {{trace_id=\"{TRACE_ID}\"}}");
    let has_exemplar = |prefix: &str, labels: &str| {
        text.lines()
            .any(|l| l.starts_with(prefix) && l.contains(labels) && l.contains(&exemplar))
    };
    assert!(
        has_exemplar(
            "todo_http_request_duration_seconds_bucket{",
            "route=\"/api/{user_id}/tasks\""
        ),
        "the request's trace is the exemplar of its latency bucket:\n{text}"
    );
    assert!(
        has_exemplar(
            "todo_event_processing_latency_seconds_bucket{",
            "consumer=\"audit\""
        ),
        "the event's trace is the exemplar of the processing latency:\n{text}"
    );
    assert!(!text.contains("alice"), "no user id in any label");
}

/// Completing a recurring task twice (reopened in between) finds its next occurrence
/// already there the second time: a duplicate, not a second effect.
#[tokio::test]
async fn an_effect_already_applied_counts_as_a_duplicate() {
    let app = TestApp::spawn_with(Options::default()).await;
    app.wait_ready().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "water plants", "due_at": "2031-03-10T09:00:00Z",
                   "recurrence": {"frequency": "daily", "interval": 1}}),
        )
        .await;
    let id = task["id"].as_str().expect("id").to_owned();
    app.complete_task("alice", &id, Some(true)).await;
    app.wait_metric(
        "todo_recurring_completions_total",
        &["outcome=\"created\""],
        1.0,
    )
    .await;
    app.complete_task("alice", &id, Some(false)).await;
    app.complete_task("alice", &id, Some(true)).await;
    app.wait_metric(
        "todo_events_consumed_total",
        &[
            "consumer=\"recurring\"",
            "type=\"task.completed\"",
            "outcome=\"duplicate\"",
        ],
        1.0,
    )
    .await;
    let tasks = app.list_all("alice", "").await;
    assert_eq!(tasks.len(), 2, "one next occurrence, not two: {tasks:?}");
}

/// Methods outside the standard set share one label value; a client closing its
/// WebSocket is counted by reason; the process and pool series are there.
#[tokio::test]
async fn labels_stay_bounded_and_process_pool_and_websocket_series_are_present() {
    let app = TestApp::spawn_with(Options::default()).await;
    app.wait_ready().await;
    for method in ["BREW", "PROPFIND", "X-ANYTHING"] {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        send(app.client.request(method, app.url("alice", "/tasks"))).await;
    }
    let mut ws = app.connect_ws("alice").await;
    ws.send(Message::Close(None)).await.expect("close");
    let text = app
        .wait_metric("todo_ws_closes_total", &["reason=\"client\""], 1.0)
        .await;
    assert!(
        metric_sample(
            &text,
            "todo_http_requests_total",
            &["method=\"other\"", "route=\"/api/{user_id}/tasks\""]
        )
        .is_some_and(|v| v >= 3.0),
        "{text}"
    );
    for invented in ["BREW", "PROPFIND", "X-ANYTHING"] {
        assert!(
            !text.contains(invented),
            "{invented} became a label:\n{text}"
        );
    }
    for (name, labels) in [
        ("process_cpu_seconds_total", vec![]),
        ("process_resident_memory_bytes", vec![]),
        ("process_open_fds", vec![]),
        ("process_max_fds", vec![]),
        ("process_start_time_seconds", vec![]),
        ("todo_store_pool_size", vec!["pool=\"read\""]),
        ("todo_store_pool_size", vec!["pool=\"write\""]),
        ("todo_store_pool_idle", vec!["pool=\"read\""]),
        ("todo_store_pool_waiting", vec!["pool=\"write\""]),
        ("todo_build_info", vec!["version=\""]),
    ] {
        assert!(
            metric_sample(&text, name, &labels).is_some(),
            "{name}{labels:?} in\n{text}"
        );
    }
    let rss = metric_sample(&text, "process_resident_memory_bytes", &[]).unwrap_or(0.0);
    assert!(rss > 1e6, "resident memory is in bytes: {rss}");
    assert_eq!(
        metric_sample(&text, "todo_store_pool_size", &["pool=\"write\""]),
        Some(1.0),
        "one writer connection"
    );
    // The connection that closed is no longer counted as open.
    let open = eventually(Duration::from_secs(10), || async {
        let text = app.metrics().await;
        (metric_sample(&text, "todo_ws_connections", &[]) == Some(0.0)).then_some(())
    })
    .await;
    assert!(open.is_some(), "todo_ws_connections back to 0");
}

/// Without `TODO_FAULTS_ENABLED` the fault routes do not exist; with it, a share of API
/// requests fails (counted as 5xx) and a consumer made slow falls behind, visibly in its
/// lag, until the faults are cleared.
#[tokio::test]
async fn the_fault_switch_is_refused_unless_enabled_and_then_fails_requests_and_slows_a_consumer() {
    let plain = TestApp::spawn_with(Options::default()).await;
    let reply = send(
        plain
            .client
            .put(format!("{}/admin/faults", plain.base))
            .json(&json!({"http_error_percent": 100})),
    )
    .await;
    assert_eq!(
        reply.status, 404,
        "no fault routes by default: {}",
        reply.text
    );

    let app = TestApp::spawn_with(Options::default().env("TODO_FAULTS_ENABLED", "true")).await;
    app.wait_ready().await;
    let put = |body: serde_json::Value| {
        send(
            app.client
                .put(format!("{}/admin/faults", app.base))
                .json(&body),
        )
    };
    let refused = put(json!({"consumer_delay_ms": {"billing": 5}})).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.text.contains("unknown consumer"),
        "{}",
        refused.text
    );

    let set = put(json!({"http_error_percent": 100})).await;
    assert_eq!(set.status, 200, "{}", set.text);
    let failed = send(app.request(Method::GET, "alice", "/tasks")).await;
    assert_eq!(failed.status, 500, "{}", failed.text);
    assert!(failed.text.contains("fault-injected"), "{}", failed.text);
    app.wait_metric(
        "todo_http_requests_total",
        &["service=\"api\"", "status_class=\"5xx\""],
        1.0,
    )
    .await;
    let ready = send(app.client.get(format!("{}/readyz", app.base))).await;
    assert_eq!(ready.status, 200, "only /api routes fail");

    // Audit spends 200 ms per event: 30 creations leave it seconds behind.
    let set = put(json!({"consumer_delay_ms": {"audit": 200}})).await;
    assert_eq!(set.status, 200, "{}", set.text);
    for i in 0..30 {
        app.create_titled("alice", &format!("slow {i}")).await;
    }
    let audit = ["consumer=\"audit\"", "topic=\"task-events\""];
    app.wait_metric("todo_consumer_lag_events", &audit, 5.0)
        .await;
    let text = app.metrics().await;
    assert!(
        metric_sample(
            &text,
            "todo_consumer_lag_events",
            &["consumer=\"sync\"", "topic=\"task-events\""]
        )
        .is_some_and(|lag| lag < 5.0),
        "only audit is slowed:\n{text}"
    );
    let cleared = put(json!({})).await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    let caught_up = eventually(Duration::from_secs(30), || async {
        let text = app.metrics().await;
        (metric_sample(&text, "todo_consumer_lag_events", &audit) == Some(0.0)).then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "audit catches up once the delay is cleared"
    );
}
