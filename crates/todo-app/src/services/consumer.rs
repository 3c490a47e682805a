//! The loop every event consumer runs: subscribe, take a batch, handle it, commit.
//!
//! A batch is committed only after it was handled, so a crash redelivers it (at-least-once);
//! handlers are idempotent. A batch that fails because the store is unavailable is retried
//! with backoff for as long as it takes: an event is never lost because the store was
//! briefly down. Any other failure is retried a bounded number of times; then the batch's
//! events are handled one at a time, and an event that still fails alone is given up on.
//! Shutdown is checked between batches, so an in-flight batch is finished and committed
//! first.
//!
//! An event given up on (it keeps failing, its data cannot be read, it names no user), and
//! a message that is no CloudEvent at all, is neither retried for ever nor skipped: the
//! loop keeps it as a dead letter in the store and where the bus keeps them (a dead-letter
//! topic on Kafka), counts it and logs `event dead-lettered`, before acknowledging the
//! batch. One bad event therefore does not hold its partition up, and is not lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use todo_bus::{Batch, DeadLetterMessage, Delivery, EventBus, Membership, Position, Subscription};
use todo_domain::Topic;
use todo_store::{DeadLetter, Store, StoreError};
use todo_telemetry::{Metrics, Outcome};
use uuid::Uuid;

use crate::metered::event_type_label;
use crate::shutdown::ShutdownSignal;

/// Largest batch handed to a handler.
pub const BATCH: usize = 256;

/// How many times a batch, and then each of its events alone, is tried when it fails for
/// a reason other than the store being unavailable, before its failing events are given
/// up on (`TODO_CONSUMER_MAX_ATTEMPTS`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// One consumer's step.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Consumer group name (also the metrics label).
    fn name(&self) -> &'static str;
    /// Topics consumed.
    fn topics(&self) -> &'static [Topic];
    /// How the group's replicas share the topics: by default each event reaches one of them.
    fn membership(&self) -> Membership {
        Membership::Shared
    }
    /// Handles a batch; must be idempotent, since a batch may be delivered again. Returns
    /// the events it can never handle (kept as dead letters) and those whose effect was
    /// applied before; an `Err` is a failure worth retrying (the store was unavailable,
    /// ...), and the whole batch is handled again.
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Handled>;
}

/// What a handler did with a batch, beyond applying it.
#[derive(Debug, Default)]
pub struct Handled {
    /// Events it can never handle as they are: kept as dead letters.
    pub rejected: Vec<Rejected>,
    /// Events whose effect had been applied before (a redelivery): counted as
    /// `outcome="duplicate"` rather than `ok`.
    pub duplicates: Vec<Uuid>,
}

impl Handled {
    /// `r` cannot be handled.
    pub fn reject(&mut self, r: Rejected) {
        self.rejected.push(r);
    }

    /// The event `id`'s effect was there already.
    pub fn duplicate(&mut self, id: Uuid) {
        self.duplicates.push(id);
    }
}

impl From<Vec<Rejected>> for Handled {
    fn from(rejected: Vec<Rejected>) -> Self {
        Handled {
            rejected,
            duplicates: Vec::new(),
        }
    }
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
    /// The message is not a CloudEvent (not JSON, or not an envelope).
    UnreadableEnvelope,
    /// Handling kept failing, alone, for as many attempts as allowed.
    RetriesExhausted,
}

impl Reason {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnreadableData => "unreadable_data",
            Reason::UnknownType => "unknown_type",
            Reason::NoUserId => "no_user_id",
            Reason::Unrenderable => "unrenderable",
            Reason::UnreadableEnvelope => "unreadable_envelope",
            Reason::RetriesExhausted => "retries_exhausted",
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

/// A message given up on, in the form both dead-letter records take.
struct Letter {
    at: Position,
    key: Option<String>,
    event_id: Uuid,
    event_type: String,
    task_id: String,
    payload: String,
    reason: Reason,
    error: String,
    attempts: u32,
}

impl Letter {
    fn rejected(r: &Rejected, attempts: u32) -> Self {
        let event = &r.delivery.event;
        Letter {
            at: r.delivery.at.clone(),
            key: event.user_id().map(str::to_owned),
            event_id: event.id,
            event_type: event.event_type.clone(),
            task_id: event.subject.clone(),
            // An event that cannot be rendered as JSON (a `Reason::Unrenderable`) is kept
            // in its debug form rather than not at all.
            payload: serde_json::to_string(&**event).unwrap_or_else(|_| format!("{event:?}")),
            reason: r.reason,
            error: r.error.clone(),
            attempts,
        }
    }

