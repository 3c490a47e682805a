//! A consumer group member on Kafka: batches of messages, per-partition acknowledgements,
//! offsets committed by hand, dead letters to the dead-letter topic.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use todo_domain::{CloudEvent, Topic};

use super::stats::LagTable;
use super::{KafkaConfig, publish, unavailable};
use crate::{
    Batch, BusError, DeadLetterMessage, Delivery, Membership, Position, Result, Subscription,
    Unreadable,
};

/// Receives librdkafka's statistics, errors and rebalances for one subscription.
pub(super) struct Context {
    group: String,
    lags: Arc<LagTable>,
    log: super::log::ClientLog,
}

impl ClientContext for Context {
    fn stats_raw(&self, statistics: &[u8]) {
        self.lags.update_from_json(statistics);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::log::librdkafka(level, fac, message);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(
                consumer = self.group.as_str(),
                partitions = %describe(list),
                "partitions assigned"
            ),
            Rebalance::Revoke(list) => tracing::info!(
                consumer = self.group.as_str(),
                partitions = %describe(list),
                "partitions revoked"
            ),
            Rebalance::Error(e) => {
                tracing::warn!(consumer = self.group.as_str(), error = %e, "rebalance failed");
            }
        }
    }
}

fn describe(list: &TopicPartitionList) -> String {
    list.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// One group member.
pub(super) struct KafkaSubscription {
    consumer: Arc<StreamConsumer<Context>>,
    group: String,
    /// Whether this member commits (shared groups) or only reads (every-replica).
    commits: bool,
    /// Per partition, the offset after the last acknowledged message.
    acked: HashMap<(String, i32), i64>,
    /// Per partition, the last offset committed.
    committed: HashMap<(String, i32), i64>,
    producer: Arc<super::producer::ProducerSlot>,
    dead_letter_topic: String,
}

impl KafkaSubscription {
    pub(super) fn new(
        config: &KafkaConfig,
        group: &str,
        topics: &[Topic],
        membership: Membership,
        producer: Arc<super::producer::ProducerSlot>,
        lags: Arc<LagTable>,
    ) -> Result<Self> {
        let (group_id, reset) = match membership {
            Membership::Shared => (config.group_id(group), "earliest"),
            // Read, never commit: the id only names the client to the broker.
            Membership::EveryReplica => (
                format!(
                    "{}-{}",
                    config.group_id(group),
                    uuid::Uuid::new_v4().simple()
                ),
                "latest",
            ),
        };
        let session = config.session_timeout_ms.to_string();
        let heartbeat = (config.session_timeout_ms / 10).max(100).to_string();
        let consumer: StreamConsumer<Context> = config
            .client(&[
                ("group.id", group_id.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", reset),
                ("session.timeout.ms", session.as_str()),
                ("heartbeat.interval.ms", heartbeat.as_str()),
                // A fetch waits at the broker until a message arrives (fetch.min.bytes 1),
                // for at most this long: the broker answers as soon as there is data, so
                // the wait costs no latency, while a short one (10 ms was tried) made every
                // idle consumer ask 100 times a second: measured, an idle split deployment
                // spent about two cores on it, the broker most.
                ("fetch.wait.max.ms", "500"),
                // The lag gauges are read from these statistics (see `stats`).
                ("statistics.interval.ms", "1000"),
            ])
            .create_with_context(Context {
                group: group.to_owned(),
                lags,
                log: super::log::ClientLog::new(group),
            })
            .map_err(|e| BusError::Unsupported(format!("invalid Kafka consumer settings: {e}")))?;
        let names: Vec<&str> = topics.iter().map(|t| config.topics.name(*t)).collect();
        match membership {
            Membership::Shared => consumer.subscribe(&names).map_err(unavailable)?,
            // Every partition, from the high watermark as it is now: an event published
            // after this returns is delivered, with no group join to wait for.
            Membership::EveryReplica => consumer
                .assign(&end_of_every_partition(&consumer, &names)?)
                .map_err(unavailable)?,
        }
        tracing::info!(consumer = group, group_id, topics = ?names, "subscribed");
        Ok(KafkaSubscription {
            consumer: Arc::new(consumer),
            group: group.to_owned(),
            commits: membership == Membership::Shared,
            acked: HashMap::new(),
            committed: HashMap::new(),
            producer,
            dead_letter_topic: config.topics.dead_letters.clone(),
        })
    }
}

/// How long the metadata and watermark requests of a subscription may take.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every partition of `topics` at its current high watermark. Blocking: called from
/// `subscribe`, which runs it on the blocking pool.
fn end_of_every_partition(
    consumer: &StreamConsumer<Context>,
    topics: &[&str],
) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), SETUP_TIMEOUT)
            .map_err(unavailable)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == *topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(BusError::Unavailable(format!(
                "topic {topic} has no partitions yet"
            )));
        }
        for partition in partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, SETUP_TIMEOUT)
                .map_err(unavailable)?;
            list.add_partition_offset(topic, partition, Offset::Offset(high))
                .map_err(unavailable)?;
        }
    }
    Ok(list)
}

