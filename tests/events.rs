//! Event flows against the real binary: WebSocket sync, recurring tasks, reminders, webhooks,
//! the audit log, graceful shutdown and split services.
//!
//! Timing assertions use the contract's floors (WebSocket ≤ 2 s, next occurrence ≤ 10 s,
//! reminder at `due_at - remind_before_minutes`); measured figures are printed with
//! `eprintln!` (see them with `cargo nextest run --test events --no-capture`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use common::logql::{assert_query_finds, query_finds, query_lines, query_matches, with_field};
use common::{Options, TestApp, Ws, eventually, next_event, sqlite_scalar};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An RFC 3339 value as an instant.
fn ts(value: &Value) -> DateTime<Utc> {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|e| panic!("bad timestamp {raw:?}: {e}"))
        .with_timezone(&Utc)
}

/// An instant as RFC 3339 with whole seconds.
fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A whole-second instant at least `secs` seconds from now.
fn from_now(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + secs + 1, 0).unwrap()
}

/// A task body whose reminder fires in about `secs` seconds (due a minute later).
fn reminding_in(title: &str, secs: i64) -> (Value, DateTime<Utc>) {
    let due = from_now(60 + secs);
    let body = json!({"title": title, "due_at": rfc(due), "remind_before_minutes": 1});
    (body, due - chrono::Duration::minutes(1))
}

/// The next event of type `wanted`, skipping others; `None` if none arrives within `wait`.
async fn next_of_type(ws: &mut Ws, wanted: &str, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let event = next_event(ws, left).await?;
        if event["type"] == wanted {
            return Some(event);
        }
    }
}

/// Reads frames until a close frame (skipping data and pings), within `wait`.
async fn close_frame<S>(ws: &mut S, wait: Duration) -> Result<(CloseCode, String), String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .ok_or("no close frame in time")?;
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return Err("no close frame in time".into()),
            Ok(None) => return Err("stream ended without a close frame".into()),
            Ok(Some(Err(e))) => return Err(format!("error before a close frame: {e}")),
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Ok((frame.code, frame.reason.to_string()));
            }
            Ok(Some(Ok(Message::Close(None)))) => return Err("close frame without a code".into()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Asserts the CloudEvent envelope the contract names, for a task event.
fn assert_task_envelope(event: &Value, kind: &str, user: &str, task: &Value) {
    assert_eq!(event["specversion"], "1.0", "{event}");
    let id = event["id"].as_str().expect("id");
    uuid::Uuid::parse_str(id).expect("id is a uuid");
    assert_eq!(event["source"], "todo/api", "{event}");
    assert_eq!(event["type"], kind, "{event}");
    assert_eq!(event["subject"], task["id"], "{event}");
    let _ = ts(&event["time"]);
    assert_eq!(event["datacontenttype"], "application/json", "{event}");
    assert_traceparent(&event["traceparent"]);
    assert_eq!(event["data"]["user_id"], user, "{event}");
    assert_eq!(
        event["data"]["task"], *task,
        "data.task is the task as the API returned it"
    );
}

/// W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero.
fn assert_traceparent(value: &Value) {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("traceparent missing: {value}"));
    let parts: Vec<&str> = raw.split('-').collect();
    assert_eq!(parts.len(), 4, "{raw}");
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2),
        "bad traceparent {raw}"
    );
    assert!(
        parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16),
        "{raw}"
    );
}

/// The user's reminder for `task_id`, if any.
async fn reminder_for(app: &TestApp, user: &str, task_id: &Value) -> Option<Value> {
    let page = app.get_json(user, "/reminders?limit=200").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task_id"] == *task_id)
        .cloned()
}

/// Polls until the reminder of `task_id` satisfies `check`, for up to 5 s.
async fn reminder_where(
    app: &TestApp,
    user: &str,
    task_id: &Value,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let found = eventually(Duration::from_secs(5), || async {
        reminder_for(app, user, task_id).await.filter(|r| check(r))
    })
    .await;
    match found {
        Some(r) => r,
        None => panic!(
            "reminder not as expected; last seen: {:?}",
            reminder_for(app, user, task_id).await
        ),
    }
}

/// The user's notifications for `task_id`.
async fn notifications_for(app: &TestApp, user: &str, task_id: &Value) -> Vec<Value> {
    let page = app.get_json(user, "/notifications?limit=200").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["task_id"] == *task_id)
        .cloned()
        .collect()
}

/// Every audit entry for `query`, following cursors.
async fn audit_all(app: &TestApp, user: &str, query: &str) -> Vec<Value> {
    app.all_pages(user, &format!("/audit?{query}")).await
}

/// `PUT /tasks/{id}` with `body`, asserting 200.
async fn put_task(app: &TestApp, user: &str, id: &Value, body: Value) -> Value {
    let path = format!("/tasks/{}", id.as_str().unwrap());
    app.send_json(reqwest::Method::PUT, user, &path, body, 200)
        .await
}

