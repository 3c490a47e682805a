//! Log output: flat JSON lines for machines, or the `fmt` format for people.
//!
//! The JSON shape is fixed by the "Logs" section of the API contract, and no
//! existing formatter produces it (`tracing-subscriber`'s JSON formatter nests
//! span fields under `spans`/`span`), so [`json_layer`] is a small custom
//! [`Layer`] that keeps each span's fields in the span's extensions and
//! flattens the whole scope into every event, with the `trace_id` and `span_id`
//! of the innermost span (see [`crate::trace`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal as _, Write as _};
use std::str::FromStr;

use serde_json::{Map, Number, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::TelemetryError;

/// How log lines are rendered on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One flat JSON object per line (the contract format; use in production).
    Json,
    /// Human-readable single-line text from `tracing-subscriber`'s `fmt`.
    Pretty,
}

impl LogFormat {
    /// The names accepted by [`FromStr`], in the order error messages list them.
    pub const VARIANTS: [&'static str; 2] = ["json", "pretty"];

    /// The canonical lower-case name, the same string `FromStr` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    /// Parses `json` or `pretty`, ignoring ASCII case and surrounding blanks
    /// because the value usually comes from an environment variable.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else if trimmed.eq_ignore_ascii_case("pretty") {
            Ok(LogFormat::Pretty)
        } else {
            Err(TelemetryError::UnknownLogFormat {
                value: s.to_owned(),
            })
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keeps logging (and trace export) alive for the life of the process; on drop, sends the
/// spans still queued (waiting at most [`EXPORT_FLUSH`]), then writes out every queued log
/// line (JSON lines go to stdout in batches from a background thread) and flushes stdout.
#[derive(Debug)]
#[must_use = "dropping the guard early flushes and may lose buffered telemetry; keep it until main returns"]
pub struct Guard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// How long a stopping process waits for its last spans to be sent.
pub const EXPORT_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(EXPORT_FLUSH)
        {
            tracing::warn!(error = %e, "sending the last spans at shutdown failed");
        }
        crate::stdout::stop();
        // Nothing useful can be done if stdout is gone at shutdown.
        let _ = std::io::stdout().flush();
    }
}

/// Installs the global subscriber once: env filter (`RUST_LOG` if set and
/// non-empty, else `default_filter`, e.g. `"info"`), then JSON or pretty
/// output to stdout.
///
/// `service` is written as the `service` key of every JSON line (for example
/// `"todo"` or `"api,audit"`); the pretty format does not show it.
///
/// # Errors
///
/// [`TelemetryError::InvalidFilter`] if `RUST_LOG` (or `default_filter` when
/// `RUST_LOG` is unset) is not a valid filter: a typo should be loud, not
/// silently log nothing. [`TelemetryError::AlreadyInitialized`] if a global
/// subscriber or `log` logger is already installed.
pub fn init(
    format: LogFormat,
    service: &str,
    default_filter: &str,
) -> Result<Guard, TelemetryError> {
    init_with_export(format, service, default_filter, None)
}

/// [`init`], and with `export` set, spans exported over OTLP ([`crate::otlp`]); without
/// it every span still gets W3C trace and span ids for the log lines and for propagation,
/// and nothing else is built. Must run inside the Tokio runtime when `export` is set.
///
/// # Errors
///
/// As [`init`], and [`TelemetryError::Export`] if the exporter cannot be built.
pub fn init_with_export(
    format: LogFormat,
    service: &str,
    default_filter: &str,
    export: Option<&crate::otlp::ExportSettings>,
) -> Result<Guard, TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(rust_log.as_deref(), default_filter)?;
    let provider = export.map(crate::otlp::provider).transpose()?;
    if let Some(settings) = export {
        crate::trace::set_sampler(settings.sampler);
    }
    // Exported spans come from this project's crates only: the exporter's own HTTP and
    // gRPC stack must not trace itself, and library spans would only add cost. Log lines
    // at WARN and ERROR inside a span become span events (an ERROR marks the span failed);
    // the others are in the logs, which carry the span's ids.
    let otel = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("todo"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(crate::trace::SampledFilter)
    });
    // Ids for every span that is not exported: all of them with export off, the unsampled
    // ones (and what runs inside them) with export on.
    let context = Some(crate::trace::ContextLayer::new());

    // `Option<Layer>` is itself a layer, which avoids boxing to pick one.
    let json = (format == LogFormat::Json).then(|| {
        crate::stdout::start();
        json_layer(service, crate::stdout::BatchedStdout)
    });
    let pretty = (format == LogFormat::Pretty).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(std::io::stdout().is_terminal())
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(context)
        .with(otel)
        .with(json)
        .with(pretty)
        .try_init()
        .map_err(TelemetryError::AlreadyInitialized)?;
    if let Some(settings) = export {
        crate::trace::set_exporting(true);
        tracing::info!(
            endpoint = settings.endpoint_for_log(),
            protocol = settings.protocol.as_str(),
            service_name = settings.service_name.as_str(),
            sampler = %settings.sampler,
            "exporting traces over OTLP"
        );
    }

    Ok(Guard { provider })
}

