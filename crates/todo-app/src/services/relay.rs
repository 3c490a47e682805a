//! The outbox relay: reads the outbox in commit order (through the in-process log reader,
//! as consumer `relay`) and publishes each event to the broker, committing its position
//! only once the broker has acknowledged the batch. A crash or a broker outage therefore
//! republishes, never skips: consumers de-duplicate on event id. While the broker is down
//! the API keeps writing to the outbox, and the relay catches up when it is back.

use std::sync::Arc;
use std::time::Duration;

use todo_bus::{EventBus, Membership, Publisher};
use todo_domain::Topic;
use todo_store::Store;
use todo_telemetry::Metrics;

use crate::services::consumer::{backoff, subscribe};
use crate::shutdown::ShutdownSignal;

/// The relay's position in the outbox, kept like a consumer's.
pub const NAME: &str = "relay";

/// The outbox topics the relay reads.
pub const TOPICS: &[Topic] = &[Topic::TaskEvents, Topic::Reminders];

/// Largest batch published at once.
const BATCH: usize = 1024;

/// The time of the oldest event the relay holds and has not yet had acknowledged: the
/// outbox's oldest unrelayed event whenever there is a backlog, since the relay reads the
/// outbox in order and holds at most one batch.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<Option<todo_domain::time::Timestamp>>);

impl InFlight {
    fn set(&self, oldest: Option<todo_domain::time::Timestamp>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = oldest;
    }

    fn oldest(&self) -> Option<todo_domain::time::Timestamp> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often a process that does not lead the relay asks again.
const FOLLOWER_RETRY: Duration = Duration::from_secs(2);

/// Relays until shutdown, in whichever one process holds the `relay` lead: with several
/// `api` replicas one relays, and another takes over within [`FOLLOWER_RETRY`] once its
/// connection (or process) is gone. Two relays at once would only publish duplicates,
/// which consumers absorb; the lead keeps that from being the normal case.
pub async fn run(
    store: Arc<dyn Store>,
    outbox: Arc<dyn EventBus>,
    broker: Arc<dyn Publisher>,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    mut shutdown: ShutdownSignal,
) {
    let mut following = false;
    loop {
        match store.try_lead(NAME).await {
            Ok(Some(mut lead)) => {
                tracing::info!("outbox relay leads");
                let relaying = relay(&outbox, &broker, &metrics, &in_flight, shutdown.clone());
                tokio::select! {
                    () = relaying => return,
                    () = lead.lost() => {
                        tracing::warn!("outbox relay lost its lead; asking again");
                        following = false;
                    }
                }
            }
            Ok(None) => {
                if !following {
                    tracing::info!("another process relays the outbox; standing by");
                    following = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot ask for the relay lead; retrying"),
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(FOLLOWER_RETRY) => {}
        }
    }
}

/// Relays until shutdown (the caller stops it when the lead is lost).
async fn relay(
    outbox: &Arc<dyn EventBus>,
    broker: &Arc<dyn Publisher>,
    metrics: &Metrics,
    in_flight: &InFlight,
    mut shutdown: ShutdownSignal,
) {
    let Some(mut sub) = subscribe(outbox, NAME, TOPICS, Membership::Shared, &mut shutdown).await
    else {
        return;
    };
    tracing::info!("outbox relay started");
    let mut failures = 0;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            batch = sub.next_batch(BATCH) => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                metrics.events.failed(NAME, e.kind());
                tracing::warn!(error = %e, "reading the outbox failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        for u in &batch.unreadable {
            // A row that is no CloudEvent cannot be published as one; it stays in the
            // outbox table, and the error says where.
            metrics.events.dead_lettered(NAME, "unreadable_envelope");
            tracing::error!(
                position = u.at.offset,
                error = u.error.as_str(),
                "outbox row unreadable; not relayed"
            );
        }
        let events: Vec<_> = batch.events.iter().map(|d| d.event.clone()).collect();
        in_flight.set(events.iter().map(|e| e.time).min());
        let mut attempt = 0;
        let counts = loop {
            match broker.publish(&events).await {
                Ok(counts) => break Some(counts),
                Err(e) => {
                    attempt += 1;
                    metrics.events.failed(NAME, e.kind());
                    tracing::warn!(
                        attempt,
                        events = events.len(),
                        error = %e,
                        "event publish failed"
                    );
                    // At shutdown, leave the batch for the next start (it is republished).
                    if shutdown.is_triggered() {
                        break None;
                    }
                    tokio::select! {
                        () = shutdown.wait() => {}
                        () = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        };
        let Some(counts) = counts else { break };
        for (topic, n) in counts {
            metrics.events.relayed(&topic, n);
        }
        sub.ack(&batch);
        in_flight.set(None);
        failures = 0;
        let mut attempt = 0;
        while let Err(e) = sub.commit().await {
            attempt += 1;
            tracing::warn!(error = %e, "saving the relay position failed; retrying");
            if shutdown.is_triggered() && attempt >= 3 {
                break;
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    tracing::info!("outbox relay stopped");
}

/// Keeps the outbox backlog gauges current: events not yet relayed, and the oldest one's
/// age.
pub async fn report_backlog(
    outbox: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    mut shutdown: ShutdownSignal,
) {
    let mut tick = tokio::time::interval(crate::services::consumer::LAG_REFRESH);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if let Ok(lags) = outbox.lag(NAME, TOPICS).await {
            let backlog: i64 = lags.iter().map(|l| l.lag).sum();
            let age = match in_flight.oldest() {
                Some(oldest) if backlog > 0 => {
                    (todo_domain::time::now() - oldest)
                        .num_milliseconds()
                        .max(0) as f64
                        / 1e3
                }
                _ => 0.0,
            };
            metrics.events.set_outbox(backlog, age);
        }
    }
}
