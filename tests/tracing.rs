//! Traces exported over OTLP to a real receiver (oteltap for OTLP/HTTP, rotel-agent for
//! OTLP/gRPC; `scripts/install-oteltap.sh` installs both, and the harness runs it when they
//! are missing): one task is one trace whose consumer spans descend from the api span, log
//! lines carry the ids of the spans they were written in, an incoming `traceparent` is
//! continued, spans still queued are sent at a graceful stop, an unreachable receiver costs
//! one WARN line, and an invalid `OTEL_*` value stops the start naming the variable.
//! The split deployment's trace is checked in tests/split_deployment.rs.

mod common;

use std::time::Duration;

use common::otlp::{Receiver, Span, wait_for_linked_trace};
use common::{Options, TestApp, eventually, next_event};
use serde_json::{Value, json};

fn options(receiver: &Receiver) -> Options {
    // DEBUG for the services, so each consumer span has a line of its own to check.
    let mut options = Options::default().env("RUST_LOG", "info,todo_app=debug");
    for (key, value) in receiver.env() {
        options = options.env(&key, value);
    }
    options
}

async fn one_task_is_one_trace_from_the_api_through_every_consumer(receiver: Receiver) {
    let app = TestApp::spawn_with(options(&receiver)).await;
    app.wait_ready().await;
    // A client, so `sync` has someone to send the events to.
    let mut ws = app.connect_ws("alice").await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "Traced", "due_at": "2030-01-06T09:00:00Z"}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let event = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("task.created on the WebSocket");
    assert_eq!(event["type"], "task.created");

    let trace = wait_for_linked_trace(&receiver, id, Duration::from_secs(20), || app.logs()).await;
    let api_span = trace.spans["api"].clone();
    // The event names the api span as its parent, in the api span's trace.
    let api = receiver
        .spans()
        .into_iter()
        .find(|s| s.span_id == api_span)
        .unwrap();
    assert_eq!(
        event["traceparent"],
        format!("00-{}-{}-01", api.trace_id, api.span_id),
        "the CloudEvent's traceparent is the api span's"
    );
    assert_eq!(api.attr("http.request.method"), Some("POST"));
    assert_eq!(api.attr("http.route"), Some("/api/{user_id}/tasks"));
    assert_eq!(api.attr("http.response.status_code"), Some("201"));
    let audit = receiver
        .spans()
        .into_iter()
        .find(|s| s.name == "audit process" && s.attr("task_id") == Some(id))
        .unwrap();
    assert_eq!(audit.attr("messaging.operation.type"), Some("process"));
    assert_eq!(
        audit.attr("messaging.destination.name"),
        Some("task-events")
    );
    assert_eq!(audit.attr("messaging.system"), Some("todo_outbox"));
}

#[tokio::test]
async fn over_http_protobuf_one_task_is_one_linked_trace_and_its_log_lines_carry_its_ids() {
    one_task_is_one_trace_from_the_api_through_every_consumer(Receiver::http().await).await;
}

#[tokio::test]
async fn over_grpc_one_task_is_one_linked_trace_and_its_log_lines_carry_its_ids() {
    one_task_is_one_trace_from_the_api_through_every_consumer(Receiver::grpc().await).await;
}

