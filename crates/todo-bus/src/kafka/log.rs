//! What librdkafka reports, as log lines an operator can act on: one WARN when a client
//! loses every broker and one INFO when it is back, instead of a line per reconnect
//! attempt (the attempts themselves are DEBUG; `/readyz` reports the outage meanwhile).

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether `e` is a connection problem librdkafka recovers from by itself.
pub(super) fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::MessageConsumptionFatal(_) => false,
        other => matches!(
            other.rdkafka_error_code(),
            Some(
                C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::Resolve
                    | C::OperationTimedOut
                    | C::RequestTimedOut
                    | C::NetworkException
                    | C::NotCoordinator
                    | C::CoordinatorNotAvailable
                    | C::CoordinatorLoadInProgress
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
            )
        ),
    }
}

/// One client's broker-connection state, for the WARN/INFO pair.
pub(super) struct ClientLog {
    client: String,
    down: AtomicBool,
}

impl ClientLog {
    pub(super) fn new(client: &str) -> Self {
        ClientLog {
            client: client.to_owned(),
            down: AtomicBool::new(false),
        }
    }

    /// A global client error.
    pub(super) fn error(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    client = self.client.as_str(),
                    reason,
                    "kafka brokers unreachable"
                );
            }
        } else if is_transient(error) {
            tracing::debug!(client = self.client.as_str(), error = %error, reason, "kafka client error");
        } else {
            tracing::warn!(client = self.client.as_str(), error = %error, reason, "kafka client error");
        }
    }

    /// Messages (or acknowledgements) flow: the brokers are reachable.
    pub(super) fn flowing(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(
                client = self.client.as_str(),
                "kafka brokers reachable again"
            );
        }
    }
}

/// librdkafka's own log lines: only the severe ones above DEBUG; the rest duplicate what
/// the error callback reports.
pub(super) fn librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical => {
            tracing::error!(target: "librdkafka", facility, "{message}");
        }
        _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// The producer's context: logging only (it collects no statistics).
pub struct ProducerContext {
    pub(super) log: std::sync::Arc<ClientLog>,
}

impl ClientContext for ProducerContext {
    fn stats_raw(&self, _statistics: &[u8]) {}

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        librdkafka(level, fac, message);
    }
}
