//! Dapr mode (`TODO_BUS=dapr`) through the real binary, on PostgreSQL. The sidecar is a
//! test double that follows Dapr's documented HTTP pub/sub contract
//! (`tests/support/dapr_double.rs`; `daprd` cannot be installed here): it takes the app's
//! publish requests, reads its `GET /dapr/subscribe` and delivers each message to the
//! routes listed there, redelivering on `RETRY`, on errors and while the app is down.

#![cfg(all(feature = "postgres", feature = "dapr"))]

mod common;

#[path = "../crates/todo-store/tests/support/postgres.rs"]
mod pg;

#[path = "support/dapr_double.rs"]
mod dapr_double;

use std::collections::HashSet;
use std::time::Duration;

use common::logql::{query_finds, query_lines};
use common::{Options, TestApp, audited_once, eventually, next_event};
use dapr_double::{DaprDouble, Subscription};

/// How long a process may take to be ready.
const READY_WAIT: Duration = Duration::from_secs(15);

/// How long the audit log may take to catch up.
const AUDIT_WAIT: Duration = Duration::from_secs(30);
use serde_json::Value;

/// A PostgreSQL schema and a sidecar double, shared by the processes of one test.
struct Env {
    schema: pg::Schema,
    dapr: DaprDouble,
}

impl Env {
    async fn new() -> Env {
        Env {
            schema: pg::Schema::create().await,
            dapr: DaprDouble::start().await,
        }
    }

    fn options(&self, services: &str) -> Options {
        Options::default()
            .env("DATABASE_URL", self.schema.url())
            .env("TODO_SERVICES", services)
            .env("TODO_BUS", "dapr")
            .env("DAPR_HTTP_PORT", self.dapr.port().to_string())
    }

    /// Starts a process, lets the double read its subscriptions, waits until it is ready.
    async fn spawn_with(&self, options: Options) -> (TestApp, Vec<Subscription>) {
        let app = TestApp::spawn_with(options).await;
        let subscriptions = self.dapr.attach(&app.base).await;
        app.wait_ready_within(READY_WAIT).await;
        (app, subscriptions)
    }