/// Answers every POST with 200 and hands on its `traceparent` header.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let tx = tx.clone();
            async move {
                let traceparent = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let _ = tx.send(traceparent);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn a_reminder_delivered_later_continues_the_trace_that_planned_it_through_the_webhook() {
    let receiver = Receiver::http().await;
    let (url, mut hits) = webhook_receiver().await;
    let app = TestApp::spawn_with(
        options(&receiver)
            .env("TODO_NOTIFY_WEBHOOK_URL", url)
            .env("TODO_NOTIFY_WEBHOOK_SECRET", "webhook-secret-for-tests"),
    )
    .await;
    app.wait_ready().await;
    // Due in a minute and a second, reminded a minute before: the reminder fires in ~1 s.
    let due = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 62, 0).unwrap();
    let task = app
        .create_task(
            "alice",
            json!({"title": "Reminded", "due_at": due.to_rfc3339(), "remind_before_minutes": 1}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let header = tokio::time::timeout(Duration::from_secs(15), hits.recv())
        .await
        .expect("the webhook within 15 s")
        .unwrap()
        .expect("the webhook request carries a traceparent");
    let find = |spans: &[Span], name: &str| spans.iter().find(|s| s.name == name).cloned();
    let (api, planner, deliver, send) = eventually(Duration::from_secs(20), || {
        let spans: Vec<Span> = receiver.spans();
        let of_task: Vec<Span> = spans
            .iter()
            .filter(|s| s.attr("task_id") == Some(id.as_str()))
            .cloned()
            .collect();
        let found = (|| {
            Some((
                find(&of_task, "POST /api/{user_id}/tasks")?,
                find(&of_task, "notification process")?,
                find(&of_task, "reminder deliver")?,
                find(&spans, "webhook send")?,
            ))
        })();
        async move { found }
    })
    .await
    .unwrap_or_else(|| panic!("spans missing; receiver:\n{}", receiver.output()));
    for span in [&planner, &deliver, &send] {
        assert_eq!(
            span.trace_id, api.trace_id,
            "{} is in the task's trace",
            span.name
        );
    }
    assert_eq!(
        deliver.parent_span_id, planner.span_id,
        "the delivery continues the plan"
    );
    assert_eq!(
        send.parent_span_id, planner.span_id,
        "so does the reminder.due's webhook"
    );
    assert_eq!(
        header,
        format!("00-{}-{}-01", send.trace_id, send.span_id),
        "the receiver gets the webhook span as its parent"
    );
    assert_eq!(send.attr("http.response.status_code"), Some("200"));
    assert_eq!(send.attr("server.address"), Some("127.0.0.1"));
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_by_the_request_and_its_events() {
    let receiver = Receiver::http().await;
    let app = TestApp::spawn_with(options(&receiver)).await;
    app.wait_ready().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = app
        .request(reqwest::Method::POST, "alice", "/tasks")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"title": "Called"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let task: Value = response.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let spans = eventually(Duration::from_secs(20), || {
        let spans: Vec<Span> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.attr("task_id") == Some(id.as_str()))
            .collect();
        let done = spans.iter().any(|s| s.name == "audit process");
        async move { done.then_some(spans) }
    })
    .await
    .unwrap_or_else(|| panic!("no spans for the task; receiver:\n{}", receiver.output()));
    let api = spans
        .iter()
        .find(|s| s.name == "POST /api/{user_id}/tasks")
        .expect("the api span");
    assert_eq!(api.trace_id, caller_trace, "the caller's trace");
    assert_eq!(
        api.parent_span_id, caller_span,
        "a child of the caller's span"
    );
    let audit = spans.iter().find(|s| s.name == "audit process").unwrap();
    assert_eq!(audit.trace_id, caller_trace);
    assert_eq!(audit.parent_span_id, api.span_id);
}

#[tokio::test]
async fn spans_still_queued_are_sent_when_the_process_stops_gracefully() {
    let receiver = Receiver::http().await;
    // A batch delay far beyond the test: only the flush at shutdown can send the spans.
    let mut app =
        TestApp::spawn_with(options(&receiver).env("OTEL_BSP_SCHEDULE_DELAY", "600000")).await;
    app.wait_ready().await;
    let id = app.create_titled("alice", "Flushed").await;
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|s| s.attr("task_id") == Some(id.as_str())),
        "nothing is sent before the batch delay"
    );
    let (_, clean) = app.terminate().await;
    assert!(clean, "exit 0");
    let sent = eventually(Duration::from_secs(10), || {
        let found = receiver.spans().iter().any(|s| {
            s.name == "POST /api/{user_id}/tasks" && s.attr("task_id") == Some(id.as_str())
        });
        async move { found.then_some(()) }
    })
    .await;
    assert!(
        sent.is_some(),
        "the api span was not sent at shutdown; receiver:\n{}",
        receiver.output()
    );
}

#[tokio::test]
async fn an_unreachable_receiver_costs_one_warning_and_no_failed_request() {
    // Nothing listens on this port.
    let port = common::otlp::free_port();
    let app = TestApp::spawn_with(
        Options::default()
            .env("RUST_LOG", "info,todo_telemetry=debug")
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50"),
    )
    .await;
    app.wait_ready().await;
    let lines = |message: &str| {
        app.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .count()
    };
    // Requests keep working while batches fail, one after another.
    let failed_again = eventually(Duration::from_secs(30), || async {
        app.create_titled("alice", "Untraced").await;
        (lines("trace export still failing") >= 3).then_some(())
    })
    .await;
    assert!(
        failed_again.is_some(),
        "three failed exports expected; logs:\n{}",
        app.logs().join("\n")
    );
    assert_eq!(
        lines("trace export failed; spans are dropped until the receiver answers"),
        1,
        "one WARN for the outage; logs:\n{}",
        app.logs().join("\n")
    );
    let warnings = app
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        .filter(|v| {
            v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("todo_telemetry"))
        })
        .count();
    assert_eq!(
        warnings,
        1,
        "no other warning about export; logs:\n{}",
        app.logs().join("\n")
    );
}

