//! Telemetry for the Todo platform: structured logging (flat JSON lines or
//! human-readable output), W3C trace context with optional OTLP trace export,
//! and one `todo`-prefixed Prometheus registry.
//!
//! Logging follows the "Logs" section of the API contract: one flat JSON
//! object per line on stdout, with span fields such as `request_id` and
//! `user_id` lifted to the top level so log queries need no nesting, and the
//! `trace_id` and `span_id` of the span a line was written in.

pub mod logging;
pub mod metrics;
pub mod otlp;
mod stdout;
pub mod trace;

pub use logging::{Guard, LogFormat, init, init_with_export, json_layer};
pub use metrics::{
    CONTENT_TYPE, EventMetrics, HttpMetrics, Metrics, Outcome, PoolStatus, ReminderMetrics,
    StoreMetrics, WsCloseReason, WsMetrics,
};

/// Errors from setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A log format name that is neither `json` nor `pretty`.
    #[error("unknown log format `{value}`: expected one of `json`, `pretty`")]
    UnknownLogFormat {
        /// The rejected input, kept so the message shows what was typed.
        value: String,
    },
    /// A filter directive (from `RUST_LOG` or the default) did not parse.
    #[error("invalid log filter in {origin} `{value}`")]
    InvalidFilter {
        /// Where the directive came from: `RUST_LOG` or `default filter`.
        origin: &'static str,
        /// The directive string as given.
        value: String,
        /// The parser's reason.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// An `OTEL_*` variable whose value cannot be used.
    #[error("invalid {variable} `{value}`: {reason}")]
    InvalidSetting {
        /// The variable's name.
        variable: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong with it, and what is expected.
        reason: String,
    },
    /// The trace exporter could not be set up.
    #[error("cannot set up trace export: {reason}")]
    Export {
        /// Why.
        reason: String,
    },
    /// A global subscriber was already installed (`init` called twice, or
    /// another library installed one first).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized(#[source] tracing_subscriber::util::TryInitError),
}
