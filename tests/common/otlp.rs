//! Real OTLP receivers for the tracing tests, installed by `scripts/install-oteltap.sh`
//! (run here when missing): `oteltap` (OTLP/HTTP protobuf, one JSON line per span) and
//! `rotel-agent` (OTLP/gRPC, spans printed by `--debug-log traces`). Each runs on a free
//! loopback port and is stopped when dropped. Also: the checks that one task's spans form
//! one linked trace, and that log lines carry the ids of those spans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One received span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// String values as they are, others as their JSON text.
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/otel/bin")
}

/// Runs `scripts/install-oteltap.sh` unless both receivers are there (it is idempotent and
/// takes a lock, so concurrent tests are safe).
fn ensure_installed() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        if tools().join("python").exists() && tools().join("rotel-agent").exists() {
            return;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/install-oteltap.sh");
        let status = std::process::Command::new(&script)
            .status()
            .expect("run scripts/install-oteltap.sh");
        assert!(status.success(), "scripts/install-oteltap.sh failed");
    });
}

/// A free loopback port (free when asked; the receiver binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which receiver, and so which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// oteltap, OTLP/HTTP protobuf.
    Http,
    /// rotel-agent, OTLP/gRPC.
    Grpc,
}

/// A running receiver and the spans it printed so far.
pub struct Receiver {
    pub port: u16,
    pub kind: Kind,
    spans: Arc<Mutex<Vec<Span>>>,
    output: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl Receiver {
    /// Starts oteltap (OTLP/HTTP) and waits until it listens.
    pub async fn http() -> Receiver {
        Self::start(Kind::Http).await
    }

    /// Starts rotel-agent (OTLP/gRPC) and waits until it listens.
    pub async fn grpc() -> Receiver {
        Self::start(Kind::Grpc).await
    }

    async fn start(kind: Kind) -> Receiver {
        tokio::task::spawn_blocking(ensure_installed).await.unwrap();
        let port = free_port();
        let mut command = match kind {
            Kind::Http => {
                let mut c = Command::new(tools().join("python"));
                c.args(["-u", "-m", "oteltap", "--port", &port.to_string()]);
                c
            }
            Kind::Grpc => {
                let mut c = Command::new(tools().join("rotel-agent"));
                c.args([
                    "start",
                    "--otlp-grpc-endpoint",
                    &format!("127.0.0.1:{port}"),
                    "--otlp-http-endpoint",
                    &format!("127.0.0.1:{}", free_port()),
                    "--exporter",
                    "blackhole",
                    "--debug-log",
                    "traces",
                    "--debug-log-verbosity",
                    "detailed",
                ])
                .env("NO_COLOR", "1");
                c
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let output: Arc<Mutex<Vec<String>>> = Arc::default();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (spans, output) = (spans.clone(), output.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                let mut block = RotelBlock::default();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = strip_ansi(&line);
                    match kind {
                        Kind::Http => {
                            if let Some(span) = oteltap_span(&line) {
                                spans.lock().unwrap().push(span);
                            }
                        }
                        Kind::Grpc => block.feed(&line, &mut spans.lock().unwrap()),
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the OTLP receiver exited ({status}):\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the OTLP receiver did not listen on {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Receiver {
            port,
            kind,
            spans,
            output,
            _child: child,
        }
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `OTEL_*` variables that point a process at this receiver, with a short batch delay.
    pub fn env(&self) -> Vec<(String, String)> {
        let protocol = match self.kind {
            Kind::Http => "http/protobuf",
            Kind::Grpc => "grpc",
        };
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// What the receiver printed (for failure messages).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A span from oteltap's NDJSON (lines with a `spanId`; logs and metrics are skipped).
fn oteltap_span(line: &str) -> Option<Span> {
    let v: Value = serde_json::from_str(line).ok()?;
    let text = |key: &str| v.get(key)?.as_str().map(str::to_owned);
    let mut attributes = BTreeMap::new();
    for kv in v.get("attributes")?.as_array()? {
        let key = kv["key"].as_str()?.to_owned();
        let value = &kv["value"];
        let shown = match value.get("stringValue") {
            Some(Value::String(s)) => s.clone(),
            _ => value
                .as_object()
                .and_then(|o| o.values().next())
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default(),
        };
        attributes.insert(key, shown);
    }
    Some(Span {
        trace_id: text("traceId")?,
        span_id: text("spanId")?,
        parent_span_id: text("parentSpanId").unwrap_or_default(),
        name: text("name")?,
        attributes,
    })
}

/// Reads rotel's detailed debug output: each `Span #N` block becomes a span, filled in
/// place line by line (so the last span of a batch is there without waiting for another).
#[derive(Default)]
struct RotelBlock {
    current: Option<usize>,
    in_attributes: bool,
}

impl RotelBlock {
    fn feed(&mut self, line: &str, spans: &mut Vec<Span>) {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #") || trimmed.starts_with("ScopeSpans #") {
            self.current = None;
            self.in_attributes = false;
            return;
        }
        if trimmed.starts_with("Span #") {
            spans.push(Span {
                trace_id: String::new(),
                span_id: String::new(),
                parent_span_id: String::new(),
                name: String::new(),
                attributes: BTreeMap::new(),
            });
            self.current = Some(spans.len() - 1);
            self.in_attributes = false;
            return;
        }
        let Some(span) = self.current.and_then(|i| spans.get_mut(i)) else {
            return;
        };
        if self.in_attributes
            && let Some(rest) = trimmed.strip_prefix("-> ")
            && let Some((key, value)) = rest.split_once(": ")
        {
            // `Str(text)`, `Int(3)`, ...
            let inner = value
                .split_once('(')
                .and_then(|(_, v)| v.strip_suffix(')'))
                .unwrap_or(value);
            span.attributes.insert(key.to_owned(), inner.to_owned());
            return;
        }
        if let Some((key, value)) = trimmed.split_once(':') {
            let value = value.trim().to_owned();
            match key.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_span_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                "Attributes" => self.in_attributes = true,
                _ => self.in_attributes = false,
            }
        }
    }
}

/// What a task's trace must hold: the api span that created it and, as its descendants,
/// the consumer spans of its `task.created` and of the `reminder.scheduled` it caused.
#[derive(Debug)]
pub struct TaskTrace {
    pub trace_id: String,
    /// Span name (and event type, for consumers) -> span id.
    pub spans: HashMap<&'static str, String>,
    /// Every span id of the trace.
    pub all: HashSet<String>,
}

/// The spans a task's trace must contain, by key: (span name, `event_type` attribute).
const EXPECTED: [(&str, &str, Option<&str>); 6] = [
    ("api", "POST /api/{user_id}/tasks", None),
    ("audit", "audit process", Some("task.created")),
    ("notification", "notification process", Some("task.created")),
    ("sync", "sync publish", Some("task.created")),
    (
        "audit reminder",
        "audit process",
        Some("reminder.scheduled"),
    ),
    ("sync reminder", "sync publish", Some("reminder.scheduled")),
];

/// Checks `spans` for the trace of `task_id`: exactly one trace holds its spans; it has
/// each expected span once; every consumer span's parent chain reaches the api span;
/// `reminder.scheduled` spans descend from the notification span. `Err` says what is
/// missing (the spans may still be on their way).
pub fn task_trace(spans: &[Span], task_id: &str) -> Result<TaskTrace, String> {
    let of_task: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attr("task_id") == Some(task_id))
        .collect();
    let traces: HashSet<&str> = of_task.iter().map(|s| s.trace_id.as_str()).collect();
    if traces.len() != 1 {
        return Err(format!(
            "the task's spans should form one trace, found {} ({traces:?})",
            traces.len()
        ));
    }
    let trace_id = traces.into_iter().next().unwrap().to_owned();
    let by_id: HashMap<&str, &Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let mut found = HashMap::new();
    for (key, name, event_type) in EXPECTED {
        let matching: Vec<&&Span> = of_task
            .iter()
            .filter(|s| {
                s.name == name && event_type.is_none_or(|t| s.attr("event_type") == Some(t))
            })
            .collect();
        match matching.as_slice() {
            [one] => {
                found.insert(key, one.span_id.clone());
            }
            [] => return Err(format!("no `{name}` span ({event_type:?}) yet")),
            more => return Err(format!("{} `{name}` spans ({event_type:?})", more.len())),
        }
    }
    let api = &found["api"];
    if !by_id[api.as_str()].parent_span_id.is_empty() {
        return Err("the api span should be the trace's root (no traceparent was sent)".into());
    }
    let ancestors = |id: &str| {
        let mut chain = Vec::new();
        let mut at = by_id.get(id).map(|s| s.parent_span_id.as_str());
        while let Some(parent) = at.filter(|p| !p.is_empty()) {
            chain.push(parent.to_owned());
            at = by_id.get(parent).map(|s| s.parent_span_id.as_str());
        }
        chain
    };
    for key in ["audit", "notification", "sync"] {
        let chain = ancestors(&found[key]);
        if chain.first() != Some(api) {
            return Err(format!(
                "`{key}` should be a child of the api span: parents {chain:?}"
            ));
        }
    }
    for key in ["audit reminder", "sync reminder"] {
        let chain = ancestors(&found[key]);
        if chain.first() != Some(&found["notification"]) || chain.last() != Some(api) {
            return Err(format!(
                "`{key}` should be a child of the notification span, under the api span: parents {chain:?}"
            ));
        }
    }
    Ok(TaskTrace {
        trace_id,
        spans: found,
        all: by_id.keys().map(|s| (*s).to_owned()).collect(),
    })
}

/// Checks JSON log lines against the trace: a line was written inside the api, audit,
/// notification and sync spans (its `span_id` is theirs), every line of the trace names
/// one of the trace's exported spans, and every line of those spans has the trace's id.
pub fn logs_match(lines: &[String], trace: &TaskTrace) -> Result<(), String> {
    let parsed: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    for key in ["api", "audit", "notification", "sync"] {
        let span_id = &trace.spans[key];
        let inside: Vec<&Value> = parsed.iter().filter(|v| v["span_id"] == *span_id).collect();
        if inside.is_empty() {
            return Err(format!("no log line inside the `{key}` span {span_id}"));
        }
        if let Some(bad) = inside.iter().find(|v| v["trace_id"] != *trace.trace_id) {
            return Err(format!(
                "a line of the `{key}` span has another trace id: {bad}"
            ));
        }
    }
    for line in parsed.iter().filter(|v| v["trace_id"] == *trace.trace_id) {
        let span_id = line["span_id"].as_str().unwrap_or_default();
        if !trace.all.contains(span_id) {
            return Err(format!(
                "a line of the trace names a span that was not exported: {line}"
            ));
        }
    }
    Ok(())
}

/// Waits up to `wait` for the trace of `task_id` to be complete in `receiver`
/// ([`task_trace`]), then for the log lines `logs` gives to match it ([`logs_match`]);
/// panics saying what is missing, with the spans and the logs.
pub async fn wait_for_linked_trace(
    receiver: &Receiver,
    task_id: &str,
    wait: Duration,
    logs: impl Fn() -> Vec<String>,
) -> TaskTrace {
    let trace = super::eventually(wait, || {
        let found = task_trace(&receiver.spans(), task_id);
        async move { found.ok() }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no complete trace for the task: {}\nspans: {:#?}\nreceiver:\n{}\nlogs:\n{}",
            task_trace(&receiver.spans(), task_id).unwrap_err(),
            receiver.spans(),
            receiver.output(),
            logs().join("\n")
        )
    });
    let matched = super::eventually(Duration::from_secs(10), || {
        let ok = logs_match(&logs(), &trace).ok();
        async move { ok }
    })
    .await;
    if matched.is_none() {
        panic!(
            "the logs do not match the trace: {}\nlogs:\n{}",
            logs_match(&logs(), &trace).unwrap_err(),
            logs().join("\n")
        );
    }
    trace
}
