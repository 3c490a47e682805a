//! `sync`: fans task and reminder events out to each user's WebSocket clients.
//!
//! Every client has a bounded queue. Publishing never waits: a client whose queue is full
//! is disconnected with a reason instead of slowing the fan-out for everyone else. A user
//! only ever receives events whose `data.user_id` is theirs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use todo_bus::{Delivery, Membership};
use todo_domain::Topic;
use todo_telemetry::Metrics;
use tokio::sync::{mpsc, oneshot};

use super::consumer::{Handled, Handler, Reason, Rejected, event_span};

/// Why the server closes a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client did not keep up.
    Slow,
    /// The server is stopping.
    Shutdown,
}

struct Client {
    id: u64,
    tx: mpsc::Sender<Arc<str>>,
    close: Option<oneshot::Sender<CloseReason>>,
}

/// A registered connection's receiving ends.
pub struct Registration {
    /// Identifies the client for [`Hub::unregister`].
    pub id: u64,
    /// Messages to send, in order.
    pub messages: mpsc::Receiver<Arc<str>>,
    /// Fires when the hub closes the client.
    pub closed: oneshot::Receiver<CloseReason>,
}

/// Per-user WebSocket fan-out.
pub struct Hub {
    clients: Mutex<HashMap<String, Vec<Client>>>,
    next_id: AtomicU64,
    queue: usize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub giving each client a queue of `queue` messages.
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue: queue.max(1),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Client>>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a client for `user_id`.
    pub fn register(&self, user_id: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, messages) = mpsc::channel(self.queue);
        let (close, closed) = oneshot::channel();
        self.lock()
            .entry(user_id.to_owned())
            .or_default()
            .push(Client {
                id,
                tx,
                close: Some(close),
            });
        self.metrics.ws.connected();
        Registration {
            id,
            messages,
            closed,
        }
    }

    /// Removes a client (idempotent).
    pub fn unregister(&self, user_id: &str, id: u64) {
        let mut clients = self.lock();
        if let Some(list) = clients.get_mut(user_id) {
            let before = list.len();
            list.retain(|c| c.id != id);
            if list.len() < before {
                self.metrics.ws.disconnected();
            }
            if list.is_empty() {
                clients.remove(user_id);
            }
        }
    }

    /// Queues `message` for every client of `user_id`, closing any that are full.
    pub fn publish(&self, user_id: &str, message: Arc<str>) {
        self.publish_with(user_id, || Some(message));
    }

    /// Like [`Hub::publish`], building the message only if the user has a client: most
    /// events have no one watching, and rendering them would be wasted.
    pub fn publish_with(&self, user_id: &str, message: impl FnOnce() -> Option<Arc<str>>) {
        let mut clients = self.lock();
        let Some(list) = clients.get_mut(user_id) else {
            return;
        };
        let Some(message) = message() else {
            return;
        };
        list.retain_mut(|client| match client.tx.try_send(message.clone()) {
            Ok(()) => {
                self.metrics.ws.sent();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(close) = client.close.take() {
                    let _ = close.send(CloseReason::Slow);
                }
                self.metrics.ws.disconnected();
                tracing::warn!(
                    user_id,
                    client = client.id,
                    queue = self.queue,
                    "WebSocket closed for slowness"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.ws.disconnected();
                false
            }
        });
        if list.is_empty() {
            clients.remove(user_id);
        }
    }

    /// Whether `user_id` has a connected client.
    pub fn has_clients(&self, user_id: &str) -> bool {
        self.lock().contains_key(user_id)
    }

    /// Closes every client (shutdown).
    pub fn close_all(&self) {
        let mut clients = self.lock();
        for client in clients.values_mut().flatten() {
            if let Some(close) = client.close.take() {
                let _ = close.send(CloseReason::Shutdown);
            }
        }
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Consumer feeding the hub.
pub struct Sync {
    hub: Arc<Hub>,
}

impl Sync {
    /// A handler publishing to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Sync { hub }
    }
}

#[async_trait]
impl Handler for Sync {
    fn name(&self) -> &'static str {
        "sync"
    }

    /// The fan-out stream of every task and reminder event (in the embedded log, both
    /// topics).
    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskUpdates]
    }

    /// A client is connected to one replica, so every replica needs every event.
    fn membership(&self) -> Membership {
        Membership::EveryReplica
    }

    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Handled> {
        let mut rejected = Vec::new();
        for delivery in batch {
            let Some(user_id) = delivery.event.user_id() else {
                // Pushed only to its owner's clients: an event naming none reaches no one.
                rejected.push(Rejected::new(
                    delivery,
                    Reason::NoUserId,
                    "the event has no data.user_id",
                ));
                continue;
            };
            // One span per event fanned out to a client, in the event's trace (most events
            // have no one watching: they get no span).
            let span = self
                .hub
                .has_clients(user_id)
                .then(|| event_span(self.name(), "sync publish", delivery));
            let _in_span = span.as_ref().map(tracing::Span::enter);
            let mut unrenderable = None;
            let mut rendered = false;
            self.hub
                .publish_with(user_id, || match serde_json::to_string(&*delivery.event) {
                    Ok(json) => {
                        rendered = true;
                        Some(json.into())
                    }
                    Err(e) => {
                        unrenderable = Some(e);
                        None
                    }
                });
            if rendered {
                tracing::debug!("event queued for the user's WebSocket clients");
            }
            if let Some(e) = unrenderable {
                rejected.push(Rejected::new(delivery, Reason::Unrenderable, e));
            }
        }
        Ok(rejected.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_closes_only_that_client_and_users_are_isolated() {
        let hub = Hub::new(2, todo_telemetry::Metrics::new());
        let mut slow = hub.register("alice");
        let mut fast = hub.register("alice");
        let mut other = hub.register("bob");
        for i in 0..3 {
            hub.publish("alice", Arc::from(format!("m{i}")));
            // The fast client keeps up.
            assert_eq!(
                fast.messages.recv().await.as_deref(),
                Some(format!("m{i}").as_str())
            );
        }
        assert_eq!(slow.closed.try_recv(), Ok(CloseReason::Slow));
        assert!(other.messages.try_recv().is_err(), "bob got alice's event");
        assert_eq!(hub.len(), 2);
        hub.close_all();
        assert_eq!(fast.closed.try_recv(), Ok(CloseReason::Shutdown));
        assert_eq!(other.closed.try_recv(), Ok(CloseReason::Shutdown));
    }
}
