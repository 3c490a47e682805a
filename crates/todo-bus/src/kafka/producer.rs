//! The producer the bus shares, replaced when librdkafka reports a fatal error. An
//! idempotent producer's fatal error (say, the broker lost its sequence state across a
//! restart) leaves that producer instance unusable for good: librdkafka's documented remedy
//! is a new instance. The relay then publishes its batch again, and consumers
//! de-duplicate what the old instance had delivered.

use std::sync::{Arc, RwLock};

use rdkafka::producer::{FutureProducer, Producer};

use super::log::{ClientLog, ProducerContext};
use super::{KafkaConfig, publish};
use crate::{BusError, Result};

/// The producer type every part of the bus uses.
pub(crate) type EventProducer = FutureProducer<ProducerContext>;

/// The current producer, and how to make another.
pub(crate) struct ProducerSlot {
    config: Arc<KafkaConfig>,
    current: RwLock<EventProducer>,
    /// The producer's connection state, for its "reachable again" line.
    pub(crate) log: Arc<ClientLog>,
}

fn create(config: &KafkaConfig, log: &Arc<ClientLog>) -> Result<EventProducer> {
    config
        .client(&publish::PRODUCER_TUNING)
        .create_with_context(ProducerContext { log: log.clone() })
        .map_err(|e| BusError::Unsupported(format!("invalid Kafka producer settings: {e}")))
}

impl ProducerSlot {
    pub(crate) fn new(config: Arc<KafkaConfig>) -> Result<Self> {
        let log = Arc::new(ClientLog::new("producer"));
        let producer = create(&config, &log)?;
        Ok(ProducerSlot {
            config,
            current: RwLock::new(producer),
            log,
        })
    }

    /// The producer to use now (a cheap handle).
    pub(crate) fn get(&self) -> EventProducer {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// After a failed send: if `used` has hit a fatal error, puts a new producer in its
    /// place (once, however many callers saw the failure).
    pub(crate) fn recover(&self, used: &EventProducer) {
        let Some((code, reason)) = used.client().fatal_error() else {
            return;
        };
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !std::ptr::eq(current.client().native_ptr(), used.client().native_ptr()) {
            return; // already replaced
        }
        match create(&self.config, &self.log) {
            Ok(fresh) => {
                tracing::error!(error = %code, reason, "kafka producer failed fatally; replaced it");
                *current = fresh;
            }
            Err(e) => {
                tracing::error!(error = %e, "kafka producer failed fatally and cannot be recreated")
            }
        }
    }
}
