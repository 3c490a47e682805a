//! Prometheus metrics: one `todo`-prefixed registry, one struct per concern.
//!
//! Each struct registers its own series in [`Metrics::new`] and exposes
//! small recording methods, so callers never touch label structs or metric
//! names. Label values must stay bounded: callers pass route templates
//! (`/tasks/{id}`) and error kinds (`&'static str`), never paths or messages.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` for the `/metrics` response; [`Metrics::encode`] emits
/// OpenMetrics text, which Prometheus only parses with this header.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Registry prefix; every series is `todo_*`.
const PREFIX: &str = "todo";

/// HTTP and store latencies: sub-millisecond (SQLite, cached reads) to 10 s
/// (the request timeout).
const FAST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Event delivery latency (event time -> handled); the contract promises
/// WebSocket updates within 2 s, so resolution is finest below that.
const EVENT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Reminder delivery lag (`remind_at` -> delivered): the scheduler polls, so
/// lags are seconds, and minutes mean something is wrong.
const REMINDER_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// All metrics of the process, shared behind an `Arc`.
///
/// Metric handles are internally reference-counted and lock-free to update;
/// the registry is only needed to encode (and to register extra series), so
/// it sits behind a mutex.
#[derive(Debug)]
pub struct Metrics {
    /// The `todo`-prefixed registry every series below is registered in.
    /// Lock it to register additional metrics; [`Metrics::encode`] locks it too.
    pub registry: Mutex<Registry>,
    /// HTTP API requests.
    pub http: HttpMetrics,
    /// Event bus publishing and consumption.
    pub events: EventMetrics,
    /// WebSocket sync connections.
    pub ws: WsMetrics,
    /// Reminder scheduling and webhook delivery.
    pub reminders: ReminderMetrics,
    /// Storage operations.
    pub store: StoreMetrics,
    /// `todo_process_start_time_seconds`, so dashboards can spot restarts.
    process_start: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Creates and registers every series under the `todo` prefix, including
    /// `todo_build_info{version}` and the process start time (set to now).
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let http = HttpMetrics::register(&mut registry);
        let events = EventMetrics::register(&mut registry);
        let ws = WsMetrics::register(&mut registry);
        let reminders = ReminderMetrics::register(&mut registry);
        let store = StoreMetrics::register(&mut registry);

        // `Info` renders as `todo_build_info{version="…"} 1`.
        registry.register(
            "build",
            "Build information; the value is always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }),
        );
        let process_start = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            process_start.clone(),
        );

        let metrics = Metrics {
            registry: Mutex::new(registry),
            http,
            events,
            ws,
            reminders,
            store,
            process_start,
        };
        metrics.process_start();
        Arc::new(metrics)
    }

    /// Sets `todo_process_start_time_seconds` to now. [`Metrics::new`]
    /// already does this; call it again only if metrics are created well
    /// before the service actually starts serving.
    pub fn process_start(&self) {
        let now = chrono::Utc::now();
        let seconds = now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6;
        self.process_start.set(seconds);
    }

    /// Renders every series as OpenMetrics text, ending in `# EOF`; serve it
    /// with [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        // A panic elsewhere while holding the lock leaves the registry intact
        // (registration is the only mutation), so keep serving metrics.
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            // Only a failing `fmt::Write` errors, and `String` never fails;
            // still, never hand out a truncated exposition.
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

/// Drops observations that would corrupt a histogram's sum: non-finite
/// values are skipped and negative ones (clock skew between the event's
/// timestamp and this host) are clamped to zero.
fn sanitize_seconds(seconds: f64) -> Option<f64> {
    seconds.is_finite().then_some(seconds.max(0.0))
}

fn fast_histogram() -> Histogram {
    Histogram::new(FAST_BUCKETS)
}

fn event_histogram() -> Histogram {
    Histogram::new(EVENT_BUCKETS)
}

/// `todo_build_info` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Crate version the binary was built from.
    pub version: String,
}

