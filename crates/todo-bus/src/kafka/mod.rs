//! The Kafka-protocol bus (`TODO_BUS=kafka`): consumer groups on topics, fed by the outbox
//! relay through [`KafkaBus::publish`](crate::Publisher::publish).
//!
//! - Every event goes to its own topic (`task-events` or `reminders`), keyed by its user id
//!   so one user's events share a partition and keep their order, and to `task-updates`,
//!   the stream every `sync` replica reads whole. The value is the CloudEvent in structured
//!   JSON; the W3C `traceparent` is also a header.
//! - Each consumer service is a consumer group (`<prefix><name>`). Offsets are committed
//!   by hand, per partition, only after the batch's effects were written.
//! - Missing topics are created at first use with the configured partitions and replication.
//! - A message a consumer gives up on goes to the dead-letter topic with the reason in
//!   headers, and its partition flows on.
//! - Lag comes from librdkafka's statistics: per assigned partition, the high watermark the
//!   broker reports against the group's committed offset.

mod config;
mod log;
mod producer;
mod publish;
mod stats;
mod subscription;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use todo_domain::Topic;
use tokio::sync::OnceCell;

pub use crate::TopicNames;
pub use config::{KafkaConfig, SaslCredentials, SaslMechanism, SecurityProtocol, parse_properties};

use crate::{BusError, EventBus, Membership, PartitionLag, Result, Subscription};
use stats::LagTable;

/// How long a metadata request (the readiness check) may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The Kafka bus: one producer (events and dead letters) and a consumer per subscription.
#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    producer: Arc<producer::ProducerSlot>,
    topics_ready: Arc<OnceCell<()>>,
    /// Each subscribed group's latest per-partition lag.
    lags: Arc<Mutex<HashMap<String, Arc<LagTable>>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.config.brokers)
            .field("topics", &self.config.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// A bus on the brokers `config` names. Nothing is contacted yet: the broker may be
    /// down at start, and writes still go to the outbox meanwhile.
    pub fn new(config: KafkaConfig) -> Result<Self> {
        config.validate()?;
        let config = Arc::new(config);
        let producer = Arc::new(producer::ProducerSlot::new(config.clone())?);
        Ok(KafkaBus {
            config,
            producer,
            topics_ready: Arc::default(),
            lags: Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Creates the platform's topics that are missing (once per process, when enabled).
    pub async fn ensure_topics(&self) -> Result<()> {
        if !self.config.create_topics {
            return Ok(());
        }
        self.topics_ready
            .get_or_try_init(|| create_topics(&self.config))
            .await
            .map(|_| ())
    }
}

async fn create_topics(config: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client(&[])
        .create()
        .map_err(|e| BusError::Unsupported(format!("invalid Kafka admin settings: {e}")))?;
    let topics: Vec<NewTopic<'_>> = config
        .topics
        .all()
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(unavailable)?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BusError::Unavailable(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// A broker error as a bus error: every one is worth a retry here, but for settings,
/// which are caught when the clients are created.
fn unavailable(e: KafkaError) -> BusError {
    BusError::Unavailable(e.to_string())
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
        membership: Membership,
    ) -> Result<Box<dyn Subscription>> {
        self.ensure_topics().await?;
        let lags = Arc::new(LagTable::new(membership == Membership::Shared));
        self.lags
            .lock()
            .expect("lag registry poisoned")
            .insert(group.to_owned(), lags.clone());
        let (config, group_name, topics, producer) = (
            self.config.clone(),
            group.to_owned(),
            topics.to_vec(),
            self.producer.clone(),
        );
        // Creating the consumer asks the broker for metadata and watermarks: blocking calls.
        let sub = tokio::task::spawn_blocking(move || {
            subscription::KafkaSubscription::new(
                &config,
                &group_name,
                &topics,
                membership,
                producer,
                lags,
            )
        })
        .await
        .map_err(|e| BusError::Failed(e.to_string()))??;
        Ok(Box::new(sub))
    }

    async fn lag(&self, group: &str, topics: &[Topic]) -> Result<Vec<PartitionLag>> {
        let table = self
            .lags
            .lock()
            .expect("lag registry poisoned")
            .get(group)
            .cloned();
        let names: Vec<&str> = topics.iter().map(|t| self.config.topics.name(*t)).collect();
        Ok(table
            .map(|t| {
                t.snapshot()
                    .into_iter()
                    .filter(|l| names.contains(&l.topic.as_str()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn ping(&self) -> Result<()> {
        let producer = self.producer.get();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, PING_TIMEOUT)
                .map(|_| ())
        })
        .await
        .map_err(|e| BusError::Failed(e.to_string()))?
        .map_err(unavailable)
    }

    fn check_name(&self) -> Option<&'static str> {
        Some("broker")
    }
}