/// Chooses and parses the filter; split from [`init`] so it is testable
/// without touching the process environment.
fn build_filter(rust_log: Option<&str>, default_filter: &str) -> Result<EnvFilter, TelemetryError> {
    let (origin, value) = match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => ("RUST_LOG", v),
        None => ("default filter", default_filter),
    };
    EnvFilter::builder()
        .parse(value)
        .map_err(|source| TelemetryError::InvalidFilter {
            origin,
            value: value.to_owned(),
            source,
        })
}

/// Builds the flat JSON layer writing one line per event into `make_writer`.
///
/// `make_writer` is anything implementing [`MakeWriter`], including any
/// `Fn() -> impl io::Write` closure, so tests can capture output in memory.
/// Each line is rendered into a buffer first and handed over with a single
/// `write_all`, so concurrent events do not interleave mid-line on writers
/// (like stdout) that lock per call.
pub fn json_layer<S, W>(service: &str, make_writer: W) -> impl Layer<S> + Send + Sync + use<S, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    JsonLayer {
        service: service.to_owned(),
        make_writer,
    }
}

/// Keys every line has; user fields with these names are renamed so they
/// cannot corrupt them (see [`RENAMED_PREFIX`]).
const CORE_KEYS: [&str; 5] = ["timestamp", "level", "service", "message", "target"];

/// Prefix for user fields whose names collide with [`CORE_KEYS`]: dotted
/// like other namespaced tracing fields (`otel.name`), and kept rather than
/// dropped so no recorded data is lost.
const RENAMED_PREFIX: &str = "field.";

/// Target that `tracing-log` gives events bridged from the `log` crate.
const LOG_BRIDGE_TARGET: &str = "log";

/// See [`json_layer`].
struct JsonLayer<W> {
    service: String,
    make_writer: W,
}

/// Fields recorded on one span so far, stored in that span's extensions.
/// Private type, so no other layer can collide with it.
struct SpanFields(Map<String, Value>);

/// Records tracing field values into a JSON map, keeping their JSON types.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

/// Prefix of the fields that instruct the OpenTelemetry layer (`otel.name`, `otel.kind`,
/// ...): they describe the exported span, not what happened, and are not logged.
const OTEL_PREFIX: &str = "otel.";

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name().starts_with(OTEL_PREFIX) {
            return;
        }
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; a string keeps the value visible.
        let json = Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.put(field, json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        // Out-of-range values would lose precision as a JSON number.
        let json = i64::try_from(value)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(value.to_string()));
        self.put(field, json);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let json = u64::try_from(value)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(value.to_string()));
        self.put(field, json);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Display of each cause, joined, is what an operator needs; Debug of
        // error types is often unreadable.
        let mut text = String::new();
        let _ = write!(text, "{value}");
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.put(field, Value::String(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `write!` into a String instead of `format!`: `format!` panics when a
        // Debug impl returns an error, and logging must never panic.
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.put(field, Value::String(text));
    }
}

