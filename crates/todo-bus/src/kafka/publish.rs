//! Publishing: outbox events to their topics and to the fan-out stream, and dead letters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use todo_domain::CloudEvent;

use super::producer::{EventProducer, ProducerSlot};
use super::{KafkaBus, unavailable};
use crate::{BusError, DeadLetterMessage, Publisher, Result};

/// Producer settings the design relies on; `TODO_KAFKA_PROPERTIES` may still override them.
pub(super) const PRODUCER_TUNING: [(&str, &str); 5] = [
    // Retries never reorder or duplicate within a partition: one user's events keep their
    // order even when the broker hiccups.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Small batches: latency matters more than throughput here.
    ("linger.ms", "2"),
    // A message is retried for this long before its batch is reported failed (and
    // relayed again), which covers a broker restart.
    ("message.timeout.ms", "60000"),
    ("statistics.interval.ms", "0"),
];

/// The CloudEvents structured-mode content type.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Hands a record to librdkafka, waiting while its queue is full.
async fn enqueue(
    producer: &EventProducer,
    mut record: FutureRecord<'_, str, str>,
) -> Result<DeliveryFuture> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(unavailable(e)),
        }
    }
}

async fn delivered(delivery: DeliveryFuture) -> Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(unavailable(e)),
        Err(_) => Err(BusError::Unavailable("the producer was closed".into())),
    }
}

/// The headers every event carries.
fn event_headers(event: &CloudEvent) -> OwnedHeaders {
    let id = event.id.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some(CLOUDEVENTS_JSON),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(event.event_type.as_str()),
        });
    if let Some(traceparent) = &event.traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent.as_str()),
        });
    }
    headers
}

#[async_trait]
impl Publisher for KafkaBus {
    async fn publish(&self, events: &[Arc<CloudEvent>]) -> Result<Vec<(String, u64)>> {
        self.ensure_topics().await?;
        let producer = self.producer.get();
        let result = publish_with(&producer, &self.config.topics, events).await;
        match &result {
            Ok(_) => self.producer.log.flowing(),
            Err(_) => self.producer.recover(&producer),
        }
        result
    }
}

async fn publish_with(
    producer: &EventProducer,
    names: &super::TopicNames,
    events: &[Arc<CloudEvent>],
) -> Result<Vec<(String, u64)>> {
    let mut pending = Vec::with_capacity(events.len() * 2);
    let mut counts = crate::topics::Counts::default();
    for event in events {
        let out = names.outgoing(event)?;
        let key = event.user_id().unwrap_or_default();
        for topic in out.topics {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(out.payload.as_str())
                .headers(event_headers(event));
            pending.push(enqueue(producer, record).await?);
            counts.add(topic);
        }
    }
    for delivery in pending {
        delivered(delivery).await?;
    }
    Ok(counts.into_vec())
}

/// Sends `letter` to the dead-letter topic, with where it came from and why in headers.
pub(super) async fn dead_letter(
    slot: &ProducerSlot,
    topic: &str,
    letter: &DeadLetterMessage<'_>,
) -> Result<()> {
    let partition = letter.at.partition.to_string();
    let offset = letter.at.offset.to_string();
    let attempts = letter.attempts.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "x-todo-consumer",
            value: Some(letter.consumer),
        })
        .insert(Header {
            key: "x-todo-reason",
            value: Some(letter.reason),
        })
        .insert(Header {
            key: "x-todo-error",
            value: Some(letter.error),
        })
        .insert(Header {
            key: "x-todo-attempts",
            value: Some(attempts.as_str()),
        })
        .insert(Header {
            key: "x-todo-original-topic",
            value: Some(letter.at.topic.as_str()),
        })
        .insert(Header {
            key: "x-todo-original-partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "x-todo-original-offset",
            value: Some(offset.as_str()),
        });
    let mut record = FutureRecord::to(topic)
        .payload(letter.payload)
        .headers(headers);
    if let Some(key) = letter.key {
        record = record.key(key);
    }
    let producer = slot.get();
    let result = match enqueue(&producer, record).await {
        Ok(delivery) => delivered(delivery).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        slot.recover(&producer);
    }
    result
}