    async fn spawn(&self, services: &str) -> (TestApp, Vec<Subscription>) {
        self.spawn_with(self.options(services)).await
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn events_travel_through_the_sidecar_to_every_consumer_in_one_process() {
    let env = Env::new().await;
    let (app, subscriptions) = env.spawn("all").await;
    let routes: HashSet<(String, String, String)> = subscriptions
        .iter()
        .map(|s| (s.pubsubname.clone(), s.topic.clone(), s.route.clone()))
        .collect();
    let expected: HashSet<(String, String, String)> = [
        ("task-events", "/dapr/events/task-events"),
        ("reminders", "/dapr/events/reminders"),
        ("task-updates", "/dapr/events/task-updates"),
    ]
    .into_iter()
    .map(|(t, r)| ("pubsub".to_owned(), t.to_owned(), r.to_owned()))
    .collect();
    assert_eq!(
        routes, expected,
        "one subscription per topic, however many consumers read it"
    );

    let mut ws = app.connect_ws("alice").await;
    let id = app.create_titled("alice", "Water plants").await;

    // Published to its topic and to the fan-out topic, as a structured CloudEvent keyed
    // by its user, with the request's trace context.
    let published = eventually(Duration::from_secs(10), || async {
        let mine: Vec<_> = env
            .dapr
            .published()
            .into_iter()
            .filter(|p| p.json()["subject"] == id.as_str())
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await
    .expect("two publish requests within 10 s");
    let topics: HashSet<&str> = published.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["task-events", "task-updates"].into());
    for p in &published {
        assert_eq!(p.pubsub, "pubsub");
        assert_eq!(p.content_type, "application/cloudevents+json");
        assert_eq!(
            p.metadata.get("partitionKey").map(String::as_str),
            Some("alice")
        );
        let event = p.json();
        assert_eq!(event["type"], "task.created");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(
            p.traceparent.as_deref(),
            event["traceparent"].as_str(),
            "the traceparent header is the event's"
        );
        assert!(p.traceparent.is_some());
    }
    assert_eq!(published[0].json()["id"], published[1].json()["id"]);

    // Delivered back: sync pushes it to the WebSocket, audit records it.
    let event = next_event(&mut ws, Duration::from_secs(10))
        .await
        .expect("task.created on the WebSocket, through the sidecar");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["subject"], id.as_str());
    assert!(
        event.get("topic").is_none(),
        "the sidecar's attributes are not passed to clients: {event}"
    );
    audited_once(&app, &[], "alice", &[id.clone()].into(), AUDIT_WAIT).await;
    let answered = eventually(Duration::from_secs(5), || async {
        let d: Vec<_> = env
            .dapr
            .deliveries()
            .into_iter()
            .filter(|d| d.body.contains(&id))
            .collect();
        (d.len() >= 2).then_some(d)
    })
    .await
    .expect("both deliveries answered");
    for route in ["/dapr/events/task-events", "/dapr/events/task-updates"] {
        let d = answered
            .iter()
            .find(|d| d.route == route)
            .unwrap_or_else(|| panic!("no delivery to {route}: {answered:?}"));
        assert_eq!(d.outcome, "SUCCESS", "{d:?}");
        assert_eq!(d.attempt, 1, "{d:?}");
    }

    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["sidecar"], "ok", "{body}");
}

#[tokio::test]
async fn a_message_that_is_no_cloud_event_is_dropped_and_kept_as_a_dead_letter() {
    let env = Env::new().await;
    let (app, _) = env.spawn("all").await;
    let first = app.create_titled("alice", "first").await;
    audited_once(&app, &[], "alice", &[first.clone()].into(), AUDIT_WAIT).await;

    env.dapr
        .inject("pubsub", "task-events", b"{this is not a cloud event");
    let dropped = eventually(Duration::from_secs(10), || async {
        env.dapr
            .drops()
            .into_iter()
            .find(|d| d.body == "{this is not a cloud event")
    })
    .await
    .expect("the poison message answered DROP");
    assert_eq!(dropped.route, "/dapr/events/task-events");
    assert_eq!(dropped.attempt, 1, "dropped at once, not retried");

    // Kept by each consumer of the topic, in the store.
    let db = pg::admin().await;
    let rows = db
        .query(
            &format!(
                "SELECT consumer, reason, payload FROM {}.dead_letters ORDER BY consumer",
                env.schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let letters: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(String, String, String)> = ["audit", "notification", "recurring"]
        .into_iter()
        .map(|c| {
            (
                c.to_owned(),
                "unreadable_envelope".to_owned(),
                "{this is not a cloud event".to_owned(),
            )
        })
        .collect();
    assert_eq!(letters, expected);

    // The topic flows on.
    let second = app.create_titled("alice", "second").await;
    audited_once(&app, &[], "alice", &[first, second].into(), AUDIT_WAIT).await;
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l.starts_with(
            "todo_events_dead_lettered_total{consumer=\"audit\",reason=\"unreadable_envelope\"} 1"
        )),
        "dead letter counted"
    );
}

#[tokio::test]
async fn a_consumer_process_is_not_ready_while_its_sidecar_is_not() {
    let env = Env::new().await;
    let (api, api_subscriptions) = env.spawn("api").await;
    assert!(
        api_subscriptions.is_empty(),
        "api consumes nothing: {api_subscriptions:?}"
    );
    let (workers, _) = env.spawn("recurring,notification,audit,sync").await;
    let id = api.create_titled("alice", "across processes").await;
    audited_once(&workers, &[], "alice", &[id].into(), AUDIT_WAIT).await;

    env.dapr.set_healthy(false);
    let (status, body) = eventually(Duration::from_secs(10), || async {
        let (status, body) = readyz(&workers).await;
        (status == 503).then_some((status, body))
    })
    .await
    .expect("the consumers' /readyz fails while the sidecar is not healthy");
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["sidecar"], "failing: unavailable", "{body}");
    assert_eq!(body["checks"]["store"], "ok", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("sidecar"),
        "{body}"
    );
    let (status, body) = readyz(&api).await;
    assert_eq!(status, 200, "api alone stays ready: {body}");
    assert!(body["checks"].get("sidecar").is_none(), "{body}");

    env.dapr.set_healthy(true);
    workers.wait_ready_within(READY_WAIT).await;
}

