//! Test harness: starts the real `todo` binary on a free port with its own data directory,
//! and talks to it over HTTP and WebSocket.
//!
//! With `TODO_TEST_BASE_URL` set (and `TODO_TEST_JWT_SECRET`, the deployment's HS256
//! secret), [`TestApp::spawn`] talks to that running deployment instead, e.g. the split
//! deployment behind its proxy (`tests/split/run.sh`). The deployment is shared by every
//! test, so each `TestApp` then maps the user names a test uses to names of its own
//! ([`TestApp::user`]). Tests that configure, restart or read the logs of their server
//! start one of their own ([`TestApp::spawn_with`]) and are not run against a deployment.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod logql;
pub mod otlp;
pub mod private_pg;
pub mod reply;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// The HS256 secret of spawned test servers, unless `TODO_TEST_JWT_SECRET` names another.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// A running deployment to test instead of a spawned binary.
struct Remote {
    base: String,
    secret: String,
}

/// The deployment named by `TODO_TEST_BASE_URL`, if any.
fn remote() -> Option<&'static Remote> {
    static REMOTE: std::sync::OnceLock<Option<Remote>> = std::sync::OnceLock::new();
    REMOTE
        .get_or_init(|| {
            let base = std::env::var("TODO_TEST_BASE_URL").ok()?;
            let secret = std::env::var("TODO_TEST_JWT_SECRET")
                .expect("TODO_TEST_BASE_URL is set: set TODO_TEST_JWT_SECRET to its HS256 secret");
            Some(Remote {
                base: base.trim_end_matches('/').to_owned(),
                secret,
            })
        })
        .as_ref()
}

/// Whether tests run against a deployment (`TODO_TEST_BASE_URL`).
pub fn against_deployment() -> bool {
    remote().is_some()
}

/// The HS256 secret tokens are signed with, and that spawned servers use: the deployment's
/// (`TODO_TEST_JWT_SECRET`), or [`SECRET`]. One secret for every server of a run, so a
/// token minted for one is valid on all.
pub fn secret() -> &'static str {
    remote().map_or(SECRET, |r| r.secret.as_str())
}

/// A WebSocket connected to the server.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Reuse this data directory (for restarts); a fresh temp dir when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Options {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
    /// Appended to user names against a shared deployment, so tests never see each
    /// other's data; `None` for a server of its own.
    user_suffix: Option<String>,
    /// The secrets this server was started with ([`secrets_in`]); with every token the
    /// test minted, none may appear in its output ([`TestApp::assert_no_secrets_logged`]).
    secrets: Vec<String>,
}

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_todo")
}

impl TestApp {
    /// Starts a server with default settings in a fresh data directory, or, with
    /// `TODO_TEST_BASE_URL` set, attaches to that deployment.
    pub async fn spawn() -> TestApp {
        match remote() {
            Some(remote) => Self::attach(remote),
            None => Self::spawn_own(Options::default()).await,
        }
    }

    /// A `TestApp` for a running deployment, with user names of its own.
    fn attach(remote: &Remote) -> TestApp {
        let url = reqwest::Url::parse(&remote.base).expect("TODO_TEST_BASE_URL is a URL");
        let addr = url
            .socket_addrs(|| None)
            .expect("TODO_TEST_BASE_URL resolves")
            .into_iter()
            .next()
            .expect("TODO_TEST_BASE_URL has an address");
        let temp = tempfile::tempdir().expect("temp dir");
        TestApp {
            addr,
            base: remote.base.clone(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()
                .unwrap(),
            data_dir: temp.path().to_path_buf(),
            child: None,
            logs: Arc::default(),
            _temp: Some(temp),
            user_suffix: Some(uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()),
            secrets: Vec::new(),
        }
    }

    /// Starts a server of its own with `options`, waiting until it logs that it listens.
    /// Refused when `TODO_TEST_BASE_URL` is set: such a test would not test the deployment.
    pub async fn spawn_with(options: Options) -> TestApp {
        assert!(
            !against_deployment(),
            "this test starts a server of its own: it cannot run against TODO_TEST_BASE_URL"
        );
        Self::spawn_own(options).await
    }

    /// Starts a server of its own.
    async fn spawn_own(options: Options) -> TestApp {
        let (temp, data_dir) = match options.data_dir.clone() {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TODO_LISTEN_ADDR", "127.0.0.1:0")
            .env("TODO_DATA_DIR", &data_dir)
            .env("TODO_JWT_SECRET", secret())
            .env("TODO_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut env = vec![("TODO_JWT_SECRET".to_owned(), secret().to_owned())];
        env.extend(options.env.iter().cloned());
        let secrets = secrets_in(&env);
        let mut child = command.spawn().expect("start the todo binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut addr_tx = Some(addr_tx);
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "listening"
                        && let Some(tx) = addr_tx.take()
                    {
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().unwrap().push(format!("stderr: {line}"));
                }
            });
        }
        let addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => addr.parse().expect("listening addr"),
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "server did not start (exit: {status:?}); logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()
                .unwrap(),
            data_dir,
            child: Some(child),
            logs,
            _temp: temp,
            user_suffix: None,
            secrets,
        }
    }

