use std::sync::Arc;

use super::*;
use crate::metrics::events::Outcome;

/// Value of the series line starting with `series` (name plus labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn a_new_registry_has_build_info_process_series_and_ends_with_eof() {
    let metrics = Metrics::new();
    let text = metrics.encode();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "todo_build_info{{version=\"{version}\",revision=\""
        )) && l.ends_with(" 1")),
        "{text}"
    );
    let start = sample(&text, "process_start_time_seconds").expect("start time");
    assert!(start > 1.6e9, "{start}");
    #[cfg(target_os = "linux")]
    for series in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(sample(&text, series).is_some(), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE process_cpu_seconds counter"),
        "{text}"
    );
    assert_eq!(sample(&text, "todo_http_requests_in_flight"), Some(0.0));
    assert_eq!(sample(&text, "todo_ws_connections"), Some(0.0));
}

#[test]
fn http_series_bound_methods_and_group_statuses_into_classes() {
    let metrics = Metrics::new();
    let route = "/api/{user_id}/tasks/{id}";
    metrics
        .http
        .observe("api", "GET", route, 200, 0.003, Some(TRACE));
    metrics.http.observe("api", "GET", route, 204, 0.2, None);
    metrics
        .http
        .observe("api", "BREW", route, 499, 0.0001, None);
    metrics
        .http
        .observe("system", "GET", "/readyz", 503, 0.001, Some("not-a-trace"));
    metrics.http.in_flight_inc();
    metrics.http.in_flight_inc();
    metrics.http.in_flight_dec();
    let text = metrics.encode();

    let get = format!(r#"service="api",method="GET",route="{route}""#);
    assert_eq!(
        sample(
            &text,
            &format!(r#"todo_http_requests_total{{{get},status_class="2xx"}}"#)
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"todo_http_requests_total{{service="api",method="other",route="{route}",status_class="4xx"}}"#
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("BREW"), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"todo_http_requests_total{service="system",method="GET",route="/readyz",status_class="5xx"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("todo_http_request_duration_seconds_count{{{get}}}")
        ),
        Some(2.0)
    );
    // The 3 ms request is the exemplar of its bucket, with its trace id.
    let bucket = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "todo_http_request_duration_seconds_bucket{{le=\"0.005\",{get}}}"
            ))
        })
        .expect("bucket");
    assert!(
        bucket.contains(&format!("# {{trace_id=\"{TRACE}\"}} 0.003")),
        "{bucket}"
    );
    // An invalid trace id is no exemplar.
    assert!(!text.contains("not-a-trace"), "{text}");
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("todo_http_request_duration_seconds_bucket{") && l.contains(&get))
        .count();
    assert_eq!(buckets, FAST_BUCKETS.len() + 1);
    assert_eq!(sample(&text, "todo_http_requests_in_flight"), Some(1.0));
}

#[test]
fn event_series_count_outcomes_and_carry_exemplars() {
    let metrics = Metrics::new();
    let e = &metrics.events;
    e.published("task-events", "task.created", 2);
    e.relayed("task-updates", 5);
    e.consumed("audit", "task-events", "task.created", Outcome::Ok);
    e.consumed("audit", "task-events", "task.created", Outcome::Duplicate);
    e.consumed("audit", "task-events", "task.created", Outcome::Duplicate);
    e.consumed("recurring", "task-events", "other", Outcome::DeadLettered);
    e.failed("recurring", "handler");
    e.set_lag("sync", "task-updates", 3, 7);
    e.observe_latency("sync", 0.02, Some(TRACE));
    e.observe_latency("sync", -1.0, None); // clock skew: counted as 0
    e.observe_latency("sync", f64::NAN, None); // ignored
    e.dead_lettered("recurring", "unreadable_data");
    e.recurring_completion("series_ended");
    e.set_outbox(12, 3.5);
    let text = metrics.encode();

    let expect = [
        (
            r#"todo_events_published_total{topic="task-events",type="task.created"}"#,
            2.0,
        ),
        (r#"todo_events_relayed_total{topic="task-updates"}"#, 5.0),
        (
            r#"todo_events_consumed_total{consumer="audit",topic="task-events",type="task.created",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"todo_events_consumed_total{consumer="audit",topic="task-events",type="task.created",outcome="duplicate"}"#,
            2.0,
        ),
        (
            r#"todo_events_consumed_total{consumer="recurring",topic="task-events",type="other",outcome="dead_lettered"}"#,
            1.0,
        ),
        (
            r#"todo_event_handler_failures_total{consumer="recurring",kind="handler"}"#,
            1.0,
        ),
        (
            r#"todo_consumer_lag_events{consumer="sync",topic="task-updates",partition="3"}"#,
            7.0,
        ),
        (
            r#"todo_event_processing_latency_seconds_count{consumer="sync"}"#,
            2.0,
        ),
        (
            r#"todo_event_processing_latency_seconds_sum{consumer="sync"}"#,
            0.02,
        ),
        (
            r#"todo_events_dead_lettered_total{consumer="recurring",reason="unreadable_data"}"#,
            1.0,
        ),
        (
            r#"todo_recurring_completions_total{outcome="series_ended"}"#,
            1.0,
        ),
        ("todo_outbox_backlog_events", 12.0),
        ("todo_outbox_oldest_age_seconds", 3.5),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"todo_event_processing_latency_seconds_bucket{le="0.025",consumer="sync"}"#
        ) && l.contains(TRACE)),
        "{text}"
    );
}

