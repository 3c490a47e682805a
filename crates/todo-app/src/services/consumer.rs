//! The loop every event consumer runs: subscribe, take a batch, handle it, commit.
//!
//! A batch is committed only after it was handled, so a crash redelivers it (at-least-once);
//! handlers are idempotent. A failing batch is retried with backoff rather than skipped: an
//! event is never lost because the store was briefly down. Shutdown is checked between
//! batches, so an in-flight batch is finished and committed first.
//!
//! An event a handler can never handle as it is (its data cannot be read, it names no
//! user) is neither retried for ever nor skipped: the handler reports it as [`Rejected`],
//! and the loop keeps it as a dead letter in the store, counts it and logs
//! `event dead-lettered`, before acknowledging the batch. One bad event therefore does not
//! hold the stream up, and is not lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use todo_bus::{Delivery, EventBus, Subscription};
use todo_domain::Topic;
use todo_store::{DeadLetter, Store};
use todo_telemetry::Metrics;

use crate::shutdown::ShutdownSignal;

/// Largest batch handed to a handler.
pub const BATCH: usize = 256;

/// One consumer's step.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Consumer group name (also the metrics label).
    fn name(&self) -> &'static str;
    /// Topics consumed.
    fn topics(&self) -> &'static [Topic];
    /// Handles a batch; must be idempotent, since a batch may be delivered again. Returns
    /// the events it can never handle (kept as dead letters); an `Err` is a failure worth
    /// retrying (the store was unavailable, ...), and the whole batch is handled again.
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Vec<Rejected>>;
}

/// Why a handler cannot handle an event: the `reason` label of
/// `todo_events_dead_lettered_total` and of the dead-letter row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `data` does not match the event's type (not a task, a field out of range, ...).
    UnreadableData,
    /// A `type` this build does not know.
    UnknownType,
    /// `data.user_id` is missing, so the event belongs to no one.
    NoUserId,
    /// The event could not be rendered as JSON for a client.
    Unrenderable,
}

impl Reason {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnreadableData => "unreadable_data",
            Reason::UnknownType => "unknown_type",
            Reason::NoUserId => "no_user_id",
            Reason::Unrenderable => "unrenderable",
        }
    }
}

/// An event of a batch that its handler can never handle as it is: retrying would fail
/// the same way. It is kept as a dead letter, and the consumer moves on.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The event and its position.
    pub delivery: Delivery,
    /// Why, as a bounded label.
    pub reason: Reason,
    /// What went wrong, in words.
    pub error: String,
}

impl Rejected {
    /// `delivery` cannot be handled, because of `error`.
    pub fn new(delivery: &Delivery, reason: Reason, error: impl std::fmt::Display) -> Self {
        Rejected {
            delivery: delivery.clone(),
            reason,
            error: error.to_string(),
        }
    }
}

/// Handles `batch`, then keeps what the handler rejected as dead letters (one write), counts
/// and logs each. An error (handling, or keeping the letters) leaves the batch to retry.
async fn handle_batch(
    handler: &dyn Handler,
    store: &dyn Store,
    metrics: &Metrics,
    batch: &[Delivery],
) -> anyhow::Result<()> {
    let rejected = handler.handle(batch).await?;
    if rejected.is_empty() {
        return Ok(());
    }
    let consumer = handler.name();
    let failed_at = todo_domain::time::now();
    let letters: Vec<DeadLetter> = rejected
        .iter()
        .map(|r| DeadLetter {
            consumer: consumer.to_owned(),
            event_id: r.delivery.event.id,
            event_type: r.delivery.event.event_type.clone(),
            position: r.delivery.position,
            // An event that cannot be rendered as JSON (a `Reason::Unrenderable`) is kept
            // in its debug form rather than not at all.
            payload: serde_json::to_string(&*r.delivery.event)
                .unwrap_or_else(|_| format!("{:?}", r.delivery.event)),
            reason: r.reason.as_str().to_owned(),
            error: r.error.clone(),
            failed_at,
        })
        .collect();
    store.record_dead_letters(&letters).await?;
    for r in &rejected {
        metrics.events.dead_lettered(consumer, r.reason.as_str());
        tracing::error!(
            consumer,
            event_id = %r.delivery.event.id,
            event_type = r.delivery.event.event_type.as_str(),
            task_id = r.delivery.event.subject.as_str(),
            position = r.delivery.position,
            reason = r.reason.as_str(),
            error = r.error.as_str(),
            "event dead-lettered"
        );
    }
    Ok(())
}

