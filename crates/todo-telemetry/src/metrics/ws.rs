//! `todo_ws_*`: WebSocket connections, messages and closes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a WebSocket connection ended: the `reason` label of `todo_ws_closes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsCloseReason {
    /// The client closed it, or went away.
    Client,
    /// The server closed it with 1008: the client's queue was full.
    SlowConsumer,
    /// The server is stopping.
    Shutdown,
    /// Reading from or writing to the socket failed.
    Error,
}

impl WsCloseReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WsCloseReason::Client => "client",
            WsCloseReason::SlowConsumer => "slow_consumer",
            WsCloseReason::Shutdown => "shutdown",
            WsCloseReason::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    reason: &'static str,
}

/// WebSocket sync metrics.
#[derive(Debug, Clone)]
pub struct WsMetrics {
    connections: Gauge,
    sent: Counter,
    closes: Family<CloseLabels, Counter>,
}

impl WsMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = WsMetrics {
            connections: Gauge::default(),
            sent: Counter::default(),
            closes: Family::default(),
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
            "ws_closes",
            "WebSocket connections ended, by reason (client, slow_consumer, shutdown, error)",
            metrics.closes.clone(),
        );
        metrics
    }

    pub(super) fn init(&self) {
        for reason in [
            WsCloseReason::Client,
            WsCloseReason::SlowConsumer,
            WsCloseReason::Shutdown,
            WsCloseReason::Error,
        ] {
            let _ = self.closes.get_or_create(&CloseLabels {
                reason: reason.as_str(),
            });
        }
    }

    /// A client connected; pair with [`WsMetrics::disconnected`].
    pub fn connected(&self) {
        self.connections.inc();
    }

    /// A client's connection is gone from the hub, for any reason.
    pub fn disconnected(&self) {
        self.connections.dec();
    }

    /// A connection ended, for `reason`; counted once per connection.
    pub fn closed(&self, reason: WsCloseReason) {
        self.closes
            .get_or_create(&CloseLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// One message was queued to a client.
    pub fn sent(&self) {
        self.sent.inc();
    }
}