/// Labels of `todo_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method, upper case (`GET`).
    pub method: String,
    /// Route template (`/tasks/{id}`), never the concrete path.
    pub route: String,
    /// Response status code (`200`).
    pub status: String,
}

/// Labels of `todo_http_request_duration_seconds`; no status, to keep the
/// histogram's series count down.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method, upper case.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// HTTP API request metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(fast_histogram),
            in_flight: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests handled, by method, route template and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency, by method and route template",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests currently being handled",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// Records one finished request: counts it and observes its latency.
    /// `route` must be the route template, not the request path.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.duration
                .get_or_create(&RouteLabels {
                    method: method.to_owned(),
                    route: route.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// A request started; pair with [`HttpMetrics::in_flight_dec`].
    pub fn in_flight_inc(&self) {
        self.in_flight.inc();
    }

    /// A request finished (whatever its outcome).
    pub fn in_flight_dec(&self) {
        self.in_flight.dec();
    }
}

/// Labels of `todo_events_handled_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    /// Consumer name (`recurring`, `notification`, `sync`, `audit`).
    pub consumer: String,
    /// Event type (`task.created`).
    pub r#type: String,
}

/// Labels of `todo_event_handler_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Consumer name.
    pub consumer: String,
    /// Error kind, a fixed string per error variant, never the message.
    pub kind: String,
}

/// Labels of `todo_events_dead_lettered_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Consumer name.
    pub consumer: String,
    /// Why the event could not be handled: a fixed string per cause, never the message.
    pub reason: String,
}

/// Labels of per-consumer series (lag, delivery latency).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Consumer name.
    pub consumer: String,
}

/// Labels of `todo_consumer_lag_events`: one series per consumer and partition it reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// Consumer name.
    pub consumer: String,
    /// Topic name (the embedded log's topics are `task-events` and `reminders`).
    pub topic: String,
    /// Partition number (`0` in the embedded log).
    pub partition: String,
}

/// Labels of per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// Labels of `todo_events_published_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    /// Event type.
    pub r#type: String,
}

/// Event bus metrics, from the publisher's and each consumer's side.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    handled: Family<HandledLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    lag: Family<LagLabels, Gauge>,
    outbox_backlog: Gauge,
    outbox_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    relayed: Family<TopicLabels, Counter>,
    latency: Family<ConsumerLabels, Histogram, fn() -> Histogram>,
    published: Family<EventTypeLabels, Counter>,
    dead_lettered: Family<DeadLetterLabels, Counter>,
    recurring: Family<OutcomeLabels, Counter>,
}

