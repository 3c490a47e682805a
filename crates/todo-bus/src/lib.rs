//! The event bus seam: services consume events through [`EventBus`] and [`Subscription`],
//! whatever carries them.
//!
//! - [`memory::MemoryBus`] (the embedded default) reads the store's outbox directly: the
//!   outbox *is* the durable log, and each consumer group keeps its position in the store.
//! - A Kafka implementation fills the same traits with consumer groups and offset commits.
//!
//! Delivery is at-least-once: a batch handled but not yet committed when the process dies
//! is delivered again, so consumers must be idempotent (they de-duplicate on event id or
//! apply idempotent effects).

pub mod memory;

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
    /// The configured bus is not built into this binary.
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

/// One event handed to a consumer, with the position to commit once it is handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Position in the log (per partition on Kafka; global in the embedded log).
    pub position: i64,
    /// The event (shared between the consumers that receive it).
    pub event: Arc<CloudEvent>,
}

/// Where consumer groups subscribe.
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug + 'static {
    /// Joins consumer group `group` on `topics`, resuming after the group's last commit.
    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn Subscription>>;

    /// How far `group`'s committed position lags behind the newest event (for `/metrics`).
    async fn lag(&self, group: &str, topics: &[Topic]) -> Result<i64>;
}

/// A consumer group member's stream of events.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next events, returning between 1 and `max` of them, oldest first.
    /// Cancel-safe: a call dropped before it returns loses no event.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>>;

    /// Notes, in memory, that every event of `batch` has been handled.
    fn ack(&mut self, batch: &[Delivery]);

    /// Makes the acknowledgements durable (the group's committed position). Consumers call
    /// it now and then rather than per batch: a crash redelivers what was acknowledged but
    /// not yet committed, which idempotent handlers absorb.
    async fn commit(&mut self) -> Result<()>;
}