/// `DELETE /tasks/{id}`, asserting 204.
async fn delete_task(app: &TestApp, user: &str, id: &Value) {
    let response = app
        .request(
            reqwest::Method::DELETE,
            user,
            &format!("/tasks/{}", id.as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// A webhook request the test receiver got.
#[derive(Debug, Clone)]
struct Hit {
    headers: axum::http::HeaderMap,
    body: String,
    at: DateTime<Utc>,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }
}

/// How the test receiver answers.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 200 always.
    Ok,
    /// 500 for the first `n` requests, then 200.
    FailFirst(usize),
    /// Holds requests whose reminder title is this for 30 s; 200 for others.
    HangOn(&'static str),
    /// 500 always.
    Fail,
}

/// A webhook receiver on 127.0.0.1:0 recording every request.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let recorded = hits.clone();
        let handler = move |headers: axum::http::HeaderMap, body: String| {
            let recorded = recorded.clone();
            async move {
                let hit = Hit {
                    headers,
                    body,
                    at: Utc::now(),
                };
                let title = hit.json()["data"]["title"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let seen = {
                    let mut hits = recorded.lock().unwrap();
                    hits.push(hit);
                    hits.len()
                };
                match answer {
                    Answer::Ok => axum::http::StatusCode::OK,
                    Answer::FailFirst(n) if seen <= n => {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    }
                    Answer::FailFirst(_) => axum::http::StatusCode::OK,
                    Answer::HangOn(hang) if title == hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        axum::http::StatusCode::OK
                    }
                    Answer::HangOn(_) => axum::http::StatusCode::OK,
                    Answer::Fail => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            hits,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived.
    async fn wait_for(&self, n: usize, wait: Duration) -> Vec<Hit> {
        eventually(wait, || async {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} webhook requests, got {:?}", self.hits()))
    }
}

const HOOK_SECRET: &str = "webhook-secret-for-tests";

async fn spawn_with_webhook(receiver: &Receiver) -> TestApp {
    TestApp::spawn_with(webhook_options(receiver)).await
}

/// Settings for a server whose reminders are POSTed to `receiver`, retried after 100 ms.
fn webhook_options(receiver: &Receiver) -> Options {
    Options::default()
        .env("TODO_NOTIFY_WEBHOOK_URL", receiver.url.clone())
        .env("TODO_NOTIFY_WEBHOOK_SECRET", HOOK_SECRET)
        .env("TODO_NOTIFY_WEBHOOK_RETRY_MS", "100")
}

/// Runs `todo serve` with `args` and `env` (on top of a clean, valid base) and returns its exit status
/// and stderr; fails if it is still running after 10 s.
async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let args: Vec<&str> = std::iter::once("serve")
        .chain(args.iter().copied())
        .collect();
    let output = common::run_to_exit(&args, env, Duration::from_secs(10)).await;
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of one sample of `/metrics`: the series `name` whose labels include all of
/// `labels` (each `key="value"`).
async fn metric(app: &TestApp, name: &str, labels: &[&str]) -> Option<f64> {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once('}')?,
            None => ("", rest),
        };
        labels
            .iter()
            .all(|l| label_text.contains(l))
            .then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// The first log line (as JSON) with `message` for which `matches` holds, waiting up to `wait`.
async fn log_line(
    app: &TestApp,
    message: &str,
    wait: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Option<Value> {
    eventually(wait, || async {
        app.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == message && matches(v))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 1. WebSocket
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_task_change_reaches_only_its_owners_socket_within_two_seconds_as_a_cloudevent() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut alice = app.connect_ws("alice").await;
    let mut bob = app.connect_ws("bob").await;
    let mut latencies = Vec::new();

    let started = Instant::now();
    let created = app
        .create_task(
            "alice",
            json!({"title": "Pay rent", "tags": ["Home"], "priority": "high"}),
        )
        .await;
    let event = next_event(&mut alice, Duration::from_secs(2))
        .await
        .expect("task.created within 2 s");
    latencies.push(started.elapsed());
    assert_task_envelope(&event, "task.created", &app.user("alice"), &created);
    let mut ids = vec![event["id"].clone()];

    let started = Instant::now();
    let updated = put_task(
        &app,
        "alice",
        &created["id"],
        json!({"title": "Pay the rent"}),
    )
    .await;
    let event = next_event(&mut alice, Duration::from_secs(2))
        .await
        .expect("task.updated within 2 s");
    latencies.push(started.elapsed());
    assert_task_envelope(&event, "task.updated", &app.user("alice"), &updated);
    ids.push(event["id"].clone());

    let started = Instant::now();
    let completed = app
        .complete_task("alice", created["id"].as_str().unwrap(), Some(true))
        .await;
    let event = next_event(&mut alice, Duration::from_secs(2))
        .await
        .expect("task.completed within 2 s");
    latencies.push(started.elapsed());
    assert_task_envelope(&event, "task.completed", &app.user("alice"), &completed);
    ids.push(event["id"].clone());

    let started = Instant::now();
    delete_task(&app, "alice", &created["id"]).await;
    let event = next_event(&mut alice, Duration::from_secs(2))
        .await
        .expect("task.deleted within 2 s");
    latencies.push(started.elapsed());
    assert_eq!(event["type"], "task.deleted");
    assert_eq!(event["subject"], created["id"]);
    assert_eq!(event["source"], "todo/api");
    assert_eq!(event["data"]["user_id"], app.user("alice"));
    assert_eq!(event["data"]["task"]["id"], created["id"]);
    assert_traceparent(&event["traceparent"]);
    ids.push(event["id"].clone());

    ids.sort_by_key(|v| v.to_string());
    ids.dedup();
    assert_eq!(ids.len(), 4, "event ids are unique");
    eprintln!("websocket latency (created, updated, completed, deleted): {latencies:?}");

    // All of alice's events have been fanned out, so bob would have them by now.
    assert_eq!(
        next_event(&mut bob, Duration::from_millis(500)).await,
        None,
        "bob received alice's event"
    );
    // Bob's socket works: his own change reaches him, and not alice.
    let bobs = app.create_task("bob", json!({"title": "Bob's"})).await;
    let event = next_event(&mut bob, Duration::from_secs(2))
        .await
        .expect("bob's own event");
    assert_eq!(event["data"]["task"]["id"], bobs["id"]);
    assert_eq!(event["data"]["user_id"], app.user("bob"));
    assert_eq!(
        next_event(&mut alice, Duration::from_millis(300)).await,
        None
    );
}

#[tokio::test]
async fn the_socket_accepts_the_token_as_an_access_token_query_parameter() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let url = format!(
        "ws://{}/api/{}/ws?access_token={}",
        app.addr,
        app.user("alice"),
        app.token("alice")
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    let task = app
        .create_task("alice", json!({"title": "Via query"}))
        .await;
    let event = next_event(&mut ws, Duration::from_secs(2))
        .await
        .expect("event within 2 s");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["subject"], task["id"]);

    // A bad query token is refused before the upgrade.
    let bad = format!("ws://{}/api/alice/ws?access_token=not-a-jwt", app.addr);
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401 refusal, got {:?}", other.map(|(_, r)| r)),
    }
}

/// A WebSocket over a socket the test controls (`recv_buffer`: its receive buffer size).
async fn raw_ws(
    app: &TestApp,
    user: &str,
    recv_buffer: Option<u32>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let stream = socket.connect(app.addr).await.unwrap();
    let mut request = format!("ws://{}/api/{user}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("ws connect");
    assert_eq!(response.status(), 101);
    ws
}

/// Splits raw server-to-client WebSocket bytes into `(opcode, payload)` frames.
fn raw_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let masked = bytes[i + 1] & 0x80 != 0;
        let mut len = usize::from(bytes[i + 1] & 0x7f);
        i += 2;
        if len == 126 && i + 2 <= bytes.len() {
            len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        } else if len == 127 && i + 8 <= bytes.len() {
            len = u64::from_be_bytes(bytes[i..i + 8].try_into().unwrap()) as usize;
            i += 8;
        }
        if masked {
            i += 4;
        }
        if i + len > bytes.len() {
            break;
        }
        frames.push((opcode, bytes[i..i + len].to_vec()));
        i += len;
    }
    frames
}

#[tokio::test]
async fn a_slow_client_is_closed_with_1008_while_a_reading_client_of_the_same_user_gets_everything()
{
    let app = TestApp::spawn_with(Options::default().env("TODO_WS_QUEUE", "4")).await;
    app.wait_ready().await;

    // The slow client: a small receive buffer, and nobody reads it during the flood.
    let mut slow = raw_ws(&app, "alice", Some(4096)).await;

    // The reading client collects everything in the background.
    let mut fast = app.connect_ws("alice").await;
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (count_tx, count_rx) = tokio::sync::watch::channel(0usize);
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = fast.next().await {
                if let Message::Text(text) = message {
                    let mut received = received.lock().unwrap();
                    received.push(serde_json::from_str(&text).unwrap());
                    count_tx.send_replace(received.len());
                }
            }
        })
    };
    let got = |n: usize| {
        let mut rx = count_rx.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|c| *c >= n))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    };

    // Big events (4-byte characters, ~10 KB each) fill the slow client's TCP buffers
    // quickly. Each event is awaited on the reading client before the next is produced, so
    // only the slow client falls behind.
    let wide = |n: usize| "\u{1F600}".repeat(n);
    let tags: Vec<String> = (0..10).map(|i| format!("{i}{}", wide(31))).collect();
    let task = app
        .create_task(
            "alice",
            json!({"title": wide(200), "description": wide(2000), "tags": tags}),
        )
        .await;
    let mut produced = 1;
    assert!(got(produced).await, "reading client got the first event");
    let too_slow = |app: &TestApp| {
        app.logs()
            .iter()
            .any(|l| l.contains("\"message\":\"WebSocket closed for slowness\""))
    };
    while !too_slow(&app) {
        assert!(produced < 2000, "slow client never disconnected");
        let title = format!("{produced} {}", wide(190));
        put_task(&app, "alice", &task["id"], json!({ "title": title })).await;
        produced += 1;
        assert!(
            got(produced).await,
            "reading client missed event {produced}"
        );
    }
    eprintln!("slow client dropped after {produced} events");
    let line = query_finds(&app, "websocket-closed-slow", &[("service", "todo")]).await;
    assert_eq!(line["user_id"], "alice", "{line}");
    assert_eq!(line["queue"], 4, "{line}");
    assert_eq!(
        query_lines(&app.logs(), "websocket-closed-slow", &[]).len(),
        1,
        "only the slow client was closed"
    );

    // Now the slow client reads: after what was buffered comes a 1008 close with a reason.
    let (code, reason) = close_frame(&mut slow, Duration::from_secs(10))
        .await
        .expect("the slow client gets a close frame");
    assert_eq!(code, CloseCode::Policy, "reason: {reason}");
    assert!(!reason.is_empty(), "close frame carries a reason");
    app.wait_metric("todo_ws_closes_total", &["reason=\"slow_consumer\""], 1.0)
        .await;

    // The reading client keeps receiving, and got every event, in order.
    for i in 0..5 {
        put_task(
            &app,
            "alice",
            &task["id"],
            json!({"title": format!("after {i}")}),
        )
        .await;
    }
    produced += 5;
    assert!(
        got(produced).await,
        "reading client still receives after the slow one was dropped"
    );
    let events = received.lock().unwrap().clone();
    assert_eq!(events.len(), produced, "no duplicates or extras");
    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["data"]["task"]["version"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=produced as i64).collect();
    assert_eq!(versions, expected, "every version, in order");
    reader.abort();
}

