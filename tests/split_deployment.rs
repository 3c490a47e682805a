//! The split deployment (`scripts/split-deployment.sh`): five single-service processes on
//! one PostgreSQL database behind nginx, driven only through the proxy. Each path reaches
//! the process of its service, events cross processes, and a consumer killed while events
//! are written records each of them exactly once after it is started again. With the
//! `OTEL_*` variables handed to every process, one task is one trace across them.

#![cfg(feature = "postgres")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::otlp::{Receiver, wait_for_linked_trace};
use common::reply::{assert_problem, send};
use common::{eventually, next_event};
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/split-deployment.sh");

/// Runs the script with `args`; panics with its output when it fails.
async fn script(args: &[&str]) {
    script_with(args, &[]).await;
}

/// [`script`] with more variables for the script (and so for the services).
async fn script_with(args: &[&str], env: &[(String, String)]) {
    let output = tokio::process::Command::new(SCRIPT)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TODO_BIN", env!("CARGO_BIN_EXE_todo"))
        // A fresh database on the machine's PostgreSQL, not whatever the shell points at.
        .env_remove("DATABASE_URL")
        .env_remove("TODO_SPLIT_PRIVATE_PG")
        // The audit process is SIGKILLed below: tansu hands a killed group member's
        // partitions to the restarted one; noida-db never expires the dead member.
        .env("TODO_BUS", "kafka")
        .env("TODO_SPLIT_BROKER", "tansu")
        .output()
        .await
        .expect("run scripts/split-deployment.sh");
    assert!(
        output.status.success(),
        "split-deployment.sh {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `KEY=value` lines of a file the script wrote.
fn read_pairs(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A running deployment in a temp directory; brought down when dropped.
struct Deployment {
    dir: tempfile::TempDir,
    base: String,
    secret: String,
    database_url: String,
    client: reqwest::Client,
}

impl Deployment {
    async fn up() -> Deployment {
        Self::up_with(&[]).await
    }

    /// `up`, with `env` handed to the script (it passes `OTEL_*` and `RUST_LOG` on).
    async fn up_with(env: &[(String, String)]) -> Deployment {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_str().expect("utf-8 path").to_owned();
        // The guard exists before `up` returns, so a failed `up` is also brought down.
        let mut deployment = Deployment {
            dir,
            base: String::new(),
            secret: String::new(),
            database_url: String::new(),
            client: reqwest::Client::new(),
        };
        script_with(&["up", &path], env).await;
        let env = read_pairs(&deployment.dir.path().join("env"));
        deployment.base = env["BASE_URL"].clone();
        deployment.secret = env["TODO_JWT_SECRET"].clone();
        deployment.database_url = env["DATABASE_URL"].clone();
        deployment
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    async fn kill(&self, part: &str) {
        script(&["kill", self.path(), part]).await;
    }

    async fn start(&self, part: &str) {
        script(&["start", self.path(), part]).await;
    }

    /// The port a service listens on itself (behind the proxy).
    fn port(&self, service: &str) -> String {
        read_pairs(&self.dir.path().join("state"))[&format!("PORT_{service}")].clone()
    }

    /// Where the proxy sent each request it logged for `uri`.
    fn upstreams(&self, uri: &str) -> Vec<String> {
        let log: PathBuf = self.dir.path().join("logs/proxy.access.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["uri"] == uri)
            .map(|v| v["upstream"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn token(&self, user: &str) -> String {
        todo_auth::mint_hs256(
            &self.secret.clone().into(),
            user,
            Duration::from_secs(3600),
            None,
            None,
        )
        .unwrap()
    }

    fn get(&self, user: &str, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}/api/{user}{path}", self.base))
            .bearer_auth(self.token(user))
    }

    async fn get_json(&self, user: &str, path: &str) -> Value {
        let reply = send(self.get(user, path)).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        reply.json()
    }

    async fn create_task(&self, user: &str, body: Value) -> Value {
        let reply = send(
            self.client
                .post(format!("{}/api/{user}/tasks", self.base))
                .bearer_auth(self.token(user))
                .json(&body),
        )
        .await;
        assert_eq!(reply.status, 201, "create: {}", reply.text);
        reply.json()
    }

    /// Every audit item of `user`, following cursors.
    async fn audit(&self, user: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get_json(user, &format!("/audit?limit=200{cursor}"))
                .await;
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return items,
            }
        }
    }

    async fn connect_ws(&self, user: &str) -> common::Ws {
        common::open_ws(&self.base, user, &self.token(user)).await
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let status = std::process::Command::new(SCRIPT)
            .args(["down", self.path()])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "split-deployment.sh down {} failed: {status:?}",
                self.path()
            );
        }
    }
}

/// The ids of the events `user`'s audit should hold: every event on the topics `audit`
/// consumes, as the outbox has them.
async fn outbox_ids(database_url: &str, user: &str) -> BTreeSet<String> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the deployment's database");
    tokio::spawn(connection);
    client
        .query(
            "SELECT id::text FROM events WHERE key = $1 AND topic IN ('task-events', 'reminders')",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn event_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

#[tokio::test]
async fn every_path_reaches_its_service_through_the_proxy_and_a_killed_consumer_catches_up_exactly_once()
 {
    let deployment = Deployment::up().await;
    let user = "alice";

    // sync: the WebSocket, upgraded through nginx, carries the api process's event.
    let mut ws = deployment.connect_ws(user).await;
    let first = deployment
        .create_task(
            user,
            json!({"title": "Pushed", "due_at": "2030-01-06T09:00:00Z"}),
        )
        .await;
    let event = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("task.created on the WebSocket within 5 s");
    assert_eq!(event["type"], "task.created");
    assert_eq!(event["subject"], first["id"]);
    drop(ws);

    // recurring: completing a recurring task makes the next occurrence.
    let weekly = deployment
        .create_task(
            user,
            json!({"title": "Water plants", "due_at": "2030-01-06T09:00:00Z",
                   "recurrence": {"frequency": "weekly"}}),
        )
        .await;
    let reply = send(
        deployment
            .client
            .patch(format!(
                "{}/api/{user}/tasks/{}/complete",
                deployment.base,
                weekly["id"].as_str().unwrap()
            ))
            .bearer_auth(deployment.token(user)),
    )
    .await;
    assert_eq!(reply.status, 200, "complete: {}", reply.text);
    let next = eventually(Duration::from_secs(10), || async {
        let page = deployment
            .get_json(user, "/tasks?status=pending&q=plants")
            .await;
        page["items"].as_array().unwrap().first().cloned()
    })
    .await
    .expect("the next occurrence within 10 s");
    assert_eq!(next["due_at"], "2030-01-13T09:00:00Z");
    assert_eq!(next["parent_task_id"], weekly["id"]);

    // notification: the first task's reminder is listed.
    let reminder = eventually(Duration::from_secs(10), || async {
        let page = deployment.get_json(user, "/reminders").await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task_id"] == first["id"])
            .cloned()
    })
    .await
    .expect("a reminder for the first task within 10 s");
    assert_eq!(reminder["status"], "scheduled");
    assert_eq!(reminder["remind_at"], "2030-01-06T08:45:00Z");

    // audit: the log, read through the proxy, holds what the other processes did.
    let audit = eventually(Duration::from_secs(10), || async {
        let items = deployment.audit(user).await;
        let created = items
            .iter()
            .filter(|i| i["event_type"] == "task.created")
            .count();
        (created == 3).then_some(items)
    })
    .await
    .expect("three task.created in the audit log within 10 s");
    assert!(
        audit.iter().any(|i| i["event_type"] == "task.completed"),
        "{audit:?}"
    );

    // Each path went to the process of its service, and that process alone serves it.
    // (nginx logs a request once it has answered it, a WebSocket once it has closed.)
    for (uri, service) in [
        (format!("/api/{user}/audit?limit=200"), "audit"),
        (format!("/api/{user}/reminders"), "notification"),
        (format!("/api/{user}/tasks"), "api"),
        (format!("/api/{user}/ws"), "sync"),
    ] {
        let upstream = format!("127.0.0.1:{}", deployment.port(service));
        let seen = eventually(Duration::from_secs(5), || async {
            let seen = deployment.upstreams(&uri);
            (!seen.is_empty()).then_some(seen)
        })
        .await
        .unwrap_or_else(|| panic!("the proxy logged no request for {uri}"));
        assert!(
            seen.iter().all(|u| *u == upstream),
            "{uri} should reach {service} at {upstream}; the proxy logged {seen:?}"
        );
    }
    let api_port = deployment.port("api");
    let direct = send(
        deployment
            .client
            .get(format!("http://127.0.0.1:{api_port}/api/{user}/audit"))
            .bearer_auth(deployment.token(user)),
    )
    .await;
    assert_problem(&direct, 404);
    // The document the proxy serves describes every service's routes.
    let doc = send(
        deployment
            .client
            .get(format!("{}/openapi.json", deployment.base)),
    )
    .await
    .json();
    for path in [
        "/api/{user_id}/tasks",
        "/api/{user_id}/audit",
        "/api/{user_id}/reminders",
        "/api/{user_id}/notifications",
        "/api/{user_id}/ws",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }

    // The audit consumer is killed while tasks are being created (so it may die between
    // recording events and saving its position), and more are created while it is down.
    let create = |from: usize, to: usize| {
        let deployment = &deployment;
        async move {
            let mut ids = Vec::new();
            for i in from..to {
                let task = deployment
                    .create_task(user, json!({"title": format!("around the kill {i}")}))
                    .await;
                ids.push(task["id"].as_str().unwrap().to_owned());
            }
            ids
        }
    };
    let (mut during, ()) = tokio::join!(create(0, 30), deployment.kill("audit"));
    let down = send(deployment.get(user, "/audit")).await;
    let problem = assert_problem(&down, 503);
    assert_eq!(problem["type"], "urn:todo:problem:unavailable");
    during.extend(create(30, 50).await);
    deployment.start("audit").await;

    // Every event is recorded once: the audit log holds exactly the outbox's events.
    let expected = outbox_ids(&deployment.database_url, user).await;
    assert!(expected.len() >= 3 + 50, "{} events", expected.len());
    let recorded = eventually(Duration::from_secs(20), || async {
        let items = deployment.audit(user).await;
        let ids: BTreeSet<String> = event_ids(&items).into_iter().collect();
        (ids == expected).then_some(items)
    })
    .await;
    let recorded = match recorded {
        Some(items) => items,
        None => {
            let ids: BTreeSet<String> = event_ids(&deployment.audit(user).await)
                .into_iter()
                .collect();
            panic!(
                "within 20 s of the restart the audit log should hold every event: \
                 missing {:?}, unexpected {:?}",
                expected.difference(&ids).collect::<Vec<_>>(),
                ids.difference(&expected).collect::<Vec<_>>()
            );
        }
    };
    let ids = event_ids(&recorded);
    assert_eq!(
        ids.len(),
        expected.len(),
        "no event is listed twice: {ids:?}"
    );
    for task_id in &during {
        let created = recorded
            .iter()
            .filter(|i| i["task_id"] == task_id.as_str() && i["event_type"] == "task.created")
            .count();
        assert_eq!(created, 1, "task.created of {task_id} recorded once");
    }
    drop(deployment);
}

#[tokio::test]
async fn one_task_is_one_trace_across_the_service_processes_and_their_logs_carry_its_ids() {
    let receiver = Receiver::http().await;
    let mut env = receiver.env();
    // DEBUG for the services, so each consumer span has a line of its own to check.
    env.push(("RUST_LOG".into(), "info,todo_app=debug".into()));
    let deployment = Deployment::up_with(&env).await;
    let user = "tracey";
    let mut ws = deployment.connect_ws(user).await;
    let task = deployment
        .create_task(
            user,
            json!({"title": "Traced", "due_at": "2030-01-06T09:00:00Z"}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let event = next_event(&mut ws, Duration::from_secs(10))
        .await
        .expect("task.created on the WebSocket within 10 s");
    assert_eq!(event["type"], "task.created");
    let logs = || {
        ["api", "audit", "notification", "sync"]
            .iter()
            .flat_map(|service| {
                std::fs::read_to_string(deployment.dir.path().join(format!("logs/{service}.log")))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let trace = wait_for_linked_trace(&receiver, id, Duration::from_secs(30), logs).await;
    let consumer = receiver
        .spans()
        .into_iter()
        .find(|s| s.span_id == trace.spans["audit"])
        .unwrap();
    assert_eq!(consumer.attr("messaging.system"), Some("kafka"));
    drop(deployment);
}

#[test]
fn kill_in_a_directory_without_a_deployment_is_refused_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = std::process::Command::new(SCRIPT)
        .args(["kill", path, "api"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("holds no deployment"),
        "{output:?}"
    );
}
