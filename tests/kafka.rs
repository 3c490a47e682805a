//! The platform on PostgreSQL and a real Kafka-protocol broker (`TODO_BUS=kafka`), through
//! the real binary: one process, five processes, two `sync` replicas, and the failure
//! drills: the broker killed mid-stream, each consumer killed with SIGKILL mid-stream, and
//! a poison message. noida-db is the default broker; the consumer-kill drill runs on tansu,
//! which expires a killed group member (noida-db never does). Each test has a broker, and a
//! PostgreSQL schema, of its own.

#![cfg(all(feature = "postgres", feature = "kafka"))]

mod common;

#[path = "../crates/todo-store/tests/support/postgres.rs"]
mod pg;

#[path = "../crates/todo-bus/tests/support/broker.rs"]
mod broker;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use broker::{Broker, Kind};
use common::{Options, TestApp, Ws, audited_once, eventually, next_event};
use serde_json::{Value, json};

/// How long a process may take to be ready (a consumer is ready once the broker answers).
const READY_WAIT: Duration = Duration::from_secs(30);

/// How long the audit log may take to catch up (after a drill, a rebalance included).
const AUDIT_WAIT: Duration = Duration::from_secs(60);

/// One deployment's shared settings.
struct Env {
    schema: pg::Schema,
    broker: Broker,
}

impl Env {
    async fn new(kind: Kind) -> Env {
        Env {
            schema: pg::Schema::create().await,
            broker: Broker::start(kind),
        }
    }

    fn options(&self, services: &str) -> Options {
        Options::default()
            .env("DATABASE_URL", self.schema.url())
            .env("TODO_SERVICES", services)
            .env("TODO_BUS", "kafka")
            .env("KAFKA_BROKERS", self.broker.addr())
            .env("TODO_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("TODO_KAFKA_PROPERTIES", "statistics.interval.ms=1000")
    }

    async fn spawn(&self, services: &str) -> TestApp {
        let app = TestApp::spawn_with(self.options(services)).await;
        app.wait_ready_within(READY_WAIT).await;
        app
    }
}

/// Reads WebSocket messages until `n` distinct event ids arrived; fails on a duplicate.
async fn ws_events(ws: &mut Ws, n: usize, wait: Duration) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    while seen.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = next_event(ws, left)
            .await
            .unwrap_or_else(|| panic!("only {} of {n} events on the WebSocket", seen.len()));
        let id = event["id"].as_str().expect("id").to_owned();
        assert!(
            seen.insert(id),
            "event delivered twice on one socket: {event}"
        );
        events.push(event);
    }
    events
}