/// Records `record` into a fresh map. Done before taking the extensions
/// lock, because user `Debug` impls run here and may themselves log.
fn collect(record: impl FnOnce(&mut JsonVisitor<'_>)) -> Map<String, Value> {
    let mut map = Map::new();
    record(&mut JsonVisitor(&mut map));
    map
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // `Empty` fields are never visited, so they never enter the map.
        let fields = collect(|v| attrs.record(v));
        let mut extensions = span.extensions_mut();
        // A second JsonLayer on the same registry shares this type; the first
        // already stored identical fields. `insert` would panic on a duplicate.
        if extensions.get_mut::<SpanFields>().is_none() {
            extensions.insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let recorded = collect(|v| values.record(v));
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(SpanFields(fields)) => fields.extend(recorded),
            None => extensions.insert(SpanFields(recorded)),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut event_fields = collect(|v| event.record(v));

        let message = match event_fields.remove("message") {
            Some(Value::String(text)) => text,
            Some(other) => other.to_string(),
            None => String::new(),
        };

        // Events bridged from the `log` crate carry their real target in a
        // field; report it as the target and drop the bridge bookkeeping.
        let mut target = metadata.target().to_owned();
        if metadata.target() == LOG_BRIDGE_TARGET {
            if let Some(Value::String(real)) = event_fields.remove("log.target") {
                target = real;
            }
            for key in ["log.module_path", "log.file", "log.line"] {
                event_fields.remove(key);
            }
        }

        // Root to leaf, then the event, so inner values override outer ones. The line is
        // rendered from references into the spans' stored fields, not copies of them:
        // this runs for every access-log line.
        let spans: Vec<_> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let mut fields: BTreeMap<&str, &Value> = BTreeMap::new();
        for span_fields in extensions.iter().filter_map(|e| e.get::<SpanFields>()) {
            fields.extend(span_fields.0.iter().map(|(k, v)| (k.as_str(), v)));
        }
        // The ids of the span the line was written in: a span field of the same name is
        // not the trace's, so these win over it.
        let ids = (!spans.is_empty())
            .then(|| crate::trace::log_ids(extensions.iter().rev()))
            .flatten()
            .map(|(trace_id, span_id)| (Value::String(trace_id), Value::String(span_id)));
        if let Some((trace_id, span_id)) = &ids {
            fields.insert("trace_id", trace_id);
            fields.insert("span_id", span_id);
        }
        fields.extend(event_fields.iter().map(|(k, v)| (k.as_str(), v)));

        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let core = [
            ("timestamp", timestamp.as_str()),
            ("level", metadata.level().as_str()),
            ("service", self.service.as_str()),
            ("message", message.as_str()),
            ("target", target.as_str()),
        ];

        let mut line = Vec::with_capacity(256);
        if render_line(&mut line, &core, &fields).is_err() {
            // Serialising strings and JSON values into a Vec cannot fail in
            // practice; if it ever does, drop the line rather than emit half.
            return;
        }
        // Nowhere to report a failed log write; ignoring it beats panicking.
        let _ = self.make_writer.make_writer_for(metadata).write_all(&line);
    }
}

/// Renders one JSON object plus `\n`: core keys first in contract order
/// (easier to read than the map's key order), then the user fields.
fn render_line(
    out: &mut Vec<u8>,
    core: &[(&str, &str)],
    fields: &BTreeMap<&str, &Value>,
) -> serde_json::Result<()> {
    out.push(b'{');
    let mut first = true;
    let mut entry = |out: &mut Vec<u8>, key: &str, value: &dyn ErasedValue| {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        value.write_json(out)
    };
    for (key, value) in core {
        entry(out, key, value)?;
    }
    let mut renamed = String::new();
    for (&key, value) in fields {
        let key = if CORE_KEYS.contains(&key) {
            renamed.clear();
            renamed.push_str(RENAMED_PREFIX);
            renamed.push_str(key);
            renamed.as_str()
        } else {
            key
        };
        entry(out, key, value)?;
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Lets `render_line` write `&str` and `Value` through one closure.
trait ErasedValue {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
}

impl ErasedValue for &str {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

impl ErasedValue for &Value {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing::{field, info, info_span, warn};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Captures every `write` call as its own chunk, so a test can tell one
    /// `write_all` per line apart from several smaller writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn chunks(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|c| String::from_utf8(c.clone()).unwrap())
                .collect()
        }

        fn dispatch(&self, service: &str) -> tracing::Dispatch {
            let cap = self.clone();
            let subscriber =
                tracing_subscriber::registry().with(json_layer(service, move || cap.clone()));
            tracing::Dispatch::new(subscriber)
        }
    }

    /// Runs `f` under a JSON layer and returns the parsed lines, asserting
    /// each write was exactly one complete line.
    fn capture(service: &str, f: impl FnOnce()) -> Vec<Map<String, Value>> {
        let cap = Capture::default();
        tracing::dispatcher::with_default(&cap.dispatch(service), f);
        cap.chunks()
            .iter()
            .map(|chunk| {
                assert!(
                    chunk.ends_with('\n'),
                    "line not newline-terminated: {chunk:?}"
                );
                assert_eq!(
                    chunk.matches('\n').count(),
                    1,
                    "one write, one line: {chunk:?}"
                );
                match serde_json::from_str::<Value>(chunk).expect("valid JSON") {
                    Value::Object(map) => map,
                    other => panic!("not an object: {other}"),
                }
            })
            .collect()
    }

    fn keys(line: &Map<String, Value>) -> BTreeSet<&str> {
        line.keys().map(String::as_str).collect()
    }

    #[test]
    fn event_in_nested_spans_is_one_flat_line() {
        let lines = capture("todo", || {
            let outer = info_span!(
                "request",
                request_id = "req-1",
                user_id = field::Empty,
                task_id = "outer-task",
                attempt = 1u64,
            );
            let _outer = outer.enter();
            // Filled in after auth, as the HTTP middleware does.
            outer.record("user_id", "user-42");

            let inner = info_span!(
                "handler",
                task_id = "task-7",
                event_id = field::Empty,
                ok = true
            );
            let _inner = inner.enter();
            info!(count = 3, ratio = 0.5, neg = -2i64, "task created");
        });

        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let expected: BTreeSet<&str> = [
            "timestamp",
            "level",
            "service",
            "message",
            "target",
            "request_id",
            "user_id",
            "task_id",
            "attempt",
            "ok",
            "count",
            "ratio",
            "neg",
        ]
        .into();
        assert_eq!(keys(line), expected);

        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "todo");
        assert_eq!(line["message"], "task created");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["user_id"], "user-42");
        assert_eq!(line["task_id"], "task-7", "inner span overrides outer");
        assert_eq!(line["attempt"], Value::from(1u64));
        assert_eq!(line["ok"], Value::Bool(true));
        assert_eq!(line["count"], Value::from(3));
        assert_eq!(line["ratio"], Value::from(0.5));
        assert_eq!(line["neg"], Value::from(-2));
    }

    #[test]
    fn lines_carry_the_ids_of_their_span_and_otel_fields_are_not_logged() {
        let cap = Capture::default();
        let sink = cap.clone();
        let subscriber = tracing_subscriber::registry()
            .with(crate::trace::ContextLayer::new())
            .with(json_layer("todo", move || sink.clone()));
        let (outer, inner) = tracing::subscriber::with_default(subscriber, || {
            let outer = info_span!("outer", otel.name = "GET /x", otel.kind = "server");
            let _o = outer.enter();
            info!("in outer");
            let inner = info_span!("inner");
            let _i = inner.enter();
            info!("in inner");
            drop(_i);
            drop(_o);
            info!("outside");
            (
                crate::trace::traceparent(&outer).unwrap(),
                crate::trace::traceparent(&inner).unwrap(),
            )
        });
        let lines: Vec<Value> = cap
            .chunks()
            .iter()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        let ids = |header: &str| {
            let parts: Vec<&str> = header.split('-').collect();
            (parts[1].to_owned(), parts[2].to_owned())
        };
        let (trace_id, outer_span) = ids(&outer);
        let (inner_trace, inner_span) = ids(&inner);
        assert_eq!(inner_trace, trace_id);
        assert_eq!(lines[0]["trace_id"], trace_id.as_str());
        assert_eq!(lines[0]["span_id"], outer_span.as_str());
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], inner_span.as_str());
        assert!(lines[2].get("trace_id").is_none(), "{}", lines[2]);
        assert!(
            lines[0]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("otel.")),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn with_export_on_lines_carry_the_exported_span_ids_and_parents_propagate() {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        crate::trace::set_exporting(true);
        let cap = Capture::default();
        let sink = cap.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(json_layer("todo", move || sink.clone()));
        let remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let header = tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("audit");
            crate::trace::set_parent(&span, Some(remote));
            crate::trace::set_name(&span, || "audit process".into());
            let _g = span.enter();
            info!("handled");
            crate::trace::traceparent(&span).unwrap()
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "audit process");
        assert_eq!(
            format!("{:032x}", span.span_context.trace_id()),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:016x}", span.parent_span_id), "b7ad6b7169203331");
        let line: Value = serde_json::from_str(&cap.chunks()[0]).unwrap();
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            line["span_id"],
            format!("{:016x}", span.span_context.span_id())
        );
        assert_eq!(
            header,
            format!(
                "00-0af7651916cd43dd8448eb211c80319c-{:016x}-01",
                span.span_context.span_id()
            )
        );
    }

    #[test]
    fn timestamp_is_rfc3339_utc_with_micros() {
        let lines = capture("todo", || warn!("careful"));
        let ts = lines[0]["timestamp"].as_str().expect("string timestamp");
        assert!(ts.ends_with('Z'), "{ts}");
        let parsed = chrono::DateTime::parse_from_rfc3339(ts).expect("RFC3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0);
        let fraction = ts.rsplit_once('.').expect("fractional seconds").1;
        assert_eq!(fraction.len(), "123456Z".len(), "{ts}");
        assert_eq!(lines[0]["level"], "WARN");
    }

    #[test]
    fn fields_recorded_later_appear_and_empty_fields_do_not() {
        let lines = capture("api,audit", || {
            let span = info_span!("req", user_id = field::Empty, trace_id = field::Empty);
            let _g = span.enter();
            info!("before auth");
            span.record("user_id", 42u64);
            info!("after auth");
        });
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].contains_key("user_id"));
        assert!(!lines[0].contains_key("trace_id"));
        assert_eq!(lines[1]["user_id"], Value::from(42u64));
        assert!(!lines[1].contains_key("trace_id"));
        assert_eq!(lines[1]["service"], "api,audit");
    }

    #[test]
    fn record_on_outer_span_does_not_beat_inner_value() {
        let lines = capture("todo", || {
            let outer = info_span!("outer", task_id = field::Empty);
            let _o = outer.enter();
            let inner = info_span!("inner", task_id = "inner");
            let _i = inner.enter();
            outer.record("task_id", "outer-late");
            info!("x");
        });
        assert_eq!(lines[0]["task_id"], "inner");
    }

    #[test]
    fn event_fields_override_span_fields() {
        let lines = capture("todo", || {
            let span = info_span!("s", event_id = "from-span");
            let _g = span.enter();
            info!(event_id = "from-event", "x");
        });
        assert_eq!(lines[0]["event_id"], "from-event");
    }

    #[test]
    fn debug_and_display_values_are_strings() {
        #[derive(Debug)]
        struct Kind {
            _n: u8,
        }
        let lines = capture("todo", || {
            info!(kind = ?Kind { _n: 1 }, shown = %"plain", opt = ?Some(3), "x");
        });
        assert_eq!(lines[0]["kind"], "Kind { _n: 1 }");
        assert_eq!(lines[0]["shown"], "plain");
        assert_eq!(lines[0]["opt"], "Some(3)");
    }

    #[test]
    fn event_without_message_or_span_has_only_core_and_own_fields() {
        let lines = capture("todo", || info!(n = 1));
        let expected: BTreeSet<&str> =
            ["timestamp", "level", "service", "message", "target", "n"].into();
        assert_eq!(keys(&lines[0]), expected);
        assert_eq!(lines[0]["message"], "");
    }

    #[test]
    fn fields_named_like_core_keys_are_renamed_not_clobbering() {
        let lines = capture("todo", || {
            let span = info_span!("s", level = "span-level", service = 5);
            let _g = span.enter();
            info!(target = "field-target", timestamp = 0, "real message");
        });
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "todo");
        assert_eq!(line["message"], "real message");
        assert_eq!(line["target"], module_path!());
        assert!(line["timestamp"].is_string());
        assert_eq!(line["field.level"], "span-level");
        assert_eq!(line["field.service"], Value::from(5));
        assert_eq!(line["field.target"], "field-target");
        assert_eq!(line["field.timestamp"], Value::from(0));
    }

    #[test]
    fn odd_values_do_not_panic() {
        /// A Debug impl that fails, which makes `format!` panic.
        struct Broken;
        impl fmt::Debug for Broken {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let lines = capture("todo", || {
            info!(
                broken = ?Broken,
                nan = f64::NAN,
                inf = f64::INFINITY,
                big = u128::MAX,
                small = -5i128,
                quote = "a\"b\nc",
                "odd \u{0} message"
            );
        });
        let line = &lines[0];
        assert_eq!(line["broken"], "");
        assert_eq!(line["nan"], "NaN");
        assert_eq!(line["inf"], "inf");
        assert_eq!(line["big"], u128::MAX.to_string());
        assert_eq!(line["small"], Value::from(-5));
        assert_eq!(line["quote"], "a\"b\nc");
        assert_eq!(line["message"], "odd \u{0} message");
    }

    #[test]
    fn error_values_show_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("store failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(io::Error::other("disk full"));
        let lines = capture("todo", || {
            info!(error = &err as &(dyn std::error::Error + 'static), "x");
        });
        assert_eq!(lines[0]["error"], "store failed: disk full");
    }

    #[test]
    fn log_crate_events_report_their_real_target() {
        let lines = capture("todo", || {
            tracing::event!(
                target: "log",
                tracing::Level::INFO,
                log.target = "sqlx::query",
                log.module_path = "sqlx::query",
                log.file = "query.rs",
                log.line = 10u64,
                "SELECT 1"
            );
        });
        let expected: BTreeSet<&str> =
            ["timestamp", "level", "service", "message", "target"].into();
        assert_eq!(keys(&lines[0]), expected);
        assert_eq!(lines[0]["target"], "sqlx::query");
    }

    #[test]
    fn concurrent_logging_yields_only_complete_lines() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 200;
        let cap = Capture::default();
        let dispatch = cap.dispatch("todo");
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let dispatch = dispatch.clone();
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let span = info_span!("worker", thread = t);
                        let _g = span.enter();
                        for i in 0..PER_THREAD {
                            info!(i, padding = "x".repeat(500).as_str(), "line from worker");
                        }
                    });
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }

        let chunks = cap.chunks();
        assert_eq!(chunks.len(), THREADS * PER_THREAD);
        let mut per_thread = vec![0usize; THREADS];
        for chunk in &chunks {
            assert_eq!(chunk.matches('\n').count(), 1);
            let line: Value = serde_json::from_str(chunk).expect("complete JSON line");
            let thread = line["thread"].as_u64().expect("thread field") as usize;
            per_thread[thread] += 1;
        }
        assert!(
            per_thread.iter().all(|&n| n == PER_THREAD),
            "{per_thread:?}"
        );
    }

    #[test]
    fn log_format_parses_and_displays() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("pretty".parse::<LogFormat>().unwrap(), LogFormat::Pretty);
        assert_eq!(" JSON ".parse::<LogFormat>().unwrap(), LogFormat::Json);
        for format in [LogFormat::Json, LogFormat::Pretty] {
            assert_eq!(format.to_string().parse::<LogFormat>().unwrap(), format);
        }
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn log_format_rejects_others_naming_allowed_values() {
        let err = "xml".parse::<LogFormat>().unwrap_err();
        assert!(matches!(err, TelemetryError::UnknownLogFormat { .. }));
        let message = err.to_string();
        assert!(message.contains("xml"), "{message}");
        for allowed in LogFormat::VARIANTS {
            assert!(message.contains(allowed), "{message}");
        }
        assert!("".parse::<LogFormat>().is_err());
    }

    #[test]
    fn filter_prefers_rust_log_and_reports_bad_directives() {
        assert_eq!(build_filter(None, "info").unwrap().to_string(), "info");
        assert_eq!(
            build_filter(Some("  "), "warn").unwrap().to_string(),
            "warn"
        );
        assert_eq!(
            build_filter(Some("todo=debug"), "info")
                .unwrap()
                .to_string(),
            "todo=debug"
        );
        match build_filter(Some("todo=loud"), "info") {
            Err(TelemetryError::InvalidFilter { origin, value, .. }) => {
                assert_eq!(origin, "RUST_LOG");
                assert_eq!(value, "todo=loud");
            }
            other => panic!("expected InvalidFilter, got {other:?}"),
        }
        assert!(matches!(
            build_filter(None, "todo=loud"),
            Err(TelemetryError::InvalidFilter {
                origin: "default filter",
                ..
            })
        ));
    }

    #[test]
    fn init_installs_once() {
        // nextest runs each test in its own process, so this global install
        // does not affect other tests (they use scoped dispatchers anyway).
        let guard = init(LogFormat::Json, "todo", "info");
        if std::env::var("RUST_LOG").is_ok_and(|v| build_filter(Some(&v), "info").is_err()) {
            assert!(matches!(guard, Err(TelemetryError::InvalidFilter { .. })));
            return;
        }
        let _guard = guard.expect("first init succeeds");
        assert!(matches!(
            init(LogFormat::Pretty, "todo", "info"),
            Err(TelemetryError::AlreadyInitialized(_))
        ));
    }
}