#[tokio::test]
async fn server_pings_keep_an_answering_client_connected_and_drop_a_silent_one() {
    let app = TestApp::spawn_with(Options::default().env("TODO_WS_PING_SECS", "1")).await;
    app.wait_ready().await;
    let mut answering = app.connect_ws("alice").await;
    let mut silent = raw_ws(&app, "alice", None).await;

    // Read (and so answer pings) for 3.5 s: more than three ping intervals.
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut pings = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, answering.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => panic!("answering client closed: {frame:?}"),
            Ok(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert!(pings >= 2, "server pinged {pings} times in 3.5 s");

    // Still connected: an event arrives.
    let task = app
        .create_task("alice", json!({"title": "still here"}))
        .await;
    let event = next_event(&mut answering, Duration::from_secs(2))
        .await
        .expect("the answering client is still connected");
    assert_eq!(event["subject"], task["id"]);

    // The silent client answered no ping: the server sent pings, then a close frame with a
    // reason, then hung up. Read the raw bytes (a WebSocket library would try to answer
    // the pings on a socket the server has already closed).
    let mut bytes = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(2),
        silent.get_mut().read_to_end(&mut bytes),
    )
    .await
    .expect("the server hung up on the silent client")
    .unwrap();
    let frames = raw_frames(&bytes);
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert!(pings >= 2, "frames: {frames:?}");
    let (_, close) = frames
        .iter()
        .find(|(op, _)| *op == 0x8)
        .unwrap_or_else(|| panic!("no close frame in {frames:?}"));
    assert!(
        close.len() > 2,
        "close frame has a code and a reason: {close:?}"
    );
    let code = u16::from_be_bytes([close[0], close[1]]);
    assert_eq!(
        code,
        1001,
        "reason: {}",
        String::from_utf8_lossy(&close[2..])
    );

    // Logged as a lost connection, which the websocket-connection-lost query finds; the
    // answering client was not lost.
    let line = query_finds(&app, "websocket-connection-lost", &[("service", "todo")]).await;
    assert_eq!(line["user_id"], "alice", "{line}");
    assert_eq!(line["error"], "no pong received", "{line}");
    assert_eq!(
        query_lines(&app.logs(), "websocket-connection-lost", &[]).len(),
        1,
        "only the silent client was lost"
    );
    assert!(!query_matches(
        "websocket-connection-lost",
        &[],
        &with_field(&line, "level", "INFO")
    ));
}

// ---------------------------------------------------------------------------------------
// 2. Recurring tasks
// ---------------------------------------------------------------------------------------

/// Completes `task` and waits for its next occurrence (≤ 10 s); returns it and the latency.
async fn complete_and_wait_for_next(app: &TestApp, user: &str, task: &Value) -> (Value, Duration) {
    let started = Instant::now();
    app.complete_task(user, task["id"].as_str().unwrap(), Some(true))
        .await;
    let next = eventually(Duration::from_secs(10), || async {
        app.list_all(user, "status=all")
            .await
            .into_iter()
            .find(|t| t["parent_task_id"] == task["id"])
    })
    .await
    .expect("next occurrence within 10 s of completion");
    (next, started.elapsed())
}

#[tokio::test]
async fn completing_a_recurring_task_creates_exactly_one_next_occurrence_carrying_its_fields() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let task = app
        .create_task(
            "alice",
            json!({
                "title": "Water plants", "description": "balcony too",
                "tags": ["home", "garden"], "priority": "high",
                "due_at": "2031-03-10T09:00:00Z", "remind_before_minutes": 30,
                "recurrence": {"frequency": "daily", "interval": 3}
            }),
        )
        .await;
    let (next, latency) = complete_and_wait_for_next(&app, "alice", &task).await;
    eprintln!("next occurrence latency: {latency:?}");

    assert_ne!(next["id"], task["id"]);
    assert_eq!(next["parent_task_id"], task["id"]);
    assert_eq!(
        next["due_at"], "2031-03-13T09:00:00Z",
        "steps from the previous due_at"
    );
    for field in [
        "title",
        "description",
        "tags",
        "priority",
        "remind_before_minutes",
        "recurrence",
        "user_id",
    ] {
        assert_eq!(next[field], task[field], "{field} carried over");
    }
    assert_eq!(next["completed"], false);
    assert_eq!(next["completed_at"], Value::Null);
    assert_eq!(next["version"], 1);

    // Toggling back and forth creates no more.
    let id = task["id"].as_str().unwrap();
    for _ in 0..3 {
        app.complete_task("alice", id, Some(false)).await;
        app.complete_task("alice", id, Some(true)).await;
    }
    app.complete_task("alice", id, None).await; // toggle: pending
    app.complete_task("alice", id, None).await; // toggle: completed
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = app.list_all("alice", "status=all").await;
    assert_eq!(all.len(), 2, "exactly one next occurrence: {all:#?}");
}

#[tokio::test]
async fn monthly_on_the_31st_goes_to_february_28_and_back_to_march_31() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let jan = app
        .create_task(
            "alice",
            json!({"title": "Month end", "due_at": "2031-01-31T08:00:00Z",
                   "recurrence": {"frequency": "monthly", "interval": 1}}),
        )
        .await;
    let (feb, _) = complete_and_wait_for_next(&app, "alice", &jan).await;
    assert_eq!(feb["due_at"], "2031-02-28T08:00:00Z");
    let (mar, _) = complete_and_wait_for_next(&app, "alice", &feb).await;
    assert_eq!(mar["due_at"], "2031-03-31T08:00:00Z");
    assert_eq!(mar["parent_task_id"], feb["id"]);
}