    /// Panics when this app is a shared deployment: `what` needs a server of its own.
    fn own_server(&self, what: &str) {
        assert!(
            self.user_suffix.is_none(),
            "{what} needs a server of its own: this test cannot run against TODO_TEST_BASE_URL"
        );
    }

    /// The user id the test's `name` stands for: `name` itself on a server of its own, a
    /// name unique to this app on a shared deployment.
    pub fn user(&self, name: &str) -> String {
        match &self.user_suffix {
            Some(suffix) => format!("{name}-{suffix}"),
            None => name.to_owned(),
        }
    }

    /// Everything the server printed so far (stdout JSON lines, then `stderr:` lines).
    pub fn logs(&self) -> Vec<String> {
        self.own_server("reading the server's logs");
        self.logs.lock().unwrap().clone()
    }

    /// The captured lines that hold a secret this server was started with or a token the
    /// test minted, each with what it holds.
    pub fn lines_with_secrets(&self) -> Vec<(String, String)> {
        let mut needles: Vec<(String, String)> = self
            .secrets
            .iter()
            .map(|s| (s.clone(), "a secret it was started with".to_owned()))
            .collect();
        needles.extend(
            minted_tokens()
                .into_iter()
                .map(|t| (signature_of(&t).to_owned(), format!("the token {t}"))),
        );
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        leaks(&logs, &needles)
    }