fn metric(text: &str, series_prefix: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(series_prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_platform_runs_end_to_end_on_kafka_in_one_process() {
    let env = Env::new(Kind::Noida).await;
    let app = env.spawn("all").await;
    let mut ws = app.connect_ws("alice").await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "Water plants", "due_at": "2030-01-06T09:00:00Z",
                   "remind_before_minutes": 30, "recurrence": {"frequency": "weekly"}}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let event = next_event(&mut ws, Duration::from_secs(2))
        .await
        .expect("task.created on the WebSocket within 2 s, through Kafka");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["subject"], id.as_str());
    assert!(started.elapsed() <= Duration::from_secs(2));

    app.complete_task("alice", &id, None).await;
    let next = eventually(Duration::from_secs(10), || async {
        let tasks = app.list_all("alice", "status=pending").await;
        (tasks.len() == 1).then(|| tasks[0].clone())
    })
    .await
    .expect("the next occurrence within 10 s");
    assert_eq!(next["parent_task_id"], id.as_str());
    let created: HashSet<String> = [id.clone(), next["id"].as_str().unwrap().to_owned()].into();
    audited_once(&app, &[], "alice", &created, AUDIT_WAIT).await;
    let reminders = eventually(Duration::from_secs(10), || async {
        let items = app.get_json("alice", "/reminders").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await
    .expect("a reminder per occurrence");
    assert_eq!(reminders[0]["status"], "scheduled");

    // Relayed events and per-partition lag, from the broker's positions.
    let text = eventually(Duration::from_secs(15), || async {
        let text = metrics(&app).await;
        (!metric(&text, "todo_consumer_lag_events{consumer=\"audit\"").is_empty()
            && !metric(&text, "todo_events_relayed_total{topic=\"task-updates\"}").is_empty())
        .then_some(text)
    })
    .await
    .expect("lag and relay metrics");
    let relayed = metric(&text, "todo_events_relayed_total{topic=\"task-events\"}");
    assert!(relayed[0].1 >= 3.0, "{relayed:?}");
    assert!(
        metric(
            &text,
            "todo_consumer_lag_events{consumer=\"audit\",topic=\"task-events\""
        )
        .iter()
        .all(|(s, _)| s.contains("partition=\"")),
        "lag is per partition"
    );
}

#[tokio::test]
async fn two_sync_replicas_each_get_every_event() {
    let env = Env::new(Kind::Noida).await;
    let api = env.spawn("api").await;
    let sync_a = env.spawn("sync").await;
    let sync_b = env.spawn("sync").await;
    let mut ws_a = sync_a.connect_ws("alice").await;
    let mut ws_b = sync_b.connect_ws("alice").await;
    // Each replica reads every partition from the newest message on: wait until both
    // see a first event before counting.
    let warm = api.create_titled("alice", "warm up").await;
    for ws in [&mut ws_a, &mut ws_b] {
        let e = next_event(ws, Duration::from_secs(15))
            .await
            .expect("the first event");
        assert_eq!(e["subject"], warm.as_str());
    }
    // Users land on different partitions; every one of alice's events reaches both.
    let mut ids = HashSet::new();
    for i in 0..12 {
        ids.insert(api.create_titled("alice", &format!("task {i}")).await);
        api.create_titled(&format!("user{i}"), "someone else's")
            .await;
    }
    for ws in [&mut ws_a, &mut ws_b] {
        let got: HashSet<String> = ws_events(ws, 12, Duration::from_secs(10))
            .await
            .iter()
            .map(|e| e["subject"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, ids, "a replica missed or mixed events");
        assert!(
            next_event(ws, Duration::from_millis(300)).await.is_none(),
            "another user's event reached alice"
        );
    }
}

#[tokio::test]
async fn the_broker_is_killed_mid_stream_and_nothing_is_lost() {
    let mut env = Env::new(Kind::Noida).await;
    let api = env.spawn("api").await;
    let workers = env.spawn("recurring,notification,audit").await;
    let mut created = HashSet::new();
    for i in 0..10 {
        created.insert(api.create_titled("alice", &format!("before {i}")).await);
    }
    // Relayed (after this instant) and consumed; then noida-db must have saved them, or
    // its SIGKILL loses them (it saves shortly after writes: see `Broker::wait_saved`).
    let written = std::time::SystemTime::now();
    audited_once(&workers, &[&api], "alice", &created, AUDIT_WAIT).await;
    env.broker.wait_saved(written);
    env.broker.kill();
    // The API keeps taking writes: they wait in the outbox.
    for i in 0..10 {
        created.insert(api.create_titled("alice", &format!("during {i}")).await);
    }
    // The backlog waits in the outbox, and its age shows.
    let backlog = eventually(Duration::from_secs(15), || async {
        let text = metrics(&api).await;
        let backlog = metric(&text, "todo_outbox_backlog_events").first()?.1;
        let age = metric(&text, "todo_outbox_oldest_age_seconds").first()?.1;
        (backlog >= 10.0 && age > 0.0).then_some((backlog, age))
    })
    .await
    .expect("the outbox backlog and its age are reported while the broker is down");
    assert!(
        backlog.0 <= 10.0,
        "only the writes made during the outage wait: {backlog:?}"
    );
    let ready = api
        .client
        .get(format!("{}/readyz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "api stays ready without the broker");
    let why = eventually(Duration::from_secs(15), || async {
        let r = workers
            .client
            .get(format!("{}/readyz", workers.base))
            .send()
            .await
            .ok()?;
        let status = r.status();
        let body: Value = r.json().await.ok()?;
        (status == 503).then_some(body)
    })
    .await
    .expect("the consumers' /readyz fails while the broker is down");
    assert_ne!(why["checks"]["broker"], "ok", "{why}");
    assert_eq!(why["checks"]["store"], "ok", "{why}");

    env.broker.restart();
    for i in 0..10 {
        created.insert(api.create_titled("alice", &format!("after {i}")).await);
    }
    workers.wait_ready_within(READY_WAIT).await;
    audited_once(&workers, &[&api], "alice", &created, AUDIT_WAIT).await;
    let logs = workers.logs().join("\n");
    assert!(
        logs.contains("kafka brokers unreachable"),
        "one WARN for the outage"
    );
    assert!(
        logs.contains("kafka brokers reachable again"),
        "one INFO when it ends"
    );
}

#[tokio::test]
async fn each_consumer_killed_mid_stream_resumes_without_duplicates() {
    let env = Env::new(Kind::Tansu).await;
    let api = env.spawn("api").await;
    let mut services: HashMap<&str, TestApp> = HashMap::new();
    for name in ["recurring", "notification", "audit", "sync"] {
        services.insert(name, env.spawn(name).await);
    }
    let mut recurring_ids = Vec::new();
    let mut created = HashSet::new();
    for round in ["recurring", "notification", "audit", "sync"] {
        // A burst in flight, then the kill, then more while it is down.
        for i in 0..8 {
            let task = api
                .create_task(
                    "alice",
                    json!({"title": format!("{round} {i}"), "due_at": "2030-03-01T09:00:00Z",
                           "remind_before_minutes": 10,
                           "recurrence": {"frequency": "daily"}}),
                )
                .await;
            let id = task["id"].as_str().unwrap().to_owned();
            api.complete_task("alice", &id, None).await;
            recurring_ids.push(id.clone());
            created.insert(id);
        }
        services.get_mut(round).unwrap().kill9().await;
        for i in 0..4 {
            created.insert(
                api.create_titled("alice", &format!("{round} while down {i}"))
                    .await,
            );
        }
        let restarted = env.spawn(round).await;
        services.insert(round, restarted);
    }
    // Every completed task got exactly one next occurrence.
    let next: Vec<Value> = eventually(Duration::from_secs(60), || async {
        let pending = api
            .all_pages("alice", "/tasks?status=pending&limit=200")
            .await;
        let children: Vec<Value> = pending
            .into_iter()
            .filter(|t| t["parent_task_id"].is_string())
            .collect();
        (children.len() >= recurring_ids.len()).then_some(children)
    })
    .await
    .expect("a next occurrence per completed task");
    let mut per_parent: HashMap<String, usize> = HashMap::new();
    for t in &next {
        *per_parent
            .entry(t["parent_task_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_parent.len(), recurring_ids.len());
    assert!(
        per_parent.values().all(|&n| n == 1),
        "a duplicate next occurrence: {per_parent:?}"
    );
    for t in &next {
        created.insert(t["id"].as_str().unwrap().to_owned());
    }
    audited_once(&services["audit"], &[&api], "alice", &created, AUDIT_WAIT).await;
    // One reminder per task that has one (each completed task's is cancelled; each next
    // occurrence's is scheduled), none twice.
    let reminders = eventually(Duration::from_secs(60), || async {
        let items = services["notification"]
            .all_pages("alice", "/reminders?limit=200")
            .await;
        (items.len() >= 2 * recurring_ids.len()).then_some(items)
    })
    .await
    .expect("the reminders");
    let tasks: Vec<&str> = reminders
        .iter()
        .filter_map(|r| r["task_id"].as_str())
        .collect();
    let unique: HashSet<&&str> = tasks.iter().collect();
    assert_eq!(unique.len(), tasks.len(), "a task has two reminders");
    assert_eq!(tasks.len(), 2 * recurring_ids.len());

    // The restarted sync delivers each new event once. (It starts at the high watermark
    // the broker reports; tansu under-reports it, so older events may come first: those
    // are skipped here, not counted.)
    let mut ws = services["sync"].connect_ws("alice").await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(api.create_titled("alice", &format!("final {i}")).await);
    }
    let mut got: HashMap<String, usize> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ids.iter().all(|id| got.contains_key(id)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = next_event(&mut ws, left)
            .await
            .unwrap_or_else(|| panic!("the restarted sync delivered {got:?} of {ids:?}"));
        *got.entry(event["subject"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    while let Some(event) = next_event(&mut ws, Duration::from_millis(500)).await {
        *got.entry(event["subject"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(got[id], 1, "event for {id} delivered {} times", got[id]);
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_rest_flows_on() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let env = Env::new(Kind::Noida).await;
    let app = env.spawn("all").await;
    let first = app.create_titled("alice", "first").await;
    audited_once(&app, &[], "alice", &[first.clone()].into(), AUDIT_WAIT).await;

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", env.broker.addr())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("task-events")
                .key("alice")
                .payload("{this is not a cloud event"),
            Duration::from_secs(10),
        )
        .await
        .expect("poison produced");
    let second = app.create_titled("alice", "second").await;
    audited_once(&app, &[], "alice", &[first, second].into(), AUDIT_WAIT).await;

    let dlq: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", env.broker.addr())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&["todo-dead-letters"]).unwrap();
    let mut consumers = HashSet::new();
    while consumers.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(20), dlq.recv())
            .await
            .expect("dead letters within 20 s")
            .unwrap();
        assert_eq!(
            message.payload_view::<str>().unwrap().unwrap(),
            "{this is not a cloud event"
        );
        let headers: HashMap<String, String> = message
            .headers()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(headers["x-todo-reason"], "unreadable_envelope");
        assert_eq!(headers["x-todo-original-topic"], "task-events");
        assert!(headers["x-todo-error"].contains("not a CloudEvent"));
        consumers.insert(headers["x-todo-consumer"].clone());
    }
    assert_eq!(
        consumers,
        ["audit", "notification", "recurring"]
            .map(str::to_owned)
            .into(),
        "each consumer of task-events dead-letters it once"
    );
    let text = metrics(&app).await;
    let counted = metric(
        &text,
        "todo_events_dead_lettered_total{consumer=\"audit\",reason=\"unreadable_envelope\"}",
    );
    assert_eq!(counted.first().map(|c| c.1), Some(1.0), "{counted:?}");
}

/// Security settings that cannot work together stop the process at start, naming them.
#[test]
fn inconsistent_kafka_security_settings_stop_the_process_with_the_settings_named() {
    let run = |extra: &[(&str, &str)]| {
        let mut command = std::process::Command::new(common::binary());
        command
            .arg("serve")
            .env_clear()
            .env("TODO_LISTEN_ADDR", "127.0.0.1:0")
            .env("TODO_JWT_SECRET", common::SECRET)
            .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .env("TODO_BUS", "kafka")
            .env("KAFKA_BROKERS", "127.0.0.1:1");
        for (k, v) in extra {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("KAFKA_SASL_MECHANISM"), "{err}");
    let (code, err) = run(&[("KAFKA_SASL_MECHANISM", "PLAIN")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("KAFKA_SASL_USERNAME"), "{err}");
    let (code, err) = run(&[("KAFKA_SECURITY_PROTOCOL", "tls")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("KAFKA_SECURITY_PROTOCOL"), "{err}");
    let (code, err) = run(&[("TODO_KAFKA_PROPERTIES", "acks")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("TODO_KAFKA_PROPERTIES"), "{err}");
}

/// Several `api` replicas: one holds the relay lead and publishes each event once; when it
/// dies, another takes the lead over and nothing is lost.
#[tokio::test]
async fn one_of_two_api_replicas_relays_and_the_other_takes_over_when_it_dies() {
    let env = Env::new(Kind::Noida).await;
    let mut a = env.spawn("api").await;
    let mut b = env.spawn("api").await;
    let workers = env.spawn("audit").await;
    let mut created = HashSet::new();
    for i in 0..6 {
        created.insert(a.create_titled("alice", &format!("via a {i}")).await);
        created.insert(b.create_titled("alice", &format!("via b {i}")).await);
    }
    audited_once(&workers, &[&a, &b], "alice", &created, AUDIT_WAIT).await;
    let relayed = |text: &str| {
        metric(text, "todo_events_relayed_total{topic=\"task-events\"}")
            .first()
            .map_or(0.0, |m| m.1)
    };
    let (ra, rb) = (relayed(&metrics(&a).await), relayed(&metrics(&b).await));
    assert_eq!(
        ra + rb,
        12.0,
        "each event relayed once, by one replica: {ra} + {rb}"
    );
    assert!(
        ra == 0.0 || rb == 0.0,
        "both replicas relayed: {ra} and {rb}"
    );
    // Kill the leader; the survivor takes the lead and relays what is written next.
    let survivor = if ra > 0.0 {
        a.kill9().await;
        &b
    } else {
        b.kill9().await;
        &a
    };
    for i in 0..6 {
        created.insert(
            survivor
                .create_titled("alice", &format!("after the leader died {i}"))
                .await,
        );
    }
    audited_once(&workers, &[survivor], "alice", &created, AUDIT_WAIT).await;
    assert!(
        survivor
            .logs()
            .iter()
            .any(|l| l.contains("outbox relay leads")),
        "the survivor took the lead"
    );
}
