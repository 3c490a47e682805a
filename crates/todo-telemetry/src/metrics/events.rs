//! Event series: published to the outbox, relayed to the broker, consumed, dead-lettered;
//! consumer lag, outbox backlog and processing latency.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{EVENT_BUCKETS, OutcomeLabels, TraceExemplar, sanitize_seconds};

/// How a consumer finished with an event: the `outcome` label of
/// `todo_events_consumed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Its effect was applied (or it needed none).
    Ok,
    /// Its effect had been applied before: a redelivery.
    Duplicate,
    /// Handling it failed and will be tried again.
    Retried,
    /// Given up on and kept as a dead letter.
    DeadLettered,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Duplicate,
        Outcome::Retried,
        Outcome::DeadLettered,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// The `kind`s of `todo_event_handler_failures_total`.
pub const FAILURE_KINDS: [&str; 5] = ["handler", "commit", "unavailable", "failed", "unsupported"];

/// The `reason`s of `todo_events_dead_lettered_total`.
pub const DEAD_LETTER_REASONS: [&str; 6] = [
    "unreadable_data",
    "unknown_type",
    "no_user_id",
    "unrenderable",
    "unreadable_envelope",
    "retries_exhausted",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumedLabels {
    consumer: &'static str,
    topic: String,
    r#type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    consumer: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    consumer: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    consumer: &'static str,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishedLabels {
    topic: String,
    r#type: &'static str,
}

type Latency = HistogramWithExemplars<TraceExemplar>;

fn latency_histogram() -> Latency {
    HistogramWithExemplars::new(EVENT_BUCKETS.into_iter())
}

/// Event metrics, from the publisher's, the relay's and each consumer's side.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    published: Family<PublishedLabels, Counter>,
    relayed: Family<TopicLabels, Counter>,
    consumed: Family<ConsumedLabels, Counter>,
    latency: Family<ConsumerLabels, Latency, fn() -> Latency>,
    failures: Family<FailureLabels, Counter>,
    dead_lettered: Family<DeadLetterLabels, Counter>,
    lag: Family<LagLabels, Gauge>,
    outbox_backlog: Gauge,
    outbox_age: Gauge<f64, AtomicU64>,
    recurring: Family<OutcomeLabels, Counter>,
}

