//! Load-benchmark helper for `bench/run.sh` (a benchmark, not a test).
//!
//! Talks to a running `todo serve` on a loopback address, signing its own tokens with
//! `TODO_JWT_SECRET` (the server's secret), and prints `key=value` lines on stdout for the
//! script to collect; progress goes to stderr.
//!
//! - `seed`: creates `--count` tasks for one user with bounded concurrency (priorities
//!   cycle high/medium/low, every `--complete-every`-th task is then completed), and writes
//!   their ids, one a line, for the wrk scripts.
//! - `events`: with the user's WebSocket open, measures
//!   1. API call -> WebSocket receipt: sequential creates, from sending the `POST` to the
//!      arrival of the `task.created` event whose `subject` is the new id;
//!   2. completion -> next occurrence: sequential `PATCH .../complete` of recurring tasks,
//!      from sending the request to the arrival of the `task.created` event whose
//!      `data.task.parent_task_id` is the completed id, then confirmed with `GET` list;
//!   3. reminder lag: tasks due in ~62 s with `remind_before_minutes: 1`, from the event's
//!      `remind_at` to the arrival of its `reminder.due` (wall clock, same machine).
//!
//! - `ws-idle`: opens `--clients` idle WebSockets for one user, reports the server's resident
//!   memory per client (from `/proc/<server-pid>/status`), then creates one task and reports
//!   the fan-out latency: from the `POST` to the `task.created` arriving on each client.
//!
//! Every wait has a timeout and every loop a fixed count, so the run always ends.
//!
//! ```text
//! cargo run --release --example bench_latency -- --addr 127.0.0.1:PORT seed --user bench --count 10000 --ids-out ids.txt
//! cargo run --release --example bench_latency -- --addr 127.0.0.1:PORT events --user bench-events
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Benchmark helper for `bench/run.sh`.
#[derive(Debug, Parser)]
struct Cli {
    /// The server's address; must be a loopback address.
    #[arg(long)]
    addr: SocketAddr,

    /// Where the WebSocket is served, when another process serves it (the split
    /// deployment's `sync`); `--addr` by default.
    #[arg(long)]
    ws_addr: Option<SocketAddr>,

    /// The server's HS256 secret, used to sign tokens.
    #[arg(long, env = "TODO_JWT_SECRET", hide_env_values = true)]
    secret: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create tasks for one user and write their ids to a file.
    Seed {
        /// The user to seed.
        #[arg(long, default_value = "bench")]
        user: String,
        /// Tasks to create.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Complete every n-th task after creating it (0: none).
        #[arg(long, default_value_t = 5)]
        complete_every: usize,
        /// Where to write the ids, one a line.
        #[arg(long)]
        ids_out: PathBuf,
    },
    /// Measure event latencies over the WebSocket.
    Events {
        /// The user whose WebSocket is watched (use one nobody else writes to).
        #[arg(long, default_value = "bench-events")]
        user: String,
        /// Sequential creates for API -> WebSocket.
        #[arg(long, default_value_t = 500)]
        creates: usize,
        /// Recurring tasks completed for completion -> next occurrence.
        #[arg(long, default_value_t = 200)]
        recurring: usize,
        /// Tasks with a reminder due ~2 s after creation.
        #[arg(long, default_value_t = 20)]
        reminders: usize,
        /// Longest wait for any single event, in seconds.
        #[arg(long, default_value_t = 10)]
        event_timeout_secs: u64,
        /// Longest wait for the first event (consumers may still be draining a backlog).
        #[arg(long, default_value_t = 180)]
        warmup_timeout_secs: u64,
    },
    /// Hold many idle WebSockets: memory per client and fan-out latency to all of them.
    WsIdle {
        /// The user all clients connect as.
        #[arg(long, default_value = "bench-ws")]
        user: String,
        /// Idle clients to open.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// The server's process id, to read its memory.
        #[arg(long)]
        server_pid: u32,
        /// Longest wait for the handshakes of 100 clients, and for the fan-out.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Opens `clients` idle WebSockets for the API's user, then measures memory per client and
/// the fan-out latency of one event to all of them.
async fn ws_idle(
    api: &Api,
    addr: SocketAddr,
    clients: usize,
    server_pid: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let before = rss_kib(server_pid)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (index, chunk) in (0..clients).collect::<Vec<_>>().chunks(100).enumerate() {
        for _ in chunk {
            let mut request = format!("ws://{addr}/api/{}/ws", api.user).into_client_request()?;
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {}", api.token).parse()?);
            let (tx, opened) = (tx.clone(), opened.clone());
            tasks.spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
                opened.fetch_add(1, Ordering::Relaxed);
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Text(text) = message
                        && text.contains("\"task.created\"")
                    {
                        let _ = tx.send(Instant::now());
                    }
                }
                anyhow::Ok(())
            });
        }
        // Bounded handshakes in flight: wait for this chunk before the next.
        let target = index * 100 + chunk.len();
        let deadline = Instant::now() + timeout;
        while opened.load(Ordering::Relaxed) < target {
            ensure!(
                Instant::now() < deadline,
                "handshakes stalled at {} clients",
                opened.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!("ws_clients={}", opened.load(Ordering::Relaxed));
    println!("ws_connect_s={:.2}", started.elapsed().as_secs_f64());
    // Let the server settle (allocations of the handshakes returned) before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server_pid)?;
    println!("ws_rss_before_kib={before}");
    println!("ws_rss_after_kib={after}");
    println!(
        "ws_kib_per_client={:.1}",
        after.saturating_sub(before) as f64 / clients.max(1) as f64
    );
    let sent = Instant::now();
    api.create(&json!({"title": "Fan-out"})).await?;
    let mut latencies = Vec::with_capacity(clients);
    let deadline = tokio::time::Instant::now() + timeout;
    while latencies.len() < clients {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(at)) => latencies.push(ms(at.duration_since(sent))),
            _ => break,
        }
    }
    println!("ws_fanout_missed={}", clients - latencies.len());
    report("ws_fanout", latencies);
    tasks.abort_all();
    Ok(())
}