    fn unreadable(u: &todo_bus::Unreadable) -> Self {
        let envelope: Option<serde_json::Value> = serde_json::from_str(&u.payload).ok();
        let field = |name: &str| {
            envelope
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        Letter {
            at: u.at.clone(),
            key: u.key.clone(),
            // The envelope's own id when it has one; otherwise one derived from where the
            // message sits, so a redelivery updates the same dead letter.
            event_id: field("id")
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| position_id(&u.at)),
            event_type: field("type").unwrap_or_default(),
            task_id: field("subject").unwrap_or_default(),
            payload: u.payload.clone(),
            reason: Reason::UnreadableEnvelope,
            error: u.error.clone(),
            attempts: 1,
        }
    }
}

/// A stable id for a message without one: its topic's hash and partition, then its offset.
fn position_id(at: &Position) -> Uuid {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    at.topic.hash(&mut hasher);
    at.partition.hash(&mut hasher);
    Uuid::from_u64_pair(hasher.finish(), at.offset as u64)
}

/// Whether `e` says the store is unavailable: worth retrying for as long as it takes,
/// rather than counting against the event.
fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_unavailable)
    })
}

/// What the loop needs to handle one batch.
struct Step<'a> {
    handler: &'a dyn Handler,
    store: &'a dyn Store,
    metrics: &'a Metrics,
    shutdown: &'a ShutdownSignal,
    max_attempts: u32,
}

/// A batch's handling that succeeded: what to dead-letter (with the attempts each took),
/// and the events that were duplicates.
struct Attempted {
    rejected: Vec<(Rejected, u32)>,
    duplicates: Vec<Uuid>,
}

/// The events of a handled batch that were not applied now.
struct Settled {
    /// Dead-lettered (counted when kept).
    dead: HashSet<Uuid>,
    /// Applied before: redeliveries.
    duplicates: HashSet<Uuid>,
}

/// How handling ended when it did not succeed.
enum Failure {
    /// Retrying is pointless now (shutdown): leave the batch uncommitted for redelivery.
    GaveUp,
}