/// A span carrying an event's identity, so every log line written while handling it names
/// the event, its task and user, and the trace of the request that caused it.
pub fn event_span(consumer: &'static str, event: &todo_domain::CloudEvent) -> tracing::Span {
    let trace = event
        .traceparent
        .as_deref()
        .and_then(todo_domain::TraceParent::parse);
    tracing::info_span!(
        "event",
        consumer,
        event_id = %event.id,
        event_type = event.event_type.as_str(),
        task_id = event.subject.as_str(),
        user_id = event.user_id().unwrap_or_default(),
        trace_id = trace.as_ref().map(|t| t.trace_id.as_str()).unwrap_or_default(),
        span_id = trace.as_ref().map(|t| t.span_id.as_str()).unwrap_or_default(),
    )
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

async fn subscribe(
    bus: &Arc<dyn EventBus>,
    handler: &dyn Handler,
    shutdown: &mut ShutdownSignal,
) -> Option<Box<dyn Subscription>> {
    let mut attempt = 0;
    loop {
        match bus.subscribe(handler.name(), handler.topics()).await {
            Ok(sub) => return Some(sub),
            Err(e) => {
                tracing::warn!(consumer = handler.name(), error = %e, "subscribe failed; retrying");
                attempt += 1;
                tokio::select! {
                    () = shutdown.wait() => return None,
                    () = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Runs `handler` until shutdown, keeping the events it rejects in `store`'s dead letters.
/// `running` is raised while subscribed (for `/readyz`).
pub async fn run(
    bus: Arc<dyn EventBus>,
    handler: Arc<dyn Handler>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    running: Arc<AtomicBool>,
    mut shutdown: ShutdownSignal,
) {
    let name = handler.name();
    let Some(mut sub) = subscribe(&bus, handler.as_ref(), &mut shutdown).await else {
        return;
    };
    running.store(true, Ordering::Release);
    tracing::info!(consumer = name, "consumer started");
    let mut failures = 0;
    // Positions are committed at most every COMMIT_EVERY (and at shutdown), not per batch:
    // under load a commit per batch per consumer would queue on the store's single writer.
    let mut commit_at: Option<tokio::time::Instant> = None;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            () = sleep_until_or_never(commit_at) => {
                commit(sub.as_mut(), name, &shutdown).await;
                commit_at = None;
                continue;
            }
            batch = sub.next_batch(BATCH) => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                metrics.events.failed(name, e.kind());
                failures += 1;
                tracing::warn!(consumer = name, error = %e, "reading events failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        // Handle even if shutdown arrives meanwhile: finish what is in flight.
        let mut attempt = 0;
        while let Err(e) = handle_batch(handler.as_ref(), store.as_ref(), &metrics, &batch).await {
            metrics.events.failed(name, "handler");
            attempt += 1;
            tracing::warn!(
                consumer = name,
                attempt,
                error = format!("{e:#}"),
                "handling a batch failed; retrying"
            );
            if shutdown.is_triggered() && attempt >= 3 {
                tracing::warn!(
                    consumer = name,
                    "giving up on the batch for shutdown; it will be redelivered"
                );
                commit(sub.as_mut(), name, &shutdown).await;
                running.store(false, Ordering::Release);
                return;
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        sub.ack(&batch);
        commit_at.get_or_insert_with(|| tokio::time::Instant::now() + COMMIT_EVERY);
        failures = 0;
        let now = chrono::Utc::now();
        for d in &batch {
            metrics.events.handled(name, &d.event.event_type);
            let latency = (now - d.event.time).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            metrics.events.observe_latency(name, latency);
        }
    }
    commit(sub.as_mut(), name, &shutdown).await;
    running.store(false, Ordering::Release);
    tracing::info!(consumer = name, "consumer stopped");
}

/// How long a handled event may wait before its position is committed.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Commits acknowledged positions, retrying; during shutdown it gives up after a few tries
/// (the events are then redelivered on restart, and handlers are idempotent).
async fn commit(sub: &mut dyn Subscription, name: &'static str, shutdown: &ShutdownSignal) {
    let mut attempt = 0;
    while let Err(e) = sub.commit().await {
        attempt += 1;
        tracing::warn!(consumer = name, error = %e, "commit failed; retrying");
        if shutdown.is_triggered() && attempt >= 3 {
            return;
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// Keeps the consumer lag gauges current.
pub async fn report_lag(
    bus: Arc<dyn EventBus>,
    consumers: Vec<(&'static str, &'static [Topic])>,
    metrics: Arc<Metrics>,
    mut shutdown: ShutdownSignal,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for (name, topics) in &consumers {
            if let Ok(lag) = bus.lag(name, topics).await {
                metrics.events.set_lag(name, lag);
            }
        }
    }
}