/// While the sidecar refuses publishes, the relay logs `event publish failed` (WARN, what
/// the `event-publish-failed` query finds) and keeps the batch; once the sidecar takes
/// messages again the event is published and reaches the consumers, once.
#[tokio::test]
async fn a_publish_the_sidecar_refuses_is_logged_and_retried_until_it_is_taken() {
    let env = Env::new().await;
    env.dapr.fail_publishes(true);
    let (app, _) = env.spawn("all").await;
    let id = app.create_titled("alice", "held back").await;
    let line = query_finds(&app, "event-publish-failed", &[("service", "todo")]).await;
    assert!(
        line["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{line}"
    );
    assert!(line["events"].as_u64().is_some_and(|n| n >= 1), "{line}");
    assert!(line["attempt"].as_u64().is_some_and(|n| n >= 1), "{line}");
    assert!(
        !env.dapr.published().is_empty(),
        "the relay did call the sidecar"
    );

    env.dapr.fail_publishes(false);
    audited_once(&app, &[], "alice", &[id].into(), AUDIT_WAIT).await;
    // A retried publish is a warning, not an error of the service.
    let logs = app.logs();
    assert!(
        !query_lines(&logs, "service-errors", &[])
            .iter()
            .any(|l| l["message"] == "event publish failed"),
        "{logs:#?}"
    );
}

/// A free loopback port, so that a restarted process listens where its sidecar expects it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn messages_sent_while_the_consumers_are_down_are_delivered_once_they_are_back() {
    let env = Env::new().await;
    let (api, _) = env.spawn("api").await;
    let port = free_port();
    let workers_options = env
        .options("recurring,notification,audit")
        .env("TODO_LISTEN_ADDR", format!("127.0.0.1:{port}"));
    let (mut workers, _) = env.spawn_with(workers_options.clone()).await;
    let mut created = HashSet::new();
    for i in 0..3 {
        created.insert(api.create_titled("alice", &format!("before {i}")).await);
    }
    audited_once(&workers, &[], "alice", &created, AUDIT_WAIT).await;

    workers.kill9().await;
    for i in 0..3 {
        created.insert(api.create_titled("alice", &format!("while down {i}")).await);
    }
    // The sidecar keeps trying: connection refused is retried.
    let refused = eventually(Duration::from_secs(10), || async {
        env.dapr
            .deliveries()
            .into_iter()
            .find(|d| d.outcome.starts_with("error"))
    })
    .await
    .expect("deliveries fail while the consumers are down");
    assert_eq!(refused.route, "/dapr/events/task-events");

    // Back on the same port (the sidecar's app port): everything arrives, once.
    let workers = TestApp::spawn_with(workers_options).await;
    workers.wait_ready_within(READY_WAIT).await;
    audited_once(&workers, &[], "alice", &created, AUDIT_WAIT).await;
    let retried = env
        .dapr
        .deliveries()
        .into_iter()
        .filter(|d| d.outcome == "SUCCESS" && d.attempt > 1)
        .count();
    assert!(retried >= 1, "a redelivery succeeded");
}

#[tokio::test]
async fn a_message_not_handled_in_time_is_answered_retry_and_delivered_again() {
    let env = Env::new().await;
    let (api, _) = env.spawn("api").await;
    // Deliveries are waited on for 90% of the request timeout.
    let (workers, _) = env
        .spawn_with(env.options("audit").env("TODO_REQUEST_TIMEOUT_MS", "1000"))
        .await;
    let warm = api.create_titled("alice", "warm up").await;
    audited_once(&workers, &[], "alice", &[warm.clone()].into(), AUDIT_WAIT).await;

    // A stuck store (writes to the audit table held up by a lock) keeps the consumer from
    // finishing. SHARE mode blocks inserts without taking a transaction id, which would
    // hold back every outbox reader of the server. Should the test fail while holding it,
    // the server ends the session rather than letting the schema's drop wait for ever.
    let mut db = pg::admin().await;
    db.batch_execute("SET idle_in_transaction_session_timeout = '20s'")
        .await
        .unwrap();
    let lock = db.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {}.audit_log IN SHARE MODE",
        env.schema.name
    ))
    .await
    .unwrap();
    let stuck = api.create_titled("alice", "stuck").await;
    let retry = eventually(Duration::from_secs(10), || async {
        env.dapr
            .deliveries()
            .into_iter()
            .find(|d| d.body.contains(&stuck) && d.outcome == "RETRY")
    })
    .await
    .expect("the delivery answered RETRY once its deadline passed");
    assert_eq!(retry.route, "/dapr/events/task-events");
    lock.commit().await.unwrap();

    audited_once(
        &workers,
        &[],
        "alice",
        &[warm, stuck.clone()].into(),
        AUDIT_WAIT,
    )
    .await;
    let success = eventually(Duration::from_secs(10), || async {
        env.dapr
            .deliveries()
            .into_iter()
            .find(|d| d.body.contains(&stuck) && d.outcome == "SUCCESS")
    })
    .await
    .expect("a later delivery succeeded");
    assert!(
        success.attempt > retry.attempt,
        "{retry:?} then {success:?}"
    );
}