impl Step<'_> {
    /// Handles `events`, retrying: for ever while the store is unavailable (until shutdown),
    /// otherwise `max_attempts` times. Returns the events to dead-letter, with the attempts
    /// each took, or `Err(last error)` once the bounded attempts ran out.
    async fn attempt(
        &self,
        events: &[Delivery],
    ) -> Result<Result<Attempted, anyhow::Error>, Failure> {
        let name = self.handler.name();
        let mut attempt = 0;
        let mut unavailable = 0;
        loop {
            match self.handler.handle(events).await {
                Ok(handled) => {
                    let tries = attempt + unavailable + 1;
                    return Ok(Ok(Attempted {
                        rejected: handled.rejected.into_iter().map(|r| (r, tries)).collect(),
                        duplicates: handled.duplicates,
                    }));
                }
                Err(e) => {
                    self.metrics.events.failed(name, "handler");
                    for d in events {
                        self.metrics.events.consumed(
                            name,
                            &d.at.topic,
                            event_type_label(&d.event.event_type),
                            Outcome::Retried,
                        );
                    }
                    let waiting = is_unavailable(&e);
                    if waiting {
                        unavailable += 1;
                    } else {
                        attempt += 1;
                    }
                    tracing::warn!(
                        consumer = name,
                        attempt,
                        events = events.len(),
                        event_id = %events[0].event.id,
                        store_unavailable = waiting,
                        error = format!("{e:#}"),
                        "event processing failed"
                    );
                    if self.shutdown.is_triggered() && attempt + unavailable >= 3 {
                        tracing::warn!(
                            consumer = name,
                            "giving up on the batch for shutdown; it will be redelivered"
                        );
                        return Err(Failure::GaveUp);
                    }
                    if attempt >= self.max_attempts {
                        return Ok(Err(e));
                    }
                    tokio::time::sleep(backoff(attempt.max(unavailable))).await;
                }
            }
        }
    }

    /// Handles `batch` and keeps what it gives up on as dead letters. Returns the ids of
    /// the events that were dead-lettered or duplicates (the rest were applied). `Err`
    /// leaves the batch unacknowledged (shutdown, or the letters could not be kept).
    async fn run(&self, sub: &mut dyn Subscription, batch: &Batch) -> Result<Settled, Failure> {
        let mut letters: Vec<Letter> = batch.unreadable.iter().map(Letter::unreadable).collect();
        let mut duplicates = Vec::new();
        if !batch.events.is_empty() {
            match self.attempt(&batch.events).await? {
                Ok(done) => {
                    letters.extend(done.rejected.iter().map(|(r, n)| Letter::rejected(r, *n)));
                    duplicates = done.duplicates;
                }
                Err(_) => {
                    // Which event fails? Each alone, with its own attempts.
                    for delivery in &batch.events {
                        match self.attempt(std::slice::from_ref(delivery)).await? {
                            Ok(done) => {
                                letters.extend(
                                    done.rejected.iter().map(|(r, n)| Letter::rejected(r, *n)),
                                );
                                duplicates.extend(done.duplicates);
                            }
                            Err(e) => {
                                let r = Rejected::new(
                                    delivery,
                                    Reason::RetriesExhausted,
                                    format!("{e:#}"),
                                );
                                letters.push(Letter::rejected(&r, self.max_attempts));
                            }
                        }
                    }
                }
            }
        }
        let settled = Settled {
            dead: letters.iter().map(|l| l.event_id).collect(),
            duplicates: duplicates.into_iter().collect(),
        };
        if letters.is_empty() {
            return Ok(settled);
        }
        let mut attempt = 0;
        while let Err(e) = self.keep(sub, &letters).await {
            attempt += 1;
            tracing::warn!(
                consumer = self.handler.name(),
                attempt,
                error = format!("{e:#}"),
                "keeping dead letters failed; retrying"
            );
            if self.shutdown.is_triggered() && attempt >= 3 {
                return Err(Failure::GaveUp);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Ok(settled)
    }

    /// Keeps `letters` in the store (one write) and on the bus, then counts and logs each.
    async fn keep(&self, sub: &mut dyn Subscription, letters: &[Letter]) -> anyhow::Result<()> {
        let consumer = self.handler.name();
        let failed_at = todo_domain::time::now();
        let rows: Vec<DeadLetter> = letters
            .iter()
            .map(|l| DeadLetter {
                consumer: consumer.to_owned(),
                event_id: l.event_id,
                event_type: l.event_type.clone(),
                position: l.at.offset,
                payload: l.payload.clone(),
                reason: l.reason.as_str().to_owned(),
                error: l.error.clone(),
                failed_at,
            })
            .collect();
        self.store.record_dead_letters(&rows).await?;
        for l in letters {
            sub.dead_letter(&DeadLetterMessage {
                consumer,
                at: &l.at,
                key: l.key.as_deref(),
                payload: &l.payload,
                reason: l.reason.as_str(),
                error: &l.error,
                attempts: l.attempts,
            })
            .await?;
        }
        for l in letters {
            self.metrics
                .events
                .dead_lettered(consumer, l.reason.as_str());
            self.metrics.events.consumed(
                consumer,
                &l.at.topic,
                event_type_label(&l.event_type),
                Outcome::DeadLettered,
            );
            tracing::error!(
                consumer,
                event_id = %l.event_id,
                event_type = l.event_type.as_str(),
                task_id = l.task_id.as_str(),
                topic = l.at.topic.as_str(),
                partition = l.at.partition,
                position = l.at.offset,
                attempts = l.attempts,
                reason = l.reason.as_str(),
                error = l.error.as_str(),
                "event dead-lettered"
            );
        }
        Ok(())
    }
}

/// A span carrying an event's identity, so every log line written while handling it names
/// the event, its task and user; the span continues the event's trace as a child of the
/// span that wrote the event (its `traceparent`). `name` is the exported span's name
/// (`audit process`, `sync publish`, ...).
pub fn event_span(
    consumer: &'static str,
    name: &'static str,
    delivery: &Delivery,
) -> tracing::Span {
    let event = &delivery.event;
    // The sample follows the writing span's, decided as the span is created.
    let upcoming = todo_telemetry::trace::upcoming_parent(event.traceparent.as_deref());
    let span = tracing::info_span!(
        "event",
        otel.name = name,
        otel.kind = "consumer",
        consumer,
        event_id = %event.id,
        event_type = event.event_type.as_str(),
        task_id = event.subject.as_str(),
        user_id = event.user_id().unwrap_or_default(),
    );
    drop(upcoming);
    todo_telemetry::trace::set_parent(&span, event.traceparent.as_deref());
    todo_telemetry::trace::set_attributes(&span, || {
        use todo_telemetry::trace::KeyValue;
        [
            KeyValue::new("messaging.system", messaging_system()),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.consumer.group.name", consumer),
            KeyValue::new("messaging.destination.name", delivery.at.topic.clone()),
            KeyValue::new(
                "messaging.destination.partition.id",
                delivery.at.partition.to_string(),
            ),
            KeyValue::new("messaging.message.id", event.id.to_string()),
        ]
    });
    span
}

/// The `messaging.system` of consumer spans: `kafka`, `dapr`, or `todo_outbox` for the
/// in-process log over the store's outbox.
static MESSAGING_SYSTEM: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the bus events arrive on, for the consumer spans (once, at start).
pub fn set_messaging_system(system: &'static str) {
    let _ = MESSAGING_SYSTEM.set(system);
}

fn messaging_system() -> &'static str {
    MESSAGING_SYSTEM.get().copied().unwrap_or("todo_outbox")
}

/// The trace id of the request that caused `event`, from its `traceparent`, if sampled.
fn trace_id(event: &todo_domain::CloudEvent) -> Option<String> {
    todo_telemetry::trace::sampled_trace_id_of(event.traceparent.as_deref()?)
}