/// An event as it arrived: when (monotonic and wall clock) and what.
struct Arrival {
    at: Instant,
    wall: DateTime<Utc>,
    event: Value,
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
    user: String,
}

impl Api {
    fn new(addr: SocketAddr, secret: &str, user: &str) -> anyhow::Result<Self> {
        let token = todo_auth::mint_hs256(
            &secret.to_owned().into(),
            user,
            Duration::from_secs(3600),
            None,
            None,
        )
        .context("cannot sign a token")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Api {
            client,
            base: format!("http://{addr}/api/{user}"),
            token,
            user: user.to_owned(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        ensure!(
            status == expect,
            "{method} {path}: expected {expect}, got {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }

    async fn create(&self, body: &Value) -> anyhow::Result<String> {
        let task = self
            .send(reqwest::Method::POST, "/tasks", Some(body), 201)
            .await?;
        task["id"]
            .as_str()
            .map(str::to_owned)
            .context("created task without an id")
    }

    async fn complete(&self, id: &str) -> anyhow::Result<Value> {
        self.send(
            reqwest::Method::PATCH,
            &format!("/tasks/{id}/complete"),
            Some(&json!({"completed": true})),
            200,
        )
        .await
    }

    /// Opens the WebSocket; a reader task time-stamps every event as it arrives.
    async fn watch(&self, addr: SocketAddr) -> anyhow::Result<mpsc::UnboundedReceiver<Arrival>> {
        let mut request = format!("ws://{addr}/api/{}/ws", self.user).into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .context("WebSocket connect")?;
        ensure!(response.status() == 101, "WebSocket refused");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let (at, wall) = (Instant::now(), Utc::now());
                if let Message::Text(text) = message
                    && let Ok(event) = serde_json::from_str::<Value>(&text)
                    && tx.send(Arrival { at, wall, event }).is_err()
                {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// Waits (at most `wait`) for the first arrival satisfying `matches`, dropping others.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    wait: Duration,
    mut matches: impl FnMut(&Value) -> bool,
) -> Option<Arrival> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(arrival)) if matches(&arrival.event) => return Some(arrival),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

fn is(event: &Value, kind: &str) -> bool {
    event["type"] == kind
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints `{prefix}_n`, `_p50_ms`, `_p99_ms`, `_max_ms` for samples in milliseconds.
fn report(prefix: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!("{prefix}_n={}", samples.len());
    println!("{prefix}_p50_ms={:.3}", percentile(&samples, 50.0));
    println!("{prefix}_p99_ms={:.3}", percentile(&samples, 99.0));
    println!(
        "{prefix}_max_ms={:.3}",
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn seed(
    api: Arc<Api>,
    count: usize,
    concurrency: usize,
    complete_every: usize,
    ids_out: PathBuf,
) -> anyhow::Result<()> {
    const PRIORITIES: [&str; 3] = ["high", "medium", "low"];
    let started = Instant::now();
    let now = Utc::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, 256) {
        let (api, next) = (api.clone(), next.clone());
        workers.spawn(async move {
            let mut made = Vec::new();
            let mut completed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok((made, completed));
                }
                let due = (i % 2 == 0)
                    .then(|| rfc3339(now + chrono::Duration::days(1 + (i % 30) as i64)));
                let body = json!({
                    "title": format!("Seeded task {i}"),
                    "description": "bench seed",
                    "priority": PRIORITIES[i % 3],
                    "tags": ["bench", format!("t{}", i % 10)],
                    "due_at": due,
                });
                let id = api.create(&body).await?;
                if complete_every > 0 && i % complete_every == 0 {
                    api.complete(&id).await?;
                    completed += 1;
                }
                made.push((i, id));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    let mut completed = 0;
    while let Some(joined) = workers.join_next().await {
        let (made, done) = joined??;
        all.extend(made);
        completed += done;
    }
    all.sort_unstable();
    let text: String = all.iter().map(|(_, id)| format!("{id}\n")).collect();
    std::fs::write(&ids_out, text)
        .with_context(|| format!("cannot write {}", ids_out.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!("seed_created={}", all.len());
    println!("seed_completed={completed}");
    println!("seed_seconds={seconds:.2}");
    println!(
        "seed_requests_per_sec={:.0}",
        (all.len() + completed) as f64 / seconds
    );
    Ok(())
}

async fn api_to_ws(
    api: &Api,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    creates: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut latencies = Vec::with_capacity(creates);
    let mut responses = Vec::with_capacity(creates);
    let mut missed = 0;
    for i in 0..creates {
        let body = json!({"title": format!("Latency probe {i}"), "priority": "medium"});
        let sent = Instant::now();
        let id = api.create(&body).await?;
        responses.push(ms(sent.elapsed()));
        match wait_for(rx, timeout, |e| is(e, "task.created") && e["subject"] == id).await {
            Some(arrival) => latencies.push(ms(arrival.at - sent)),
            None => missed += 1,
        }
    }
    report("api_ws", latencies);
    report("api_resp", responses);
    println!("api_ws_missed={missed}");
    Ok(())
}

async fn completion_to_next(
    api: &Api,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    // Recurring tasks due tomorrow, without reminders, so only recurrence is measured.
    let due = rfc3339(Utc::now() + chrono::Duration::days(1));
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let body = json!({
            "title": format!("Recurring probe {i}"),
            "due_at": due,
            "remind_before_minutes": null,
            "recurrence": {"frequency": "daily", "interval": 1},
        });
        ids.push(api.create(&body).await?);
    }
    // Let their task.created events pass before timing anything.
    let last = ids.last().cloned().unwrap_or_default();
    wait_for(rx, timeout, |e| {
        is(e, "task.created") && e["subject"] == last
    })
    .await;
    let mut latencies = Vec::with_capacity(count);
    let (mut missed, mut confirmed) = (0, 0);
    for id in &ids {
        let sent = Instant::now();
        api.complete(id).await?;
        let arrival = wait_for(rx, timeout, |e| {
            is(e, "task.created") && e["data"]["task"]["parent_task_id"] == id.as_str()
        })
        .await;
        let Some(arrival) = arrival else {
            missed += 1;
            continue;
        };
        latencies.push(ms(arrival.at - sent));
        let child = arrival.event["subject"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Confirm through the API: the child is listed, pending, pointing at its parent.
        let page = api
            .send(
                reqwest::Method::GET,
                "/tasks?status=pending&sort=created_at&order=desc&limit=5",
                None,
                200,
            )
            .await?;
        let listed = page["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|t| t["id"] == child && t["parent_task_id"] == id.as_str())
        });
        if listed {
            confirmed += 1;
        }
    }
    report("next_occ", latencies);
    println!("next_occ_missed={missed}");
    println!("next_occ_confirmed_by_list={confirmed}");
    Ok(())
}

async fn reminder_lag(
    api: &Api,
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut pending = std::collections::HashSet::new();
    for i in 0..count {
        // remind_at = due_at - 1 min = now + 2 s.
        let due = rfc3339(Utc::now() + chrono::Duration::seconds(62));
        let body = json!({
            "title": format!("Reminder probe {i}"),
            "due_at": due,
            "remind_before_minutes": 1,
        });
        pending.insert(api.create(&body).await?);
    }
    let mut lags = Vec::with_capacity(count);
    let mut scheduled = 0;
    // Remind times are ~2 s away; allow them plus the per-event timeout, in total.
    let deadline = Instant::now() + Duration::from_secs(3) + timeout;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(arrival) = wait_for(rx, left, |e| {
            e["subject"].as_str().is_some_and(|s| pending.contains(s))
                && (is(e, "reminder.due") || is(e, "reminder.scheduled"))
        })
        .await
        else {
            break;
        };
        if is(&arrival.event, "reminder.scheduled") {
            scheduled += 1;
            continue;
        }
        let remind_at = arrival.event["data"]["remind_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .context("reminder.due without remind_at")?;
        let lag = (arrival.wall - remind_at.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        lags.push(lag);
        if let Some(subject) = arrival.event["subject"].as_str() {
            pending.remove(subject);
        }
    }
    println!("reminder_scheduled_seen={scheduled}");
    println!("reminder_missed={}", pending.len());
    report("reminder", lags);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address; got {}", cli.addr);
    }
    let ws_addr = cli.ws_addr.unwrap_or(cli.addr);
    if !ws_addr.ip().is_loopback() {
        bail!("--ws-addr must be a loopback address; got {ws_addr}");
    }
    match cli.command {
        Command::Seed {
            user,
            count,
            concurrency,
            complete_every,
            ids_out,
        } => {
            let api = Arc::new(Api::new(cli.addr, &cli.secret, &user)?);
            eprintln!("seeding {count} tasks for {user} ({concurrency} in flight)");
            seed(api, count, concurrency, complete_every, ids_out).await
        }
        Command::Events {
            user,
            creates,
            recurring,
            reminders,
            event_timeout_secs,
            warmup_timeout_secs,
        } => {
            let api = Api::new(cli.addr, &cli.secret, &user)?;
            let timeout = Duration::from_secs(event_timeout_secs);
            let mut rx = api.watch(ws_addr).await?;
            // Warm-up: one event end to end, after any backlog the consumers still hold.
            let warm = Instant::now();
            let id = api.create(&json!({"title": "Warm-up"})).await?;
            let seen = wait_for(&mut rx, Duration::from_secs(warmup_timeout_secs), |e| {
                is(e, "task.created") && e["subject"] == id
            })
            .await;
            ensure!(
                seen.is_some(),
                "no event for the warm-up task within {warmup_timeout_secs} s"
            );
            println!("warmup_ms={:.1}", ms(warm.elapsed()));
            eprintln!("API -> WebSocket: {creates} sequential creates");
            api_to_ws(&api, &mut rx, creates, timeout).await?;
            eprintln!("completion -> next occurrence: {recurring} recurring tasks");
            completion_to_next(&api, &mut rx, recurring, timeout).await?;
            eprintln!("reminder lag: {reminders} reminders due in ~2 s");
            reminder_lag(&api, &mut rx, reminders, timeout).await
        }
        Command::WsIdle {
            user,
            clients,
            server_pid,
            timeout_secs,
        } => {
            let api = Api::new(cli.addr, &cli.secret, &user)?;
            eprintln!("opening {clients} idle WebSockets for {user}");
            ws_idle(
                &api,
                ws_addr,
                clients,
                server_pid,
                Duration::from_secs(timeout_secs),
            )
            .await
        }
    }
}