#[tokio::test]
async fn yearly_on_february_29_goes_to_february_28_and_daily_and_weekly_step_by_interval() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let cases = [
        ("yearly", 1, "2032-02-29T12:00:00Z", "2033-02-28T12:00:00Z"),
        ("daily", 2, "2031-12-31T23:30:00Z", "2032-01-02T23:30:00Z"),
        ("weekly", 3, "2031-05-01T07:15:00Z", "2031-05-22T07:15:00Z"),
        ("monthly", 2, "2031-11-30T10:00:00Z", "2032-01-30T10:00:00Z"),
    ];
    for (frequency, interval, due, expected) in cases {
        let task = app
            .create_task(
                "alice",
                json!({"title": frequency, "due_at": due,
                       "recurrence": {"frequency": frequency, "interval": interval}}),
            )
            .await;
        let (next, _) = complete_and_wait_for_next(&app, "alice", &task).await;
        assert_eq!(
            next["due_at"], expected,
            "{frequency} x{interval} from {due}"
        );
    }
}

#[tokio::test]
async fn a_series_whose_next_due_date_would_pass_the_year_9999_ends_without_a_next_occurrence() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let last = app
        .create_task(
            "alice",
            json!({"title": "x", "due_at": "9999-12-31T23:59:59Z",
                   "recurrence": {"frequency": "yearly", "interval": 365}}),
        )
        .await;
    let id = last["id"].as_str().unwrap().to_owned();
    app.complete_task("alice", &id, Some(true)).await;

    // The positive signal that `recurring` has handled the completion: its log line.
    let line = log_line(
        &app,
        "recurring series ended: no next due date within years 1970-9999",
        Duration::from_secs(10),
        |v| v["task_id"] == id.as_str(),
    )
    .await
    .expect("the series' end is logged within 10 s of the completion");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["consumer"], "recurring", "{line}");
    assert_eq!(line["event_type"], "task.completed", "{line}");
    assert_eq!(line["due_at"], "9999-12-31T23:59:59Z", "{line}");
    let event_id = line["event_id"].clone();
    let completion = eventually(Duration::from_secs(10), || async {
        audit_all(
            &app,
            "alice",
            &format!("task_id={id}&event_type=task.completed"),
        )
        .await
        .first()
        .map(|e| e["event_id"].clone())
    })
    .await;
    assert_eq!(
        completion,
        Some(event_id),
        "the line names the completion event"
    );
    let ended = eventually(Duration::from_secs(30), || {
        metric(
            &app,
            "todo_recurring_completions_total",
            &["outcome=\"series_ended\""],
        )
    })
    .await;
    assert_eq!(ended, Some(1.0));

    let all = app.list_all("alice", "status=all").await;
    assert_eq!(all.len(), 1, "no next occurrence: {all:#?}");
    assert_eq!(all[0]["id"], last["id"]);
    assert_eq!(all[0]["completed"], true);
    assert_eq!(
        sqlite_scalar(&app.data_dir, "SELECT COUNT(*) FROM recurrence_spawns").await,
        0
    );
    assert_eq!(
        sqlite_scalar(&app.data_dir, "SELECT COUNT(*) FROM dead_letters").await,
        0,
        "an ended series is handled, not dead-lettered"
    );
    assert!(
        !app.logs().iter().any(|l| l.contains("unreadable")),
        "nothing was skipped"
    );

    // The next completion of a series still in range gets its next occurrence.
    let task = app
        .create_task(
            "alice",
            json!({"title": "y", "due_at": "9999-11-30T23:59:59Z",
                   "recurrence": {"frequency": "monthly", "interval": 1}}),
        )
        .await;
    let (next, _) = complete_and_wait_for_next(&app, "alice", &task).await;
    assert_eq!(next["due_at"], "9999-12-30T23:59:59Z");
}

// ---------------------------------------------------------------------------------------
// 3. Reminders
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reminders_follow_the_due_date_and_offset_and_are_cancelled_by_completion_or_deletion() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "Dentist", "due_at": "2031-06-01T10:00:00Z",
                   "remind_before_minutes": 30}),
        )
        .await;
    let id = &task["id"];
    let r = reminder_where(&app, "alice", id, |r| r["status"] == "scheduled").await;
    assert_eq!(ts(&r["remind_at"]), ts(&json!("2031-06-01T09:30:00Z")));
    assert_eq!(ts(&r["due_at"]), ts(&json!("2031-06-01T10:00:00Z")));

    put_task(&app, "alice", id, json!({"due_at": "2031-06-01T11:00:00Z"})).await;
    reminder_where(&app, "alice", id, |r| {
        r["status"] == "scheduled"
            && ts(&r["remind_at"]) == ts(&json!("2031-06-01T10:30:00Z"))
            && ts(&r["due_at"]) == ts(&json!("2031-06-01T11:00:00Z"))
    })
    .await;

    put_task(&app, "alice", id, json!({"remind_before_minutes": 60})).await;
    reminder_where(&app, "alice", id, |r| {
        r["status"] == "scheduled" && ts(&r["remind_at"]) == ts(&json!("2031-06-01T10:00:00Z"))
    })
    .await;

    app.complete_task("alice", id.as_str().unwrap(), Some(true))
        .await;
    reminder_where(&app, "alice", id, |r| r["status"] == "cancelled").await;

    // Deleting cancels too.
    let other = app
        .create_task(
            "alice",
            json!({"title": "Call mum", "due_at": "2031-07-01T10:00:00Z"}),
        )
        .await;
    let r = reminder_where(&app, "alice", &other["id"], |r| r["status"] == "scheduled").await;
    assert_eq!(
        ts(&r["remind_at"]),
        ts(&json!("2031-07-01T09:45:00Z")),
        "15 minutes by default"
    );
    delete_task(&app, "alice", &other["id"]).await;
    reminder_where(&app, "alice", &other["id"], |r| r["status"] == "cancelled").await;

    // So does clearing the offset.
    let third = app
        .create_task(
            "alice",
            json!({"title": "Renew passport", "due_at": "2031-08-01T10:00:00Z"}),
        )
        .await;
    reminder_where(&app, "alice", &third["id"], |r| r["status"] == "scheduled").await;
    put_task(
        &app,
        "alice",
        &third["id"],
        json!({"remind_before_minutes": null}),
    )
    .await;
    reminder_where(&app, "alice", &third["id"], |r| r["status"] == "cancelled").await;

    // Bob sees none of alice's reminders.
    let bobs = app.get_json("bob", "/reminders").await;
    assert_eq!(bobs["items"], json!([]));
}

#[tokio::test]
async fn a_due_reminder_is_delivered_once_on_time_to_the_socket_and_notifications() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let (body, remind_at) = reminding_in("Stand-up", 2);
    let task = app.create_task("alice", body).await;

    let event = next_of_type(&mut ws, "reminder.due", Duration::from_secs(8))
        .await
        .expect("reminder.due on the socket");
    let received_at = Utc::now();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "todo/notification");
    assert_eq!(event["subject"], task["id"]);
    assert_eq!(event["datacontenttype"], "application/json");
    uuid::Uuid::parse_str(event["id"].as_str().unwrap()).unwrap();
    let data = &event["data"];
    assert_eq!(data["user_id"], app.user("alice"));
    assert_eq!(data["task_id"], task["id"]);
    assert_eq!(data["title"], "Stand-up");
    assert_eq!(ts(&data["due_at"]), ts(&task["due_at"]));
    assert_eq!(ts(&data["remind_at"]), remind_at);
    assert!(received_at >= remind_at, "not delivered early");

    let notes = notifications_for(&app, "alice", &task["id"]).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(note["title"], "Stand-up");
    assert_eq!(ts(&note["due_at"]), ts(&task["due_at"]));
    assert_eq!(ts(&note["remind_at"]), remind_at);
    let lag = ts(&note["delivered_at"]) - remind_at;
    eprintln!(
        "reminder lag (delivered_at - remind_at): {} ms; socket receipt {} ms after remind_at",
        lag.num_milliseconds(),
        (received_at - remind_at).num_milliseconds()
    );
    assert!(
        lag >= chrono::Duration::zero() && lag <= chrono::Duration::seconds(1),
        "lag {lag}"
    );
    let r = reminder_for(&app, "alice", &task["id"]).await.unwrap();
    assert_eq!(r["status"], "sent");

    // Not delivered twice.
    assert_eq!(
        next_of_type(&mut ws, "reminder.due", Duration::from_secs(2)).await,
        None
    );
    assert_eq!(notifications_for(&app, "alice", &task["id"]).await.len(), 1);
}

