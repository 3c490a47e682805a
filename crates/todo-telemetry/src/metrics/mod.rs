//! Prometheus metrics: one registry, one struct per concern.
//!
//! Each struct registers its own series in [`Metrics::new`] and exposes small recording
//! methods, so callers never touch label structs or metric names. Label values stay
//! bounded: the recording methods take `&'static str` for every label drawn from a fixed
//! set (service, method, consumer, event type, outcome, reason, kind), so an arbitrary
//! string from a request or a message cannot become a label value; routes are templates
//! and topics are configured names. `docs/metrics.md` lists every series.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod events;
mod http;
mod process;
mod reminders;
mod store;
mod ws;

#[cfg(test)]
mod tests;

pub use events::{EventMetrics, Outcome};
pub use http::{HttpMetrics, method_label, status_class};
pub use process::ProcessCollector;
pub use reminders::ReminderMetrics;
pub use store::{PoolStatus, StoreMetrics};
pub use ws::{WsCloseReason, WsMetrics};

/// `Content-Type` for the `/metrics` response; [`Metrics::encode`] emits OpenMetrics
/// text, which Prometheus only parses (exemplars included) with this header.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every series of the platform's own; the standard `process_*` series have none.
const PREFIX: &str = "todo";

/// HTTP and store latencies: sub-millisecond (SQLite, cached reads) to 10 s (the request
/// timeout).
pub(crate) const FAST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Event processing latency (event time -> effect done); the contract promises WebSocket
/// updates within 2 s, so resolution is finest below that.
pub(crate) const EVENT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Reminder delivery delay (`remind_at` -> delivered): the scheduler sleeps until the
/// next one, so delays are well under a second, and minutes mean something is wrong.
pub(crate) const REMINDER_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The exemplar attached to latency observations: the trace the observation belongs to,
/// so a dashboard can jump from a slow bucket to the trace behind it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// W3C trace id, 32 lower-case hex digits.
    pub trace_id: String,
}

impl TraceExemplar {
    /// An exemplar for `trace_id` when it is a valid, non-zero W3C trace id.
    pub fn new(trace_id: Option<&str>) -> Option<Self> {
        let id = trace_id?;
        let valid = id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && id.bytes().any(|b| b != b'0');
        valid.then(|| TraceExemplar {
            trace_id: id.to_owned(),
        })
    }
}

/// All metrics of the process, shared behind an `Arc`.
///
/// Metric handles are reference-counted and cheap to update; the registry is only needed
/// to encode and to register collectors, so it sits behind a mutex.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// HTTP requests.
    pub http: HttpMetrics,
    /// Event publishing, relaying and consumption.
    pub events: EventMetrics,
    /// WebSocket sync connections.
    pub ws: WsMetrics,
    /// Reminder scheduling and webhook delivery.
    pub reminders: ReminderMetrics,
    /// Storage operations and connection pools.
    pub store: StoreMetrics,
}

impl Metrics {
    /// Creates and registers every series: the `todo_*` ones, `todo_build_info`, and the
    /// standard `process_*` series (start time = now).
    pub fn new() -> Arc<Metrics> {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector::new()));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let http = HttpMetrics::register(registry);
        let events = EventMetrics::register(registry);
        let ws = WsMetrics::register(registry);
        let reminders = ReminderMetrics::register(registry);
        let store = StoreMetrics::register(registry);
        // `Info` renders as `todo_build_info{version="…",revision="…"} 1`.
        registry.register(
            "build",
            "Build information; the value is always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("TODO_BUILD_REVISION").unwrap_or("unknown"),
            }),
        );
        events.init();
        ws.init();
        reminders.init();
        Arc::new(Metrics {
            registry: Mutex::new(root),
            http,
            events,
            ws,
            reminders,
            store,
        })
    }

    /// Reports the store's connection pools on every scrape, from `pools` (called then).
    pub fn report_pools(&self, pools: impl Fn() -> Vec<PoolStatus> + Send + Sync + 'static) {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .sub_registry_with_prefix(PREFIX)
            .register_collector(Box::new(store::PoolCollector::new(pools)));
    }

    /// Renders every series as OpenMetrics text, ending in `# EOF`; serve it with
    /// [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        // A panic elsewhere while holding the lock leaves the registry intact
        // (registration is the only mutation), so keep serving metrics.
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(64 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            // Only a failing `fmt::Write` errors, and `String` never fails; still, never
            // hand out a truncated exposition.
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

/// `todo_build_info` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// Crate version the binary was built from.
    version: &'static str,
    /// Source revision, from `TODO_BUILD_REVISION` at build time (`unknown` without it).
    revision: &'static str,
}

/// Drops observations that would corrupt a histogram's sum: non-finite values are
/// skipped and negative ones (clock skew between an event's timestamp and this host) are
/// clamped to zero.
pub(crate) fn sanitize_seconds(seconds: f64) -> Option<f64> {
    seconds.is_finite().then_some(seconds.max(0.0))
}

pub(crate) fn fast_histogram() -> Histogram {
    Histogram::new(FAST_BUCKETS)
}

/// Label set of a family keyed by one `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}
