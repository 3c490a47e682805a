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
        // Reminder events are audited too: wait for the three task events themselves.
        let tasks = types(&items)
            .iter()
            .filter(|t| t.starts_with("task."))
            .count();
        (tasks >= 3).then_some(items)
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

/// Every webhook request a test receiver got, by body.
#[derive(Default, Clone)]
struct Hooks(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Hooks {
    /// A receiver on 127.0.0.1:0 answering 200 to every POST; returns its URL.
    async fn start(&self) -> String {
        let hits = self.0.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let hits = hits.clone();
                async move {
                    hits.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    fn event_ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_str::<Value>(b).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

/// Two `notification` processes on one database, both planning and delivering: each
/// reminder is delivered, and its webhook posted, exactly once.
#[tokio::test]
async fn two_notification_processes_deliver_each_reminder_and_webhook_once() {
    let schema = pg::Schema::create().await;
    let hooks = Hooks::default();
    let hook_url = hooks.start().await;
    let api = spawn(&schema.url(), "api").await;
    let notifier = |_: u8| {
        TestApp::spawn_with(
            Options::default()
                .env("DATABASE_URL", schema.url())
                .env("TODO_SERVICES", "notification")
                .env("TODO_NOTIFY_WEBHOOK_URL", hook_url.clone())
                .env("TODO_NOTIFY_WEBHOOK_SECRET", "two-replicas-secret"),
        )
    };
    let (first, second) = tokio::join!(notifier(1), notifier(2));
    first.wait_ready().await;
    second.wait_ready().await;

    // Due in 61 s with a one-minute reminder: each falls due about a second from now.
    const TASKS: usize = 30;
    let due = (chrono::Utc::now() + chrono::Duration::seconds(61))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in 0..TASKS {
        api.create_task(
            "alice",
            json!({"title": format!("r{i}"), "due_at": due, "remind_before_minutes": 1}),
        )
        .await;
    }
    // Done when no reminder is left to deliver and no webhook is left to send: after that,
    // no process holds work it could repeat.
    let admin = pg::admin().await;
    let settled = eventually(Duration::from_secs(30), || async {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {s}.reminders WHERE status = 'sent'),
                    (SELECT count(*) FROM {s}.reminders WHERE status <> 'sent'),
                    (SELECT count(*) FROM {s}.webhook_deliveries WHERE status = 'delivered'),
                    (SELECT count(*) FROM {s}.webhook_deliveries WHERE status <> 'delivered')",
            s = schema.name
        );
        let row = admin.query_one(&sql, &[]).await.ok()?;
        let (sent, open, delivered, pending): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        (sent == TASKS as i64 && open == 0 && delivered == TASKS as i64 && pending == 0)
            .then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "every reminder sent and every webhook delivered within 30 s"
    );

    let notifications = first.get_json("alice", "/notifications?limit=200").await;
    assert_eq!(
        notifications["items"].as_array().map(Vec::len),
        Some(TASKS),
        "one notification per reminder"
    );
    let mut ids = hooks.event_ids();
    assert_eq!(
        ids.len(),
        TASKS,
        "one webhook request per reminder: {ids:?}"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), TASKS, "no reminder.due posted twice");
    // Both processes took part (either one alone would also deliver each once).
    let delivered = |app: &TestApp| {
        let app = app.base.clone();
        async move {
            let text = reqwest::get(format!("{app}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .filter(|l| l.starts_with("todo_reminders_delivered_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let (a, b) = (delivered(&first).await, delivered(&second).await);
    assert_eq!(
        a + b,
        TASKS as f64,
        "deliveries counted across the two: {a} + {b}"
    );
}