/// Adds `message` to `batch`, readable or not.
fn push(message: &BorrowedMessage<'_>, batch: &mut Batch) {
    let at = Position {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let payload = message.payload().unwrap_or_default();
    match serde_json::from_slice::<CloudEvent>(payload) {
        Ok(event) => batch.events.push(Delivery {
            at,
            event: Arc::new(event),
        }),
        Err(e) => batch.unreadable.push(Unreadable {
            at,
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: String::from_utf8_lossy(payload).into_owned(),
            error: format!("not a CloudEvent: {e}"),
        }),
    }
}

impl KafkaSubscription {
    /// Notes that messages flow again, after the broker was reported down.
    fn log_connected(&self) {
        self.consumer.context().log.flowing();
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Batch> {
        let consumer = &self.consumer;
        let mut batch = Batch::default();
        // The only awaits are `recv`, which is cancel-safe, and everything after the one
        // that returns a message is synchronous, so a dropped call loses no message.
        let first = loop {
            match consumer.recv().await {
                Ok(message) => break message,
                // librdkafka reconnects by itself; its connection errors are reported here
                // only to inform (and `/readyz` says the broker is down meanwhile).
                Err(e) if super::log::is_transient(&e) => {
                    tracing::debug!(consumer = self.group.as_str(), error = %e, "kafka consume error");
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        self.log_connected();
        push(&first, &mut batch);
        drop(first);
        let mut taken = 1;
        while taken < max.max(1) {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => push(&message, &mut batch),
                // Errors are reported on the next call, which then waits for them.
                Some(Err(_)) | None => break,
            }
            taken += 1;
        }
        Ok(batch)
    }

    fn ack(&mut self, batch: &Batch) {
        for at in batch.positions() {
            let next = self
                .acked
                .entry((at.topic.clone(), at.partition))
                .or_insert(0);
            *next = (*next).max(at.offset + 1);
        }
    }

    async fn commit(&mut self) -> Result<()> {
        if !self.commits {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        let mut committing = Vec::new();
        // Only partitions this member still holds: after a rebalance their new owner
        // commits, and anything acknowledged here but not committed is redelivered there.
        let assigned = self.consumer.assignment().map_err(unavailable)?;
        for ((topic, partition), next) in &self.acked {
            if self.committed.get(&(topic.clone(), *partition)) == Some(next) {
                continue;
            }
            if assigned.find_partition(topic, *partition).is_none() {
                continue;
            }
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(unavailable)?;
            committing.push(((topic.clone(), *partition), *next));
        }
        self.acked
            .retain(|(topic, partition), _| assigned.find_partition(topic, *partition).is_some());
        if committing.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Failed(e.to_string()))?
            .map_err(unavailable)?;
        self.committed.extend(committing);
        Ok(())
    }

    async fn dead_letter(&mut self, letter: &DeadLetterMessage<'_>) -> Result<()> {
        publish::dead_letter(&self.producer, &self.dead_letter_topic, letter).await?;
        tracing::debug!(
            consumer = self.group.as_str(),
            topic = self.dead_letter_topic.as_str(),
            "dead letter published"
        );
        Ok(())
    }
}
