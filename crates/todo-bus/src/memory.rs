//! The durable in-process bus: consumers read the store's event log (its outbox) and commit
//! positions to it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use todo_domain::Topic;
use todo_store::{EventLog, LogRead};
use tokio::sync::watch;

use crate::{
    Batch, Delivery, EventBus, Membership, PartitionLag, Position, Result, Subscription, Unreadable,
};

/// How long a subscriber sleeps without a wake-up before looking anyway. Wake-ups come from
/// the store on every append in this process; the poll only covers writers elsewhere
/// (say, `todo migrate` or an operator's SQL).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The embedded bus.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    store: Arc<dyn EventLog>,
}

impl MemoryBus {
    /// A bus over `log`, the store's outbox.
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        MemoryBus { store: log }
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
        membership: Membership,
    ) -> Result<Box<dyn Subscription>> {
        // One process reads the whole log, so every replica already sees every event; the
        // group's position is kept either way, so a restart resumes where it stopped.
        let _ = membership;
        let position = self.store.consumer_position(group).await?;
        Ok(Box::new(MemorySubscription {
            store: self.store.clone(),
            group: group.to_owned(),
            topics: Topic::in_outbox(topics),
            position,
            acked: position,
            committed: position,
            wake: self.store.appended(),
        }))
    }

    async fn lag(&self, group: &str, topics: &[Topic]) -> Result<Vec<PartitionLag>> {
        let position = self.store.consumer_position(group).await?;
        let mut lags = Vec::new();
        for topic in Topic::in_outbox(topics) {
            lags.push(PartitionLag {
                topic: topic.as_str().to_owned(),
                partition: 0,
                lag: self.store.count_events_after(position, &[topic]).await?,
            });
        }
        Ok(lags)
    }
}

struct MemorySubscription {
    store: Arc<dyn EventLog>,
    group: String,
    topics: Vec<Topic>,
    /// Read position: after the last event handed out (may be ahead of the commit).
    position: i64,
    /// Highest position handled.
    acked: i64,
    /// Highest position made durable.
    committed: i64,
    wake: watch::Receiver<u64>,
}

impl MemorySubscription {
    /// Reads the next rows from the database, moving the read position past them: a row
    /// that is no readable event comes back as unreadable, to be kept and passed, so it
    /// cannot hold every later event back.
    async fn read_stored(&mut self, max: i64) -> Result<LogRead> {
        let read = self
            .store
            .read_log(self.position, &self.topics, max)
            .await?;
        if let Some(last) = read.last_seq() {
            self.position = self.position.max(last);
        }
        Ok(read)
    }
}

fn deliveries(read: LogRead) -> Option<Batch> {
    (!read.events.is_empty() || !read.unreadable.is_empty()).then(|| Batch {
        events: read
            .events
            .into_iter()
            .map(|e| Delivery {
                at: Position {
                    topic: e.event.topic().map_or("unknown", Topic::as_str).to_owned(),
                    partition: 0,
                    offset: e.seq,
                },
                event: e.event,
            })
            .collect(),
        unreadable: read
            .unreadable
            .into_iter()
            .map(|u| Unreadable {
                at: Position {
                    topic: u.topic,
                    partition: 0,
                    offset: u.seq,
                },
                key: (!u.key.is_empty()).then_some(u.key),
                payload: u.payload,
                error: u.error,
            })
            .collect(),
    })
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Batch> {
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        loop {
            // Mark the signal seen before reading, so an append racing this read still
            // wakes the wait below.
            self.wake.borrow_and_update();
            // The tail of the log this process wrote is in memory; the database is read
            // only to catch up (after a restart, or behind the tail) and on the idle poll.
            let batch = match self
                .store
                .recent_events(self.position, &self.topics, max as usize)
            {
                Some(read) => {
                    self.position = self.position.max(read.through);
                    LogRead {
                        events: read.events,
                        unreadable: Vec::new(),
                    }
                }
                None => self.read_stored(max).await?,
            };
            if let Some(batch) = deliveries(batch) {
                return Ok(batch);
            }
            // A closed channel (store dropped) leaves only the poll, which is fine.
            if tokio::time::timeout(IDLE_POLL, self.wake.changed())
                .await
                .is_err()
                && let Some(batch) = deliveries(self.read_stored(max).await?)
            {
                // Written by another process sharing the database.
                return Ok(batch);
            }
        }
    }

    fn ack(&mut self, batch: &Batch) {
        // One partition: the position is the log's.
        if let Some(last) = batch.positions().map(|p| p.offset).max() {
            self.acked = self.acked.max(last);
        }
    }

    async fn commit(&mut self) -> Result<()> {
        if self.acked > self.committed {
            self.store.commit_position(&self.group, self.acked).await?;
            self.committed = self.acked;
        }
        Ok(())
    }
}