/// The pause before retry number `attempt`: 200 ms, doubling, at most 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// Joins `group` on `bus`, retrying with backoff until it works or shutdown.
pub(crate) async fn subscribe(
    bus: &Arc<dyn EventBus>,
    group: &'static str,
    topics: &[Topic],
    membership: Membership,
    shutdown: &mut ShutdownSignal,
) -> Option<Box<dyn Subscription>> {
    let mut attempt = 0;
    loop {
        match bus.subscribe(group, topics, membership).await {
            Ok(sub) => return Some(sub),
            Err(e) => {
                tracing::warn!(consumer = group, error = %e, "subscribe failed; retrying");
                attempt += 1;
                tokio::select! {
                    () = shutdown.wait() => return None,
                    () = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Runs `handler` until shutdown, keeping the events it gives up on as dead letters.
/// `running` is raised while subscribed (for `/readyz`).
#[allow(clippy::too_many_arguments)] // the loop's parts, each needed once
pub async fn run(
    bus: Arc<dyn EventBus>,
    handler: Arc<dyn Handler>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    running: Arc<AtomicBool>,
    max_attempts: u32,
    faults: Arc<crate::faults::Faults>,
    mut shutdown: ShutdownSignal,
) {
    let name = handler.name();
    let Some(mut sub) = subscribe(
        &bus,
        name,
        handler.topics(),
        handler.membership(),
        &mut shutdown,
    )
    .await
    else {
        return;
    };
    running.store(true, Ordering::Release);
    tracing::info!(consumer = name, "consumer started");
    let mut failures = 0;
    // Positions are committed at most every COMMIT_EVERY (and at shutdown), not per batch:
    // under load a commit per batch per consumer would queue on the store's single writer.
    let mut commit_at: Option<tokio::time::Instant> = None;
    let mut commit_failures = 0;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            () = sleep_until_or_never(commit_at) => {
                // A failed commit is tried again later while reading goes on: a broker
                // may refuse commits until this member has rejoined its group, which
                // happens while it reads. What stays uncommitted is at worst redelivered.
                commit_at = match sub.commit().await {
                    Ok(()) => {
                        commit_failures = 0;
                        None
                    }
                    Err(e) => {
                        commit_failures += 1;
                        metrics.events.failed(name, "commit");
                        tracing::warn!(consumer = name, error = %e, attempt = commit_failures, "commit failed; retrying");
                        Some(tokio::time::Instant::now() + backoff(commit_failures))
                    }
                };
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
        if let Some(delay) = faults.consumer_delay(name, batch.events.len()) {
            tokio::time::sleep(delay).await; // a drill: this consumer made slow on purpose
        }
        // Handle even if shutdown arrives meanwhile: finish what is in flight.
        let step = Step {
            handler: handler.as_ref(),
            store: store.as_ref(),
            metrics: &metrics,
            shutdown: &shutdown,
            max_attempts: max_attempts.max(1),
        };
        let settled = match step.run(sub.as_mut(), &batch).await {
            Ok(settled) => settled,
            Err(Failure::GaveUp) => {
                commit(sub.as_mut(), name, &shutdown).await;
                running.store(false, Ordering::Release);
                return;
            }
        };
        sub.ack(&batch);
        commit_at.get_or_insert_with(|| tokio::time::Instant::now() + COMMIT_EVERY);
        failures = 0;
        let now = chrono::Utc::now();
        for d in &batch.events {
            if settled.dead.contains(&d.event.id) {
                continue; // counted as dead-lettered
            }
            let outcome = if settled.duplicates.contains(&d.event.id) {
                Outcome::Duplicate
            } else {
                Outcome::Ok
            };
            let label = event_type_label(&d.event.event_type);
            metrics.events.consumed(name, &d.at.topic, label, outcome);
            let latency = (now - d.event.time).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            metrics
                .events
                .observe_latency(name, latency, trace_id(&d.event).as_deref());
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

/// How often the lag and outbox backlog gauges are refreshed: often enough that "no lag
/// left 2 s after the load stopped" can be read off them.
pub const LAG_REFRESH: Duration = Duration::from_secs(1);

/// Keeps the consumer lag gauges current.
pub async fn report_lag(
    bus: Arc<dyn EventBus>,
    consumers: Vec<(&'static str, &'static [Topic])>,
    metrics: Arc<Metrics>,
    mut shutdown: ShutdownSignal,
) {
    let mut tick = tokio::time::interval(LAG_REFRESH);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for (name, topics) in &consumers {
            if let Ok(lags) = bus.lag(name, topics).await {
                for lag in lags {
                    metrics
                        .events
                        .set_lag(name, &lag.topic, lag.partition, lag.lag);
                }
            }
        }
    }
}