#[tokio::test]
async fn a_reminder_that_falls_due_while_the_server_is_down_is_delivered_once_after_restart() {
    let mut app = TestApp::spawn().await;
    app.wait_ready().await;
    let (body, remind_at) = reminding_in("While down", 2);
    let task = app.create_task("alice", body).await;
    reminder_where(&app, "alice", &task["id"], |r| r["status"] == "scheduled").await;
    app.kill9().await;
    let temp = app.take_temp();
    let data_dir = app.data_dir.clone();
    drop(app);

    // Stay down past remind_at.
    let wait = (remind_at - Utc::now() + chrono::Duration::milliseconds(500))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    assert_eq!(
        sqlite_scalar(&data_dir, "SELECT COUNT(*) FROM notifications").await,
        0,
        "nothing delivered while down"
    );

    let mut app = TestApp::spawn_with(Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    })
    .await;
    let notes = eventually(Duration::from_secs(5), || async {
        let notes = notifications_for(&app, "alice", &task["id"]).await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .expect("delivered after restart");
    assert_eq!(notes.len(), 1);
    assert!(ts(&notes[0]["delivered_at"]) > remind_at);

    // A graceful restart does not deliver it again.
    let (_, clean) = app.terminate().await;
    assert!(clean);
    drop(app);
    let app = TestApp::spawn_with(Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(notifications_for(&app, "alice", &task["id"]).await.len(), 1);
    let dues = audit_all(
        &app,
        "alice",
        &format!(
            "task_id={}&event_type=reminder.due",
            task["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(dues.len(), 1, "one reminder.due event: {dues:#?}");
    drop(temp);
}

// ---------------------------------------------------------------------------------------
// 4. Webhook
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_webhook_post_is_signed_and_carries_the_reminder_due_cloudevent() {
    use hmac::{Hmac, Mac};
    let receiver = Receiver::start(Answer::Ok).await;
    let app = spawn_with_webhook(&receiver).await;
    app.wait_ready().await;
    let (body, remind_at) = reminding_in("Hooked", 2);
    let task = app.create_task("alice", body).await;

    let hits = receiver.wait_for(1, Duration::from_secs(8)).await;
    let hit = &hits[0];
    let timestamp = hit.header("x-todo-timestamp");
    let seconds: i64 = timestamp.parse().expect("unix seconds");
    assert!(
        (seconds - Utc::now().timestamp()).abs() < 60,
        "fresh timestamp"
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", hit.body).as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hit.header("x-todo-signature"), expected);

    let event = hit.json();
    assert_eq!(event["type"], "reminder.due");
    // The request carries the trace on: the `traceparent` of the webhook's span, in the
    // trace of the event (which continues the trace of the request that planned it).
    let header: Vec<&str> = hit.header("traceparent").split('-').collect();
    let carried: Vec<&str> = event["traceparent"]
        .as_str()
        .expect("reminder.due carries a traceparent")
        .split('-')
        .collect();
    assert_eq!(header.len(), 4, "{header:?}");
    assert_eq!(
        header[1], carried[1],
        "the webhook call is in the event's trace"
    );
    assert_ne!(header[2], carried[2], "as a span of its own");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "todo/notification");
    assert_eq!(event["subject"], task["id"]);
    assert_eq!(hit.header("x-todo-event-id"), event["id"].as_str().unwrap());
    assert_eq!(event["data"]["user_id"], "alice");
    assert_eq!(event["data"]["task_id"], task["id"]);
    assert_eq!(event["data"]["title"], "Hooked");
    assert_eq!(ts(&event["data"]["remind_at"]), remind_at);
    assert_eq!(ts(&event["data"]["due_at"]), ts(&task["due_at"]));
    assert!(hit.at >= remind_at);

    // The same event the audit log recorded.
    let audited = eventually(Duration::from_secs(2), || async {
        audit_all(&app, "alice", "event_type=reminder.due")
            .await
            .into_iter()
            .next()
    })
    .await
    .expect("reminder.due audited");
    assert_eq!(audited["event_id"], event["id"]);

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.hits().len(), 1, "delivered once");
}

#[tokio::test]
async fn a_webhook_receiver_failing_twice_gets_exactly_three_attempts() {
    let receiver = Receiver::start(Answer::FailFirst(2)).await;
    let app = spawn_with_webhook(&receiver).await;
    app.wait_ready().await;
    let (body, remind_at) = reminding_in("Retried", 1);
    app.create_task("alice", body).await;

    // 100 ms, then 200 ms backoff: three attempts well within 3 s of the reminder.
    let until = (remind_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(4);
    let hits = receiver.wait_for(3, until).await;
    eprintln!(
        "webhook attempts at (ms after remind_at): {:?}",
        hits.iter()
            .map(|h| (h.at - remind_at).num_milliseconds())
            .collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 3, "exactly three attempts");
    let id = hits[0].header("x-todo-event-id").to_owned();
    assert!(hits.iter().all(|h| h.header("x-todo-event-id") == id));
    assert!(hits.iter().all(|h| h.body == hits[0].body), "same payload");
}

#[tokio::test]
async fn a_webhook_receiver_that_always_fails_is_given_up_after_the_configured_attempts() {
    let receiver = Receiver::start(Answer::Fail).await;
    let app = TestApp::spawn_with(
        webhook_options(&receiver).env("TODO_NOTIFY_WEBHOOK_MAX_ATTEMPTS", "3"),
    )
    .await;
    app.wait_ready().await;
    let (body, remind_at) = reminding_in("Refused", 1);
    app.create_task("alice", body).await;

    let until = (remind_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(4);
    let hits = receiver.wait_for(3, until).await;
    let id = hits[0].header("x-todo-event-id").to_owned();
    let line = query_finds(&app, "webhook-given-up", &[("service", "todo")]).await;
    assert_eq!(line["event_id"], id.as_str(), "{line}");
    app.wait_metric("todo_webhook_attempts_total", &["outcome=\"failed\""], 1.0)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.hits().len(), 3, "no attempt after the last one");
    let logs = app.logs();
    assert_eq!(query_lines(&logs, "webhook-given-up", &[]).len(), 1);
    // The two attempts before were retries: warnings the query passes over.
    let retried: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("\"message\":\"webhook failed; will retry\""))
        .collect();
    assert_eq!(retried.len(), 2, "{logs:#?}");
    assert!(
        retried
            .iter()
            .all(|l| !query_matches("webhook-given-up", &[], l))
    );
}

#[tokio::test]
async fn a_hanging_webhook_receiver_does_not_delay_another_tasks_reminder() {
    let receiver = Receiver::start(Answer::HangOn("hangs")).await;
    let app = spawn_with_webhook(&receiver).await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let (first, _) = reminding_in("hangs", 1);
    let (second, second_at) = reminding_in("flows", 3);
    app.create_task("alice", first).await;
    let flows = app.create_task("alice", second).await;

    let until = (second_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(3);
    let hits = receiver.wait_for(2, until).await;
    let hung = hits
        .iter()
        .find(|h| h.json()["data"]["title"] == "hangs")
        .expect("the hanging request arrived");
    let flowed = hits
        .iter()
        .find(|h| h.json()["data"]["title"] == "flows")
        .expect("the second reminder's request arrived");
    let late = flowed.at - second_at;
    eprintln!(
        "second webhook {} ms after its remind_at, first still hanging",
        late.num_milliseconds()
    );
    assert!(
        late <= chrono::Duration::seconds(1),
        "second webhook late by {late}"
    );
    // The receiver holds the first request 30 s (the sender gives up after 10 s), so it
    // was still hanging when the second arrived.
    assert!(flowed.at - hung.at < chrono::Duration::seconds(9));

    // The socket got the second reminder on time too.
    let event = loop {
        let event = next_of_type(&mut ws, "reminder.due", Duration::from_secs(5))
            .await
            .expect("reminder.due on the socket");
        if event["subject"] == flows["id"] {
            break event;
        }
    };
    assert_eq!(ts(&event["data"]["remind_at"]), second_at);
}

// ---------------------------------------------------------------------------------------
// 5. Audit
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_event_is_audited_once_newest_first_with_filters_and_paging() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;

    let one = app
        .create_task(
            "alice",
            json!({"title": "One", "due_at": "2031-01-01T10:00:00Z"}),
        )
        .await;
    put_task(&app, "alice", &one["id"], json!({"title": "One!"})).await;
    app.complete_task("alice", one["id"].as_str().unwrap(), Some(true))
        .await;
    delete_task(&app, "alice", &one["id"]).await;
    let (body, _) = reminding_in("Two", 1);
    let two = app.create_task("alice", body).await;
    app.create_task("bob", json!({"title": "Bob's"})).await;

    // What the socket saw is every event of alice's, in bus order.
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut ws, Duration::from_secs(6))
            .await
            .expect("events keep coming until reminder.due");
        let done = event["type"] == "reminder.due";
        seen.push(event);
        if done {
            break;
        }
    }
    while let Some(event) = next_event(&mut ws, Duration::from_millis(500)).await {
        seen.push(event);
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in [
        "task.created",
        "task.updated",
        "task.completed",
        "task.deleted",
        "reminder.scheduled",
        "reminder.due",
    ] {
        assert!(types.contains(&kind), "{kind} missing from {types:?}");
    }

    let audit = eventually(Duration::from_secs(5), || async {
        let all = audit_all(&app, "alice", "limit=200").await;
        (all.len() >= seen.len()).then_some(all)
    })
    .await
    .expect("everything audited");
    assert_eq!(audit.len(), seen.len(), "each event once, nothing else");
    // Newest first by event time; events of the same instant, latest on the bus first.
    let mut newest_first: Vec<&serde_json::Value> = seen.iter().rev().collect();
    newest_first.sort_by_key(|e| std::cmp::Reverse(ts(&e["time"])));
    for (entry, event) in audit.iter().zip(newest_first) {
        assert_eq!(entry["event_id"], event["id"], "newest first");
        assert_eq!(entry["event_type"], event["type"]);
        assert_eq!(entry["task_id"], event["subject"]);
        assert_eq!(ts(&entry["occurred_at"]), ts(&event["time"]));
        assert_eq!(entry["source"], event["source"]);
        assert_eq!(entry["data"], event["data"]);
        assert!(ts(&entry["recorded_at"]) >= ts(&entry["occurred_at"]));
    }
    for pair in audit.windows(2) {
        assert!(ts(&pair[0]["occurred_at"]) >= ts(&pair[1]["occurred_at"]));
    }

    // Filters.
    let only_one = audit_all(
        &app,
        "alice",
        &format!("task_id={}", one["id"].as_str().unwrap()),
    )
    .await;
    let expected: Vec<_> = audit
        .iter()
        .filter(|e| e["task_id"] == one["id"])
        .cloned()
        .collect();
    assert!(expected.len() >= 5, "{expected:#?}");
    assert_eq!(only_one, expected);
    let creations = audit_all(&app, "alice", "event_type=task.created").await;
    let ids: Vec<_> = creations.iter().map(|e| e["task_id"].clone()).collect();
    assert_eq!(ids, vec![two["id"].clone(), one["id"].clone()]);
    let due = audit_all(
        &app,
        "alice",
        &format!(
            "event_type=reminder.due&task_id={}",
            two["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(due.len(), 1);

    // Paging: limit 3 walks the same list; the last page says so.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/audit?limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json("alice", &path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        paged.extend(items.iter().cloned());
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, audit);
    assert_eq!(pages, audit.len().div_ceil(3));

    // Bob's log holds only his event.
    let bobs = audit_all(&app, "bob", "").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["event_type"], "task.created");

    // Bad filters are 422 naming the field.
    for (query, field) in [
        ("task_id=not-a-uuid", "task_id"),
        ("event_type=task.exploded", "event_type"),
        ("limit=0", "limit"),
    ] {
        let response = app
            .request(reqwest::Method::GET, "alice", &format!("/audit?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{query}");
        let problem: Value = response.json().await.unwrap();
        let fields: Vec<_> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].clone())
            .collect();
        assert!(fields.contains(&json!(field)), "{query}: {problem}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_finishes_in_flight_requests_and_exits_cleanly() {
    let mut app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let addr: SocketAddr = app.addr;

    // A request whose body is still arriving when SIGTERM lands.
    let body = json!({"title": "in flight"}).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        app.token("alice"),
        body.len()
    );
    http.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let finish_request = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        http.write_all(tail.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), http.read_to_end(&mut response))
            .await
            .expect("response within 10 s")
            .expect("response read");
        String::from_utf8_lossy(&response).into_owned()
    };
    let ((took, clean), response, close) = tokio::join!(
        app.terminate(),
        finish_request,
        close_frame(&mut ws, Duration::from_secs(10)),
    );
    eprintln!("graceful shutdown took {took:?}");
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request completed: {response}"
    );
    let (code, _) = close.expect("socket got a close frame");
    assert_eq!(code, CloseCode::Away);
    assert!(clean, "exit status is success");
    assert!(took < Duration::from_secs(10), "exited in {took:?}");
    assert_eq!(
        sqlite_scalar(&app.data_dir, "SELECT COUNT(*) FROM tasks").await,
        1,
        "the in-flight task was stored"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Split services
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_process_running_api_and_audit_serves_only_their_routes() {
    let app = TestApp::spawn_with(Options::default().env("TODO_SERVICES", "api,audit")).await;
    app.wait_ready().await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let task = app.create_task("alice", json!({"title": "Split"})).await;
    assert_eq!(app.list_all("alice", "").await.len(), 1);
    let audited = eventually(Duration::from_secs(5), || async {
        audit_all(&app, "alice", "").await.into_iter().next()
    })
    .await
    .expect("audit runs here");
    assert_eq!(audited["task_id"], task["id"]);

    for path in ["/ws", "/reminders", "/notifications"] {
        let response = app
            .request(reqwest::Method::GET, "alice", path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path} is not served");
    }
}

#[tokio::test]
async fn an_unknown_service_name_or_bad_listen_address_stops_the_binary_with_a_message() {
    let (status, stderr) = run_binary(&[], &[("TODO_SERVICES", "api,billing")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("billing") && stderr.contains("services"),
        "{stderr}"
    );
    let (status, stderr) = run_binary(&["--services", "audit,shipping"], &[]).await;
    assert!(!status.success());
    assert!(stderr.contains("shipping"), "{stderr}");

    let (status, stderr) = run_binary(&[], &[("TODO_LISTEN_ADDR", "not-an-address")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("not-an-address") && stderr.to_lowercase().contains("listen"),
        "{stderr}"
    );

    // Parses, but cannot be bound (TEST-NET-1 is never local).
    let (status, stderr) = run_binary(&[], &[("TODO_LISTEN_ADDR", "192.0.2.1:80")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("192.0.2.1:80") && stderr.contains("TODO_LISTEN_ADDR"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_empty_or_unknown_database_url_stops_the_binary_with_a_message() {
    // Empty is not taken for unset: a secret that came out empty must not start the
    // process on a fresh SQLite file.
    for empty in ["", "  "] {
        let (status, stderr) = run_binary(&[], &[("DATABASE_URL", empty)]).await;
        assert_eq!(status.code(), Some(2), "{empty:?}: {stderr}");
        assert!(
            stderr.contains("--database-url") && stderr.contains("it is empty"),
            "{empty:?}: {stderr}"
        );
    }
    let (status, stderr) = run_binary(&[], &[("DATABASE_URL", "mysql://db/todo")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("must start with sqlite:// or postgres://"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_on_an_idle_server_always_exits_well_within_the_shutdown_timeout() {
    // Shutdown used to wait on a deadline that was only set if the server was still busy;
    // an idle server could then hang for ever. Repeat, since it was a race.
    for round in 0..10 {
        let mut app =
            TestApp::spawn_with(Options::default().env("TODO_SHUTDOWN_TIMEOUT_SECS", "3")).await;
        if round % 2 == 1 {
            // Sometimes after serving a request, sometimes straight away.
            app.wait_ready().await;
        }
        let (took, clean) = app.terminate().await;
        assert!(clean, "round {round}: exit was not clean");
        assert!(
            took < std::time::Duration::from_secs(3),
            "round {round}: shutdown took {took:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 8. Dead letters
// ---------------------------------------------------------------------------------------

/// Appends a CloudEvent to the server's outbox from outside the process, as another writer
/// sharing the file could; returns its `seq`.
fn inject_event(data_dir: &std::path::Path, event_type: &str, data: Value) -> (String, i64) {
    let id = uuid::Uuid::now_v7().to_string();
    let payload = json!({
        "specversion": "1.0", "id": id, "source": "todo/elsewhere", "type": event_type,
        "subject": uuid::Uuid::now_v7().to_string(),
        "time": rfc(Utc::now()), "datacontenttype": "application/json", "data": data,
    });
    let conn = rusqlite::Connection::open(data_dir.join("todo.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "INSERT INTO events (id, topic, key, payload, created_at) VALUES (?, 'task-events', ?, ?, ?)",
        rusqlite::params![
            id,
            data["user_id"].as_str().unwrap_or_default(),
            payload.to_string(),
            Utc::now().timestamp_micros()
        ],
    )
    .unwrap();
    (id, conn.last_insert_rowid())
}

/// A consumer whose write fails (here the audit log refuses inserts: a trigger the test
/// adds to the server's SQLite file) logs `event processing failed` for each attempt, which
/// the event-processing-failed query finds, and retries the same batch; once the write
/// works again the event is recorded once and nothing is dead-lettered.
#[tokio::test]
async fn a_consumer_whose_write_fails_logs_each_attempt_and_catches_up_once_it_works() {
    let app =
        TestApp::spawn_with(Options::default().env("TODO_CONSUMER_MAX_ATTEMPTS", "100")).await;
    app.wait_ready().await;
    let blocker = rusqlite::Connection::open(app.data_dir.join("todo.db")).unwrap();
    blocker.busy_timeout(Duration::from_secs(10)).unwrap();
    blocker
        .execute_batch(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'the audit log refuses writes'); END;",
        )
        .unwrap();
    let task = app
        .create_task("alice", json!({"title": "audited late"}))
        .await;
    let line = query_finds(&app, "event-processing-failed", &[("service", "todo")]).await;
    assert_eq!(line["consumer"], "audit", "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("refuses writes")),
        "{line}"
    );
    // Retried: a second attempt is logged too.
    let again = eventually(Duration::from_secs(10), || async {
        let lines = query_lines(&app.logs(), "event-processing-failed", &[]);
        (lines.iter().filter(|l| l["consumer"] == "audit").count() >= 2).then_some(lines)
    })
    .await
    .expect("a second attempt within 10 s");
    assert!(
        again
            .iter()
            .all(|l| l["event_id"] == line["event_id"] || l["consumer"] != "audit"),
        "the same batch: {again:#?}"
    );
    blocker.execute_batch("DROP TRIGGER refuse_audit").unwrap();
    drop(blocker);

    let audited = eventually(Duration::from_secs(15), || async {
        let entries = audit_all(&app, "alice", "event_type=task.created").await;
        (!entries.is_empty()).then_some(entries)
    })
    .await
    .expect("audited once the write works");
    assert_eq!(audited.len(), 1, "{audited:#?}");
    assert_eq!(audited[0]["task_id"], task["id"]);
    assert_eq!(
        sqlite_scalar(&app.data_dir, "SELECT COUNT(*) FROM dead_letters").await,
        0
    );
    // Retries are warnings, not errors of the service.
    assert!(
        query_lines(&app.logs(), "service-errors", &[])
            .iter()
            .all(|l| l["message"] != "event processing failed")
    );
}

/// `(consumer, event_id, reason, attempts)` of every dead letter, in a stable order.
fn dead_letters(data_dir: &std::path::Path) -> Vec<(String, String, String, i64)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("todo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT consumer, event_id, reason, attempts FROM dead_letters
             ORDER BY consumer, event_id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A log row whose payload is no CloudEvent (edited by hand, written by something else)
/// does not stop the log: every consumer keeps it as a dead letter (`unreadable_envelope`)
/// and the events after it still flow.
#[tokio::test]
async fn a_log_row_that_is_no_cloudevent_is_kept_by_every_consumer_and_later_events_flow() {
    let app = TestApp::spawn_with(common::Options::default()).await;
    app.wait_ready().await;
    let mut created = std::collections::HashSet::new();
    created.insert(app.create_titled("alice", "before").await);
    common::audited_once(&app, &[], "alice", &created, Duration::from_secs(10)).await;

    let id = uuid::Uuid::now_v7().to_string();
    let conn = rusqlite::Connection::open(app.data_dir.join("todo.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "INSERT INTO events (id, topic, key, payload, created_at) VALUES (?, 'task-events', 'alice', ?, ?)",
        rusqlite::params![
            id,
            json!({"id": id, "specversion": "1.0", "type": 7}).to_string(),
            Utc::now().timestamp_micros()
        ],
    )
    .unwrap();
    drop(conn);
    // The event after the bad row reaches the audit log: nothing waits behind the row.
    created.insert(app.create_titled("alice", "after").await);
    common::audited_once(&app, &[], "alice", &created, Duration::from_secs(10)).await;

    let mut expected: Vec<(String, String, String, i64)> =
        ["audit", "notification", "recurring", "sync"]
            .into_iter()
            .map(|c| {
                (
                    c.to_owned(),
                    id.clone(),
                    "unreadable_envelope".to_owned(),
                    1,
                )
            })
            .collect();
    expected.sort();
    let kept = eventually(Duration::from_secs(10), || async {
        let kept = dead_letters(&app.data_dir);
        (kept.len() >= expected.len()).then_some(kept)
    })
    .await
    .unwrap_or_else(|| panic!("dead letters: {:#?}", dead_letters(&app.data_dir)));
    assert_eq!(kept, expected);
    app.wait_metric(
        "todo_events_dead_lettered_total",
        &["consumer=\"audit\"", "reason=\"unreadable_envelope\""],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn events_consumers_cannot_handle_are_kept_counted_and_logged_and_later_events_still_flow() {
    let mut app = TestApp::spawn().await;
    app.wait_ready().await;
    let mut ws = app.connect_ws("alice").await;
    let before = app.create_task("alice", json!({"title": "before"})).await;
    next_of_type(&mut ws, "task.created", Duration::from_secs(2))
        .await
        .expect("the socket works");

    // A completion whose data is not a task; an update naming no user; a type this build
    // does not know.
    let (not_a_task, not_a_task_seq) = inject_event(
        &app.data_dir,
        "task.completed",
        json!({"user_id": "mallory", "task": {"id": "not-a-task"}}),
    );
    let (no_owner, _) = inject_event(&app.data_dir, "task.updated", json!({"title": "orphan"}));
    let (unknown, last_seq) = inject_event(
        &app.data_dir,
        "task.archived",
        json!({"user_id": "mallory"}),
    );

    let mut expected = vec![
        ("audit", &no_owner, "no_user_id"),
        ("notification", &no_owner, "unreadable_data"),
        ("notification", &not_a_task, "unreadable_data"),
        ("notification", &unknown, "unknown_type"),
        ("recurring", &not_a_task, "unreadable_data"),
        ("sync", &no_owner, "no_user_id"),
    ]
    .into_iter()
    .map(|(c, id, r)| (c.to_owned(), id.clone(), r.to_owned(), 1))
    .collect::<Vec<_>>();
    expected.sort();
    let kept = eventually(Duration::from_secs(10), || async {
        let kept = dead_letters(&app.data_dir);
        (kept.len() >= expected.len()).then_some(kept)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "dead letters within 10 s: {:#?}",
            dead_letters(&app.data_dir)
        )
    });
    assert_eq!(kept, expected);

    // Each row keeps the event as delivered, where it was, and why it failed.
    let conn = rusqlite::Connection::open_with_flags(
        app.data_dir.join("todo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (event_type, position, payload, error): (String, i64, String, String) = conn
        .query_row(
            "SELECT event_type, position, payload, error FROM dead_letters
             WHERE consumer = 'recurring' AND event_id = ?",
            [&not_a_task],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    drop(conn);
    assert_eq!(
        (event_type.as_str(), position),
        ("task.completed", not_a_task_seq)
    );
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload["id"], not_a_task.as_str());
    assert_eq!(payload["data"]["task"]["id"], "not-a-task");
    assert!(
        error.contains("event data does not match its type"),
        "{error}"
    );

    // Counted, by consumer and reason.
    for (consumer, reason, count) in [
        ("recurring", "unreadable_data", 1.0),
        ("notification", "unreadable_data", 2.0),
        ("notification", "unknown_type", 1.0),
        ("audit", "no_user_id", 1.0),
        ("sync", "no_user_id", 1.0),
    ] {
        let labels = [
            format!("consumer=\"{consumer}\""),
            format!("reason=\"{reason}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let value = eventually(Duration::from_secs(30), || async {
            metric(&app, "todo_events_dead_lettered_total", &labels)
                .await
                .filter(|v| *v >= count)
        })
        .await;
        assert_eq!(value, Some(count), "{consumer} {reason}");
    }

    // Logged, once per consumer and event, naming both and the error.
    let line = log_line(&app, "event dead-lettered", Duration::from_secs(5), |v| {
        v["consumer"] == "recurring" && v["event_id"] == not_a_task.as_str()
    })
    .await
    .expect("logged");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["reason"], "unreadable_data", "{line}");
    assert_eq!(line["event_type"], "task.completed", "{line}");
    assert_eq!(line["position"], not_a_task_seq, "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match")),
        "{line}"
    );
    let logged = eventually(Duration::from_secs(5), || async {
        let logged = app
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "event dead-lettered")
            .count();
        (logged >= expected.len()).then_some(logged)
    })
    .await;
    assert_eq!(logged, Some(expected.len()));
    assert!(!app.logs().iter().any(|l| l.contains("skipped")));
    // The event-dead-lettered query finds exactly these lines, and they are errors of the
    // service.
    let logs = app.logs();
    let found = assert_query_finds(&logs, "event-dead-lettered", &[("service", "todo")]);
    assert_eq!(found["message"], "event dead-lettered");
    assert_eq!(
        query_lines(&logs, "event-dead-lettered", &[]).len(),
        expected.len()
    );
    assert_query_finds(&logs, "service-errors", &[("service", "todo")]);
    let errors = query_lines(&logs, "service-errors", &[("service", "todo")]);
    assert!(
        errors.len() >= expected.len() && errors.iter().all(|l| l["level"] == "ERROR"),
        "{errors:#?}"
    );

    // Every consumer moved past them and handles what comes next.
    let recurring = app
        .create_task(
            "alice",
            json!({"title": "after", "due_at": "2031-03-10T09:00:00Z",
                   "recurrence": {"frequency": "daily", "interval": 1}}),
        )
        .await;
    next_of_type(&mut ws, "task.created", Duration::from_secs(2))
        .await
        .expect("sync pushes later events");
    complete_and_wait_for_next(&app, "alice", &recurring).await;
    reminder_for(&app, "alice", &recurring["id"])
        .await
        .expect("notification plans later events");
    let audited = eventually(Duration::from_secs(5), || async {
        let entries = audit_all(&app, "alice", "").await;
        (entries.len() >= 4).then_some(entries)
    })
    .await
    .expect("audit records later events");
    assert!(audited.iter().any(|e| e["task_id"] == before["id"]));
    for consumer in ["recurring", "notification", "sync", "audit"] {
        let committed = eventually(Duration::from_secs(5), || async {
            let sql = format!(
                "SELECT COALESCE(MAX(position), 0) FROM consumer_positions WHERE consumer = '{consumer}'"
            );
            let position = sqlite_scalar(&app.data_dir, &sql).await;
            (position >= last_seq).then_some(position)
        })
        .await;
        assert!(
            committed.is_some(),
            "{consumer} committed past the bad events"
        );
    }

    // A redelivery (here: recurring replays the log after a restart) counts an attempt on
    // the same row instead of adding one.
    let (_, clean) = app.terminate().await;
    assert!(clean);
    let temp = app.take_temp();
    let data_dir = app.data_dir.clone();
    drop(app);
    {
        let conn = rusqlite::Connection::open(data_dir.join("todo.db")).unwrap();
        conn.execute(
            "UPDATE consumer_positions SET position = ? WHERE consumer = 'recurring'",
            [not_a_task_seq - 1],
        )
        .unwrap();
    }
    let app = TestApp::spawn_with(Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    })
    .await;
    let replayed = eventually(Duration::from_secs(10), || async {
        let kept = dead_letters(&data_dir);
        kept.iter()
            .any(|(c, id, _, attempts)| c == "recurring" && *id == not_a_task && *attempts == 2)
            .then_some(kept)
    })
    .await
    .expect("the redelivered event counts a second attempt");
    assert_eq!(replayed.len(), expected.len(), "{replayed:#?}");
    drop(app);
    drop(temp);
}
