//! The event bus seam: services consume events through [`EventBus`] and [`Subscription`],
//! whatever carries them.
//!
//! - [`memory::MemoryBus`] (the embedded default) reads the store's outbox directly: the
//!   outbox *is* the durable log, and each consumer group keeps its position in the store.
//! - [`kafka::KafkaBus`] (cargo feature `kafka`) reads topics on a Kafka-protocol broker
//!   with consumer groups and offset commits, fed from the outbox by the relay.
//! - [`dapr::DaprBus`] (cargo feature `dapr`) publishes through a Dapr sidecar's HTTP API
//!   and is fed by the sidecar, which POSTs each message to the app's subscription routes.
//!
//! Delivery is at-least-once: a batch handled but not yet committed when the process dies
//! is delivered again, so consumers must be idempotent (they de-duplicate on event id or
//! apply idempotent effects). Positions are per partition: a consumer acknowledges whole
//! batches, and the bus commits, for every partition, the offset after the last event
//! acknowledged there.

#[cfg(feature = "dapr")]
pub mod dapr;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
mod topics;

pub use topics::TopicNames;

use std::sync::Arc;

use async_trait::async_trait;
use todo_domain::{CloudEvent, Topic};

/// Result with [`BusError`].
pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// What can go wrong on the bus, whatever carries it (the in-process log or a broker).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The log or broker can't be reached or is busy: worth a retry.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// Reading or committing failed for another reason.
    #[error("event log failed: {0}")]
    Failed(String),
    /// The configured bus is not built into this binary, or a setting is wrong.
    #[error("{0}")]
    Unsupported(String),
}

impl BusError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::Unavailable(_) => "unavailable",
            BusError::Failed(_) => "failed",
            BusError::Unsupported(_) => "unsupported",
        }
    }
}

/// The in-process bus reads the store's log: its failures keep their class.
impl From<todo_store::StoreError> for BusError {
    fn from(e: todo_store::StoreError) -> Self {
        if e.is_unavailable() {
            BusError::Unavailable(e.to_string())
        } else {
            BusError::Failed(e.to_string())
        }
    }
}

/// Where a message sits: its topic, partition and offset (the embedded log has one
/// partition, 0, and its offsets are log positions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic it was read from.
    pub topic: String,
    /// The partition (0 in the embedded log).
    pub partition: i32,
    /// Offset within the partition (the log position in the embedded log).
    pub offset: i64,
}

/// One event handed to a consumer, with where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Where it was read: acknowledging the batch commits past it.
    pub at: Position,
    /// The event (shared between the consumers that receive it).
    pub event: Arc<CloudEvent>,
}

impl Delivery {
    /// The offset within its partition (the log position in the embedded log).
    pub fn position(&self) -> i64 {
        self.at.offset
    }
}

/// A message that is not a CloudEvent this build can read (not JSON, not an envelope).
/// It reaches no handler: the consumer keeps it as a dead letter and moves on.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Where it was read.
    pub at: Position,
    /// The message key, if any (the user id, for messages this platform wrote).
    pub key: Option<String>,
    /// The payload, as text (invalid UTF-8 replaced), for the dead letter.
    pub payload: String,
    /// Why it could not be read.
    pub error: String,
}

/// What one [`Subscription::next_batch`] returns: events, and messages that could not
/// be read. Acknowledging the batch covers both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Readable events, oldest first within each partition.
    pub events: Vec<Delivery>,
    /// Messages that are not readable events.
    pub unreadable: Vec<Unreadable>,
}

impl Batch {
    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.unreadable.is_empty()
    }

    /// Every position in the batch.
    pub fn positions(&self) -> impl Iterator<Item = &Position> {
        self.events
            .iter()
            .map(|d| &d.at)
            .chain(self.unreadable.iter().map(|u| &u.at))
    }
}

/// How a group's members share a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The group's members split the partitions: each event reaches one member, and the
    /// group commits its progress (audit, recurring, notification).
    Shared,
    /// Every process reads every partition from the newest event on, without committing:
    /// each replica sees every event from the time it starts (sync, whose clients are
    /// connected to one replica each).
    EveryReplica,
}

/// A consumer's lag on one partition: events after its committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition (0 in the embedded log).
    pub partition: i32,
    /// The high watermark minus the committed offset (never negative).
    pub lag: i64,
}

/// A message a consumer gave up on, to keep where the bus keeps dead letters.
#[derive(Debug, Clone)]
pub struct DeadLetterMessage<'a> {
    /// The consumer group that gave up.
    pub consumer: &'a str,
    /// Where the message was read.
    pub at: &'a Position,
    /// The message key, if any.
    pub key: Option<&'a str>,
    /// The message as read (the CloudEvent's JSON, or the unreadable payload).
    pub payload: &'a str,
    /// Why, as a bounded label.
    pub reason: &'a str,
    /// What went wrong, in words.
    pub error: &'a str,
    /// How many times it was tried.
    pub attempts: u32,
}

/// Where consumer groups subscribe.
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug + 'static {
    /// Joins consumer group `group` on `topics`, resuming after the group's last commit
    /// (or, for [`Membership::EveryReplica`], from the newest event).
    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
        membership: Membership,
    ) -> Result<Box<dyn Subscription>>;

    /// How far `group`'s committed position lags behind the newest event on each
    /// partition of `topics` that this process knows of (for `/metrics`).
    async fn lag(&self, group: &str, topics: &[Topic]) -> Result<Vec<PartitionLag>>;

    /// Whether the bus is reachable now (for `/readyz`). The in-process log is as
    /// reachable as the store, which `/readyz` checks on its own.
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// The name `/readyz` gives the bus's check, if it has one of its own.
    fn check_name(&self) -> Option<&'static str> {
        None
    }
}

/// Where the outbox relay hands events to the broker.
#[async_trait]
pub trait Publisher: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes `events`, in order, each to its topic and to the fan-out stream, and
    /// returns once the broker has acknowledged every one: how many went to each topic.
    /// On an error some may have been published: the relay publishes the batch again,
    /// and consumers de-duplicate on event id.
    async fn publish(&self, events: &[Arc<CloudEvent>]) -> Result<Vec<(String, u64)>>;
}

/// A consumer group member's stream of events.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next messages, returning at least one and at most `max`, oldest
    /// first within each partition. Cancel-safe: a call dropped before it returns loses
    /// no event.
    async fn next_batch(&mut self, max: usize) -> Result<Batch>;

    /// Notes, in memory, that every message of `batch` has been handled (or kept as a
    /// dead letter).
    fn ack(&mut self, batch: &Batch);

    /// Makes the acknowledgements durable (the group's committed offsets). Consumers call
    /// it now and then rather than per batch: a crash redelivers what was acknowledged but
    /// not yet committed, which idempotent handlers absorb.
    async fn commit(&mut self) -> Result<()>;

    /// Keeps a message the consumer gave up on where this bus keeps dead letters (a
    /// dead-letter topic on Kafka). The embedded log keeps none of its own: the store's
    /// dead-letter table, which the consumer writes in every mode, is the record.
    async fn dead_letter(&mut self, letter: &DeadLetterMessage<'_>) -> Result<()> {
        let _ = letter;
        Ok(())
    }
}