impl EventMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = EventMetrics {
            published: Family::default(),
            relayed: Family::default(),
            consumed: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
            dead_lettered: Family::default(),
            lag: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_age: Gauge::default(),
            recurring: Family::default(),
        };
        registry.register(
            "events_published",
            "Events committed to the outbox, by topic and event type",
            m.published.clone(),
        );
        registry.register(
            "events_relayed",
            "Outbox events the broker acknowledged, by topic",
            m.relayed.clone(),
        );
        registry.register(
            "events_consumed",
            "Events a consumer finished with, by consumer, topic, event type and outcome (ok, duplicate, retried, dead_lettered)",
            m.consumed.clone(),
        );
        registry.register_with_unit(
            "event_processing_latency",
            "Time from an event's timestamp until a consumer's effect of it was done, by consumer",
            Unit::Seconds,
            m.latency.clone(),
        );
        registry.register(
            "event_handler_failures",
            "Failed attempts to read, handle or commit events, by consumer and kind",
            m.failures.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events a consumer could not handle and kept as dead letters, by consumer and reason",
            m.dead_lettered.clone(),
        );
        registry.register(
            "consumer_lag_events",
            "Events after the consumer's committed position, by consumer, topic and partition",
            m.lag.clone(),
        );
        registry.register(
            "outbox_backlog_events",
            "Outbox events not yet relayed to the broker (Kafka and Dapr modes)",
            m.outbox_backlog.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest outbox event not yet relayed to the broker, 0 when none",
            Unit::Seconds,
            m.outbox_age.clone(),
        );
        registry.register(
            "recurring_completions",
            "Completions of recurring tasks handled by recurring, by outcome (created, already_created, series_ended)",
            m.recurring.clone(),
        );
        m
    }

    /// Creates, at zero, every series of `consumer`: consumed for each topic it reads
    /// (with the event types that topic carries) and each outcome, its failures by kind, its
    /// dead letters by reason, and its latency histogram. A series that exists at zero
    /// makes `rate()` and alerts read 0 instead of nothing before the first occurrence.
    pub fn init_consumer(&self, consumer: &'static str, topics: &[(&str, &[&'static str])]) {
        for (topic, types) in topics {
            for r#type in *types {
                for outcome in Outcome::ALL {
                    let _ = self.consumed.get_or_create(&ConsumedLabels {
                        consumer,
                        topic: (*topic).to_owned(),
                        r#type,
                        outcome: outcome.as_str(),
                    });
                }
            }
        }
        for kind in FAILURE_KINDS {
            let _ = self
                .failures
                .get_or_create(&FailureLabels { consumer, kind });
        }
        for reason in DEAD_LETTER_REASONS {
            let _ = self
                .dead_lettered
                .get_or_create(&DeadLetterLabels { consumer, reason });
        }
        let _ = self.latency.get_or_create(&ConsumerLabels { consumer });
    }

    /// Creates, at zero, the relay's series: relayed per topic, its failures and dead
    /// letters (see [`EventMetrics::init_consumer`]).
    pub fn init_relay(&self, topics: &[&str]) {
        for topic in topics {
            let _ = self.relayed.get_or_create(&TopicLabels {
                topic: (*topic).to_owned(),
            });
        }
        for kind in FAILURE_KINDS {
            let _ = self.failures.get_or_create(&FailureLabels {
                consumer: "relay",
                kind,
            });
        }
        let _ = self.dead_lettered.get_or_create(&DeadLetterLabels {
            consumer: "relay",
            reason: "unreadable_envelope",
        });
    }

    /// `n` events of `event_type` were committed to the outbox for `topic`.
    pub fn published(&self, topic: &str, event_type: &'static str, n: u64) {
        self.published
            .get_or_create(&PublishedLabels {
                topic: topic.to_owned(),
                r#type: event_type,
            })
            .inc_by(n);
    }

    /// The broker acknowledged `count` events published on `topic`.
    pub fn relayed(&self, topic: &str, count: u64) {
        self.relayed
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc_by(count);
    }

    /// `consumer` finished with an event of `event_type` from `topic`, with `outcome`.
    pub fn consumed(
        &self,
        consumer: &'static str,
        topic: &str,
        event_type: &'static str,
        outcome: Outcome,
    ) {
        self.consumed
            .get_or_create(&ConsumedLabels {
                consumer,
                topic: topic.to_owned(),
                r#type: event_type,
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Observes the time from an event's timestamp to its effect being done, with the
    /// event's trace as the exemplar.
    pub fn observe_latency(&self, consumer: &'static str, seconds: f64, trace_id: Option<&str>) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.latency
                .get_or_create(&ConsumerLabels { consumer })
                .observe(seconds, TraceExemplar::new(trace_id), None);
        }
    }

    /// An attempt of `consumer` failed; `kind` is the failure's fixed label.
    pub fn failed(&self, consumer: &'static str, kind: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { consumer, kind })
            .inc();
    }

    /// `consumer` kept an event it could not handle as a dead letter, for `reason`.
    pub fn dead_lettered(&self, consumer: &'static str, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&DeadLetterLabels { consumer, reason })
            .inc();
    }

    /// Sets how many events `consumer` is behind the head of one partition.
    pub fn set_lag(&self, consumer: &'static str, topic: &str, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&LagLabels {
                consumer,
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

    /// `recurring` handled the completion of a recurring task: `created` (its next
    /// occurrence), `already_created` (it had one), `series_ended` (no next date in range).
    pub fn recurring_completion(&self, outcome: &'static str) {
        self.recurring
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(super) fn init(&self) {
        for outcome in ["created", "already_created", "series_ended"] {
            let _ = self.recurring.get_or_create(&OutcomeLabels { outcome });
        }
    }
}