impl EventMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = EventMetrics {
            handled: Family::default(),
            failures: Family::default(),
            lag: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_age: Gauge::default(),
            relayed: Family::default(),
            latency: Family::new_with_constructor(event_histogram),
            published: Family::default(),
            dead_lettered: Family::default(),
            recurring: Family::default(),
        };
        registry.register(
            "events_handled",
            "Events handled successfully, by consumer and event type",
            metrics.handled.clone(),
        );
        registry.register(
            "event_handler_failures",
            "Event handler failures, by consumer and error kind",
            metrics.failures.clone(),
        );
        registry.register(
            "consumer_lag_events",
            "Events after the consumer's committed position, by consumer, topic and partition",
            metrics.lag.clone(),
        );
        registry.register(
            "outbox_backlog_events",
            "Outbox events not yet relayed to the broker (Kafka and Dapr modes)",
            metrics.outbox_backlog.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest outbox event not yet relayed to the broker, 0 when none",
            Unit::Seconds,
            metrics.outbox_age.clone(),
        );
        registry.register(
            "events_relayed",
            "Outbox events published to the broker, by topic",
            metrics.relayed.clone(),
        );
        registry.register_with_unit(
            "event_delivery_latency",
            "Time from an event's timestamp until a consumer handled it",
            Unit::Seconds,
            metrics.latency.clone(),
        );
        registry.register(
            "events_published",
            "Task events appended to the outbox (created, updated, completed, deleted), by event type",
            metrics.published.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events a consumer could not handle and kept as dead letters, by consumer and reason",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "recurring_completions",
            "Completions of recurring tasks handled by recurring, by outcome (created, already_created, series_ended)",
            metrics.recurring.clone(),
        );
        metrics
    }

    /// A consumer handled an event successfully.
    pub fn handled(&self, consumer: &str, event_type: &str) {
        self.handled
            .get_or_create(&HandledLabels {
                consumer: consumer.to_owned(),
                r#type: event_type.to_owned(),
            })
            .inc();
    }

    /// A consumer's handler failed; `kind` is the error's fixed label.
    pub fn failed(&self, consumer: &str, kind: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                consumer: consumer.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Sets how many events the consumer is behind the head of one partition.
    pub fn set_lag(&self, consumer: &str, topic: &str, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&LagLabels {
                consumer: consumer.to_owned(),
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(lag);
    }

    /// Sets the outbox backlog: events not yet relayed, and the oldest one's age.
    pub fn set_outbox(&self, backlog: i64, oldest_age_seconds: f64) {
        self.outbox_backlog.set(backlog);
        self.outbox_age.set(oldest_age_seconds.max(0.0));
    }

    /// Counts events published to the broker on `topic`.
    pub fn relayed(&self, topic: &str, count: u64) {
        self.relayed
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc_by(count);
    }

    /// Observes the time from the event's timestamp to it being handled.
    pub fn observe_latency(&self, consumer: &str, seconds: f64) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.latency
                .get_or_create(&ConsumerLabels {
                    consumer: consumer.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// A consumer kept an event it could not handle as a dead letter; `reason` is the
    /// cause's fixed label.
    pub fn dead_lettered(&self, consumer: &str, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&DeadLetterLabels {
                consumer: consumer.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// `recurring` handled the completion of a recurring task: `created` (its next
    /// occurrence), `already_created` (it had one), `series_ended` (no next date in range).
    pub fn recurring_completion(&self, outcome: &'static str) {
        self.recurring
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An event of `event_type` was published.
    pub fn published(&self, event_type: &str) {
        self.published
            .get_or_create(&EventTypeLabels {
                r#type: event_type.to_owned(),
            })
            .inc();
    }
}

/// WebSocket sync metrics.
#[derive(Debug, Clone)]
pub struct WsMetrics {
    connections: Gauge,
    sent: Counter,
    slow_disconnects: Counter,
}

impl WsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = WsMetrics {
            connections: Gauge::default(),
            sent: Counter::default(),
            slow_disconnects: Counter::default(),
        };
        registry.register(
            "ws_connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        registry.register(
            "ws_messages_sent",
            "Messages queued to WebSocket client connections",
            metrics.sent.clone(),
        );
        registry.register(
            "ws_slow_consumer_disconnects",
            "WebSocket clients disconnected for not keeping up",
            metrics.slow_disconnects.clone(),
        );
        metrics
    }

    /// A client connected; pair with [`WsMetrics::disconnected`].
    pub fn connected(&self) {
        self.connections.inc();
    }

    /// A client's connection closed, for any reason.
    pub fn disconnected(&self) {
        self.connections.dec();
    }

    /// One message was sent to a client.
    pub fn sent(&self) {
        self.sent.inc();
    }

    /// A client was dropped because its send buffer filled up. Call
    /// [`WsMetrics::disconnected`] as well when the connection closes.
    pub fn dropped_slow(&self) {
        self.slow_disconnects.inc();
    }
}

/// Labels of `todo_webhook_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// A fixed string per outcome: `delivered`, `retry` or `failed` for webhooks;
    /// `created`, `already_created` or `series_ended` for recurring completions.
    pub outcome: String,
}

/// Reminder scheduler and webhook metrics.
#[derive(Debug, Clone)]
pub struct ReminderMetrics {
    delivered: Counter,
    lag: Histogram,
    webhooks: Family<OutcomeLabels, Counter>,
}

impl ReminderMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = ReminderMetrics {
            delivered: Counter::default(),
            lag: Histogram::new(REMINDER_BUCKETS),
            webhooks: Family::default(),
        };
        registry.register(
            "reminders_delivered",
            "Reminders delivered",
            metrics.delivered.clone(),
        );
        registry.register_with_unit(
            "reminder_delivery_lag",
            "Time from a reminder's remind_at until it was delivered",
            Unit::Seconds,
            metrics.lag.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts, by outcome",
            metrics.webhooks.clone(),
        );
        metrics
    }

    /// `n` reminders were delivered (the scheduler works in batches).
    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    /// Observes the time from `remind_at` to delivery.
    pub fn observe_lag(&self, seconds: f64) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.lag.observe(seconds);
        }
    }

    /// One webhook attempt ended with `outcome`: `delivered`, `retry` or `failed`.
    pub fn webhook(&self, outcome: &'static str) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Labels of `todo_store_operation_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Store operation name (`create_task`).
    pub op: String,
}

