//! The loop every event consumer runs: subscribe, take a batch, handle it, commit.
//!
//! A batch is committed only after it was handled, so a crash redelivers it (at-least-once);
//! handlers are idempotent. A failing batch is retried with backoff rather than skipped: an
//! event is never lost because the store was briefly down. Shutdown is checked between
//! batches, so an in-flight batch is finished and committed first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use todo_bus::{Delivery, EventBus, Subscription};
use todo_domain::Topic;
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
    /// Handles a batch; must be idempotent, since a batch may be delivered again.
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<()>;
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

/// Runs `handler` until shutdown. `running` is raised while subscribed (for `/readyz`).
pub async fn run(
    bus: Arc<dyn EventBus>,
    handler: Arc<dyn Handler>,
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
        while let Err(e) = handler.handle(&batch).await {
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