#[tokio::test]
async fn an_invalid_otel_setting_stops_the_start_naming_the_variable() {
    for (variable, value) in [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = tokio::process::Command::new(common::binary())
            .arg("serve")
            .env_clear()
            .env("TODO_LISTEN_ADDR", "127.0.0.1:0")
            .env("TODO_DATA_DIR", dir.path())
            .env("TODO_JWT_SECRET", common::SECRET)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env("OTEL_TRACES_SAMPLER", "traceidratio")
            .env(variable, value)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{variable}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains(value),
            "{variable}={value}: {stderr}"
        );
    }
}

/// The sample is decided before spans are built: a request whose caller did not sample its
/// trace (flags `00`) exports no span, neither its own nor its consumers', yet its log lines
/// and the traceparent of its events still carry the caller's trace, unsampled; a sampled
/// request next to it is exported as usual. With `OTEL_TRACES_SAMPLER=always_off` a request
/// without a caller exports nothing either.
#[tokio::test]
async fn an_unsampled_trace_exports_no_span_but_keeps_its_ids_in_logs_and_events() {
    let receiver = Receiver::http().await;
    let app = TestApp::spawn_with(options(&receiver)).await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let unsampled_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let create = |trace: &str, flags: &str, title: &str| {
        app.request(reqwest::Method::POST, "alice", "/tasks")
            .header(
                "traceparent",
                format!("00-{trace}-00f067aa0ba902b7-{flags}"),
            )
            .json(&json!({"title": title}))
            .send()
    };
    let response = create(unsampled_trace, "00", "Unsampled").await.unwrap();
    assert_eq!(response.status(), 201);
    let unsampled: Value = response.json().await.unwrap();
    let event = next_event(&mut ws, Duration::from_secs(2))
        .await
        .expect("the event on the socket");
    let traceparent = event["traceparent"].as_str().expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{unsampled_trace}-")) && traceparent.ends_with("-00"),
        "the event continues the caller's trace, unsampled: {traceparent}"
    );
    // Every consumer is done with it before the sampled request starts.
    let id = unsampled["id"].as_str().unwrap().to_owned();
    let mut created = std::collections::HashSet::new();
    created.insert(id.clone());
    common::audited_once(&app, &[], "alice", &created, Duration::from_secs(10)).await;

    let sampled_trace = "6bf92f3577b34da6a3ce929d0e0e4738";
    let response = create(sampled_trace, "01", "Sampled").await.unwrap();
    assert_eq!(response.status(), 201);
    let exported = eventually(Duration::from_secs(20), || {
        let done = receiver
            .spans()
            .iter()
            .any(|s| s.trace_id == sampled_trace && s.name == "audit process");
        async move { done.then_some(()) }
    })
    .await;
    assert!(
        exported.is_some(),
        "the sampled request is exported:\n{}",
        receiver.output()
    );
    let leaked: Vec<Span> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == unsampled_trace || s.attr("task_id") == Some(id.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "unsampled spans were exported: {leaked:?}"
    );
    let logged = app.logs().iter().any(|l| {
        l.contains("\"message\":\"request finished\"")
            && l.contains(&format!("\"trace_id\":\"{unsampled_trace}\""))
    });
    assert!(
        logged,
        "the unsampled request's log line carries its trace id"
    );

    // always_off: nothing at all, whatever the caller.
    let quiet = Receiver::http().await;
    let off = TestApp::spawn_with(options(&quiet).env("OTEL_TRACES_SAMPLER", "always_off")).await;
    off.wait_ready().await;
    let quiet_id = off.create_titled("alice", "Off").await;
    let mut created = std::collections::HashSet::new();
    created.insert(quiet_id.clone());
    common::audited_once(&off, &[], "alice", &created, Duration::from_secs(10)).await;
    let (_, clean) = {
        let mut off = off;
        off.terminate().await
    };
    assert!(
        clean,
        "exit 0 (the flush at shutdown sends whatever was queued)"
    );
    assert!(
        quiet.spans().is_empty(),
        "always_off exports nothing: {:?}",
        quiet.spans()
    );
}