/// Labels of `todo_store_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    /// Store operation name.
    pub op: String,
    /// Error kind, a fixed string per error variant.
    pub kind: String,
}

/// Storage layer metrics.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    errors: Family<StoreErrorLabels, Counter>,
}

impl StoreMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = StoreMetrics {
            duration: Family::new_with_constructor(fast_histogram),
            errors: Family::default(),
        };
        registry.register_with_unit(
            "store_operation_duration",
            "Store operation latency, by operation",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store operation errors, by operation and error kind",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Observes how long store operation `op` took (successful or not).
    pub fn observe(&self, op: &'static str, seconds: f64) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.duration
                .get_or_create(&OpLabels { op: op.to_owned() })
                .observe(seconds);
        }
    }

    /// Store operation `op` failed with an error of `kind`.
    pub fn error(&self, op: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&StoreErrorLabels {
                op: op.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value of the series line starting with `series` (name plus labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
    }

    #[test]
    fn empty_registry_has_build_info_and_ends_with_eof() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(&text, &format!("todo_build_info{{version=\"{version}\"}}")),
            Some(1.0),
            "{text}"
        );
        let start = sample(&text, "todo_process_start_time_seconds").expect("start time");
        assert!(start > 1.6e9, "{start}");
        assert_eq!(sample(&text, "todo_http_requests_in_flight"), Some(0.0));
        assert_eq!(sample(&text, "todo_ws_connections"), Some(0.0));
    }

    #[test]
    fn http_series_have_labels_counts_and_buckets() {
        let metrics = Metrics::new();
        metrics.http.observe("GET", "/tasks/{id}", 200, 0.003);
        metrics.http.observe("GET", "/tasks/{id}", 200, 0.2);
        metrics.http.observe("POST", "/tasks", 422, 0.0001);
        metrics.http.in_flight_inc();
        metrics.http.in_flight_inc();
        metrics.http.in_flight_dec();
        let text = metrics.encode();

        assert_eq!(
            sample(
                &text,
                r#"todo_http_requests_total{method="GET",route="/tasks/{id}",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_http_requests_total{method="POST",route="/tasks",status="422"}"#
            ),
            Some(1.0)
        );
        let get = r#"method="GET",route="/tasks/{id}""#;
        assert_eq!(
            sample(
                &text,
                &format!("todo_http_request_duration_seconds_count{{{get}}}")
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("todo_http_request_duration_seconds_bucket{{le=\"0.005\",{get}}}")
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("todo_http_request_duration_seconds_bucket{{le=\"0.25\",{get}}}")
            ),
            Some(2.0)
        );
        // The full bucket layout from the brief, plus +Inf.
        let buckets = text
            .lines()
            .filter(|l| {
                l.starts_with("todo_http_request_duration_seconds_bucket{") && l.contains(get)
            })
            .count();
        assert_eq!(buckets, FAST_BUCKETS.len() + 1);
        assert!(text.contains("# TYPE todo_http_request_duration_seconds histogram"));
        assert_eq!(sample(&text, "todo_http_requests_in_flight"), Some(1.0));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn event_series_have_labels_and_counts() {
        let metrics = Metrics::new();
        metrics.events.handled("recurring", "task.completed");
        metrics.events.handled("recurring", "task.completed");
        metrics.events.handled("audit", "task.created");
        metrics.events.failed("reminders", "store");
        metrics.events.set_lag("ws", "task-events", 0, 7);
        metrics.events.observe_latency("ws", 0.02);
        metrics.events.observe_latency("ws", -1.0); // clock skew: counted as 0
        metrics.events.observe_latency("ws", f64::NAN); // ignored
        metrics.events.published("task.created");
        metrics.events.dead_lettered("recurring", "unreadable_data");
        metrics.events.dead_lettered("recurring", "unreadable_data");
        metrics.events.recurring_completion("series_ended");
        let text = metrics.encode();

        assert_eq!(
            sample(
                &text,
                r#"todo_events_handled_total{consumer="recurring",type="task.completed"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_events_handled_total{consumer="audit",type="task.created"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_event_handler_failures_total{consumer="reminders",kind="store"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_consumer_lag_events{consumer="ws",topic="task-events",partition="0"}"#
            ),
            Some(7.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_event_delivery_latency_seconds_count{consumer="ws"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_event_delivery_latency_seconds_sum{consumer="ws"}"#
            ),
            Some(0.02)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_event_delivery_latency_seconds_bucket{le="0.001",consumer="ws"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"todo_events_published_total{type="task.created"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_events_dead_lettered_total{consumer="recurring",reason="unreadable_data"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"todo_recurring_completions_total{outcome="series_ended"}"#
            ),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn ws_reminder_and_store_series_move() {
        let metrics = Metrics::new();
        metrics.ws.connected();
        metrics.ws.connected();
        metrics.ws.disconnected();
        metrics.ws.sent();
        metrics.ws.sent();
        metrics.ws.sent();
        metrics.ws.dropped_slow();
        metrics.reminders.delivered(3);
        metrics.reminders.delivered(2);
        metrics.reminders.observe_lag(1.5);
        metrics.reminders.webhook("delivered");
        metrics.reminders.webhook("retry");
        metrics.reminders.webhook("retry");
        metrics.store.observe("create_task", 0.002);
        metrics.store.error("create_task", "conflict");
        let text = metrics.encode();

        let expect = [
            ("todo_ws_connections", 1.0),
            ("todo_ws_messages_sent_total", 3.0),
            ("todo_ws_slow_consumer_disconnects_total", 1.0),
            ("todo_reminders_delivered_total", 5.0),
            ("todo_reminder_delivery_lag_seconds_count", 1.0),
            ("todo_reminder_delivery_lag_seconds_sum", 1.5),
            (
                r#"todo_reminder_delivery_lag_seconds_bucket{le="2.5"}"#,
                1.0,
            ),
            (
                r#"todo_reminder_delivery_lag_seconds_bucket{le="1.0"}"#,
                0.0,
            ),
            (r#"todo_webhook_attempts_total{outcome="delivered"}"#, 1.0),
            (r#"todo_webhook_attempts_total{outcome="retry"}"#, 2.0),
            (
                r#"todo_store_operation_duration_seconds_count{op="create_task"}"#,
                1.0,
            ),
            (
                r#"todo_store_errors_total{op="create_task",kind="conflict"}"#,
                1.0,
            ),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn shared_across_threads() {
        let metrics = Metrics::new();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        metrics.events.published("task.updated");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(
            sample(
                &metrics.encode(),
                r#"todo_events_published_total{type="task.updated"}"#
            ),
            Some(1000.0)
        );
    }
}