    /// Asserts that no captured line holds a secret this server was started with or a
    /// token the test minted. Every server of its own checks this when it is dropped.
    #[track_caller]
    pub fn assert_no_secrets_logged(&self) {
        let found = self.lines_with_secrets();
        assert!(
            found.is_empty(),
            "the server's output holds secrets:\n{}",
            found
                .iter()
                .map(|(what, line)| format!("{what}: {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.own_server("the server's process id");
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(&mut self) {
        self.own_server("killing the server");
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill -9");
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then waits for exit; returns how long it took and whether it exited cleanly.
    pub async fn terminate(&mut self) -> (Duration, bool) {
        self.own_server("stopping the server");
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("server did not exit within 20 s of SIGTERM")
            .unwrap();
        (started.elapsed(), exit.success())
    }

    /// Keeps the data directory alive past this app (for restarts).
    pub fn take_temp(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }

    /// A token for the user `user` stands for ([`TestApp::user`]).
    pub fn token(&self, user: &str) -> String {
        token(&self.user(user))
    }

    /// `{base}/api/{user}{path}`, for the user `user` stands for.
    pub fn url(&self, user: &str, path: &str) -> String {
        format!("{}/api/{}{}", self.base, self.user(user), path)
    }

    /// An authenticated request as `user` to `/api/{user}{path}`.
    pub fn request(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(user, path))
            .bearer_auth(self.token(user))
    }

    /// `POST /api/{user}/tasks`, asserting 201; returns the task.
    pub async fn create_task(&self, user: &str, body: Value) -> Value {
        self.send_json(reqwest::Method::POST, user, "/tasks", body, 201)
            .await
    }

    /// Sends `body` to `/api/{user}{path}`, asserting `expected`; returns the JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        user: &str,
        path: &str,
        body: Value,
        expected: u16,
    ) -> Value {
        let response = self
            .request(method.clone(), user, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{method} {path} failed: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /api/{user}/tasks/{id}` as JSON, or `None` on 404.
    pub async fn get_task(&self, user: &str, id: &str) -> Option<Value> {
        let response = self
            .request(reqwest::Method::GET, user, &format!("/tasks/{id}"))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => Some(response.json().await.unwrap()),
            404 => None,
            other => panic!("unexpected status {other}"),
        }
    }

    /// `PATCH .../complete` with an optional body; returns the task.
    pub async fn complete_task(&self, user: &str, id: &str, completed: Option<bool>) -> Value {
        let mut request = self.request(
            reqwest::Method::PATCH,
            user,
            &format!("/tasks/{id}/complete"),
        );
        if let Some(completed) = completed {
            request = request.json(&json!({ "completed": completed }));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /api/{user}{path}` as JSON (asserting 200).
    pub async fn get_json(&self, user: &str, path: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, user, path)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Every task of `user` (following cursors) for the given query string.
    pub async fn list_all(&self, user: &str, query: &str) -> Vec<Value> {
        self.all_pages(user, &format!("/tasks?limit=200&{query}"))
            .await
    }

    /// Every item of a paged list at `/api/{user}{path}` (which has a query string),
    /// following `next_cursor` to the end.
    pub async fn all_pages(&self, user: &str, path_with_query: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = path_with_query.to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get_json(user, &path).await;
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }

    /// Opens the user's WebSocket with a header token.
    pub async fn connect_ws(&self, user: &str) -> Ws {
        open_ws(&self.base, &self.user(user), &self.token(user)).await
    }

    /// Polls `/readyz` until 200.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(10)).await;
    }

    /// Polls `/readyz` until 200, for at most `wait`; a failure shows the server's logs.
    pub async fn wait_ready_within(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {wait:?}; logs:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `/metrics` exposition (no token needed).
    pub async fn metrics(&self) -> String {
        let reply = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(reply.status(), 200, "/metrics answers");
        reply.text().await.expect("metrics body")
    }

    /// Waits up to 30 s (the contract's bound for a metric to show) until the sample of
    /// `name` with every one of `labels` is at least `at_least`; returns the exposition.
    pub async fn wait_metric(&self, name: &str, labels: &[&str], at_least: f64) -> String {
        eventually(Duration::from_secs(30), || async {
            let text = self.metrics().await;
            metric_sample(&text, name, labels)
                .is_some_and(|v| v >= at_least)
                .then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("{name}{labels:?} >= {at_least} within 30 s"))
    }

    /// Creates a task with just `title` and returns its id.
    pub async fn create_titled(&self, user: &str, title: &str) -> String {
        self.create_task(user, json!({"title": title})).await["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }
}

impl Drop for TestApp {
    /// A server of its own checks that its output never held a secret or a minted token
    /// (unless the test already failed: one failure is enough).
    fn drop(&mut self) {
        if self.user_suffix.is_none() && !std::thread::panicking() {
            self.assert_no_secrets_logged();
        }
    }
}

/// Environment variables whose values are secrets.
const SECRET_SETTINGS: [&str; 3] = [
    "TODO_JWT_SECRET",
    "TODO_NOTIFY_WEBHOOK_SECRET",
    "KAFKA_SASL_PASSWORD",
];

/// The secret values among `env`: those of [`SECRET_SETTINGS`] and the password of a
/// `DATABASE_URL`. Values shorter than 8 characters (a test of a refused setting) are left
/// out: they would be found in unrelated text.
pub fn secrets_in(env: &[(String, String)]) -> Vec<String> {
    let mut secrets: Vec<String> = env
        .iter()
        .filter_map(|(k, v)| {
            if SECRET_SETTINGS.contains(&k.as_str()) {
                Some(v.clone())
            } else if k == "DATABASE_URL" {
                reqwest::Url::parse(v)
                    .ok()
                    .and_then(|u| u.password().map(str::to_owned))
            } else {
                None
            }
        })
        .filter(|v| v.len() >= 8)
        .collect();
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Every token [`token`] minted in this test process.
static MINTED: Mutex<std::collections::BTreeSet<String>> =
    Mutex::new(std::collections::BTreeSet::new());

/// Every token [`token`] minted in this test process, once each.
pub fn minted_tokens() -> Vec<String> {
    MINTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// The signature of a JWT: the part only the secret's holder can make. A line holding it
/// holds the token, or enough of it to matter.
pub fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

/// The `(what, line)` of each line of `lines` holding one of `needles` (`(text, what)`).
pub fn leaks(lines: &[String], needles: &[(String, String)]) -> Vec<(String, String)> {
    let needles: Vec<&(String, String)> = needles.iter().filter(|(n, _)| !n.is_empty()).collect();
    if needles.is_empty() {
        return Vec::new();
    }
    // One automaton for every needle: a test may mint hundreds of tokens and log
    // thousands of lines.
    let any = regex::Regex::new(
        &needles
            .iter()
            .map(|(n, _)| regex::escape(n))
            .collect::<Vec<_>>()
            .join("|"),
    )
    .expect("escaped needles form a regex");
    lines
        .iter()
        .filter(|line| any.is_match(line))
        .flat_map(|line| {
            needles
                .iter()
                .filter(|(n, _)| line.contains(n.as_str()))
                .map(|(_, what)| (what.clone(), line.clone()))
        })
        .collect()
}

/// Runs `todo <args>` with a clean environment (a fresh data directory, a free port, the
/// JWT secret, `env` on top) until it exits; fails if it still runs after `wait`.
pub async fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    wait: Duration,
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TODO_LISTEN_ADDR", "127.0.0.1:0")
        .env("TODO_DATA_DIR", dir.path())
        .env("TODO_JWT_SECRET", secret())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(wait, command.output())
        .await
        .unwrap_or_else(|_| panic!("todo {args:?} still ran after {wait:?}"))
        .expect("run the todo binary")
}

/// Waits up to `wait` until `app`'s audit log holds a `task.created` for exactly the tasks
/// `created`, then checks that no event was recorded twice. A failure shows the logs of
/// `app` and of `others` (the deployment's other processes).
pub async fn audited_once(
    app: &TestApp,
    others: &[&TestApp],
    user: &str,
    created: &std::collections::HashSet<String>,
    wait: Duration,
) -> Vec<Value> {
    let items = eventually(wait, || async {
        let items = app.all_pages(user, "/audit?limit=200").await;
        let got: std::collections::HashSet<String> = items
            .iter()
            .filter(|i| i["event_type"] == "task.created")
            .filter_map(|i| i["data"]["task"]["id"].as_str().map(str::to_owned))
            .collect();
        (&got == created).then_some(items)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the audit log did not come to hold the {} creations; logs:\n{}",
            created.len(),
            std::iter::once(app)
                .chain(others.iter().copied())
                .flat_map(|a| a.logs())
                .filter(|l| !l.contains("\"message\":\"request\""))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i["event_id"].as_str())
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event was audited twice");
    items
}

/// A token for `user` (taken as it is), signed with [`secret`], valid for an hour.
/// Remembered: no server's output may hold it ([`TestApp::assert_no_secrets_logged`]).
pub fn token(user: &str) -> String {
    let token = todo_auth::mint_hs256(
        &secret().to_owned().into(),
        user,
        Duration::from_secs(3600),
        None,
        None,
    )
    .unwrap();
    MINTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone());
    token
}

/// Next text message as JSON, or `None` if nothing arrives within `wait`.
pub async fn next_event(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Waits until `check` returns `Some`, polling every 20 ms, up to `wait`.
pub async fn eventually<T, F, Fut>(wait: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + wait;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the first sample of `name` whose labels include each of `labels`
/// (`key="value"` strings); `None` when there is none.
pub fn metric_sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|l| label_text.contains(l))
            .then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// Counts rows of a table in the server's SQLite file (read-only; for crash checks).
pub async fn sqlite_scalar(data_dir: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("todo.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Parses a JSON log line into a map (for log-format assertions).
pub fn log_fields(line: &str) -> Option<HashMap<String, Value>> {
    serde_json::from_str(line).ok()
}

/// Opens `/api/{user}/ws` under `base` (an `http://` URL) with `token` in the header,
/// asserting the `101`.
pub async fn open_ws(base: &str, user: &str, token: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/api/{user}/ws", base.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket connect");
    assert_eq!(response.status(), 101);
    ws
}