#[test]
fn ws_reminder_store_and_pool_series_move() {
    let metrics = Metrics::new();
    metrics.ws.connected();
    metrics.ws.connected();
    metrics.ws.disconnected();
    metrics.ws.closed(WsCloseReason::SlowConsumer);
    metrics.ws.closed(WsCloseReason::Client);
    metrics.ws.closed(WsCloseReason::Client);
    metrics.ws.sent();
    metrics.ws.sent();
    metrics.reminders.scheduled();
    metrics.reminders.delivered(3);
    metrics.reminders.delivered(2);
    metrics.reminders.observe_lag(1.5);
    metrics.reminders.webhook("retry");
    metrics.store.observe("insert_task", 0.002);
    metrics.store.error("insert_task", "unavailable");
    metrics.report_pools(|| {
        vec![PoolStatus {
            pool: "read",
            size: 4,
            idle: 3,
            waiting: 0,
        }]
    });
    let text = metrics.encode();

    let expect = [
        ("todo_ws_connections", 1.0),
        ("todo_ws_messages_sent_total", 2.0),
        (r#"todo_ws_closes_total{reason="slow_consumer"}"#, 1.0),
        (r#"todo_ws_closes_total{reason="client"}"#, 2.0),
        ("todo_reminders_scheduled_total", 1.0),
        ("todo_reminders_delivered_total", 5.0),
        ("todo_reminder_delivery_lag_seconds_count", 1.0),
        (
            r#"todo_reminder_delivery_lag_seconds_bucket{le="2.5"}"#,
            1.0,
        ),
        (
            r#"todo_reminder_delivery_lag_seconds_bucket{le="1.0"}"#,
            0.0,
        ),
        (r#"todo_webhook_attempts_total{outcome="retry"}"#, 1.0),
        (
            r#"todo_store_operation_duration_seconds_count{op="insert_task"}"#,
            1.0,
        ),
        (
            r#"todo_store_errors_total{op="insert_task",kind="unavailable"}"#,
            1.0,
        ),
        (r#"todo_store_pool_size{pool="read"}"#, 4.0),
        (r#"todo_store_pool_idle{pool="read"}"#, 3.0),
        (r#"todo_store_pool_waiting{pool="read"}"#, 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn shared_across_threads() {
    let metrics = Metrics::new();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let metrics = Arc::clone(&metrics);
            std::thread::spawn(move || {
                for _ in 0..250 {
                    metrics.events.published("task-events", "task.updated", 1);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(
        sample(
            &metrics.encode(),
            r#"todo_events_published_total{topic="task-events",type="task.updated"}"#
        ),
        Some(1000.0)
    );
}

#[test]
fn trace_exemplars_take_only_valid_ids() {
    assert!(TraceExemplar::new(Some(TRACE)).is_some());
    assert!(TraceExemplar::new(Some(&"0".repeat(32))).is_none());
    assert!(TraceExemplar::new(Some(&TRACE.to_uppercase())).is_none());
    assert!(TraceExemplar::new(Some("abc")).is_none());
    assert!(TraceExemplar::new(None).is_none());
}
