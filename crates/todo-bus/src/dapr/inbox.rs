//! Messages the sidecar delivers, on their way from the HTTP handlers to the consumers'
//! subscriptions, and each consumer's answer on the way back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use todo_domain::{CloudEvent, Topic};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Batch, BusError, DeadLetterMessage, Delivery, Position, Result, Subscription, Unreadable,
};

/// Messages a consumer may have waiting before deliveries wait for room (and, past their
/// deadline, are answered `RETRY`).
const CAPACITY: usize = 1024;

/// What the app answers the sidecar for one message (Dapr's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Handled: the sidecar commits it.
    Success,
    /// Not handled (in time): the sidecar delivers it again.
    Retry,
    /// Kept as a dead letter: the sidecar does not deliver it again.
    Drop,
}

impl Status {
    /// The value of `status` in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Retry => "RETRY",
            Status::Drop => "DROP",
        }
    }
}

/// A delivered message, read once and shared by the consumers of its topic.
#[derive(Debug)]
pub(super) struct Message {
    /// The topic on the broker.
    topic: String,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Event(Arc<CloudEvent>),
    Unreadable { payload: String, error: String },
}

impl Message {
    /// Reads a request body: a structured CloudEvent, or a message no consumer can read.
    pub(super) fn parse(topic: &str, body: &[u8]) -> Self {
        let body = match serde_json::from_slice::<CloudEvent>(body) {
            Ok(event) => Body::Event(Arc::new(event)),
            Err(e) => Body::Unreadable {
                payload: String::from_utf8_lossy(body).into_owned(),
                error: format!("not a CloudEvent: {e}"),
            },
        };
        Message {
            topic: topic.to_owned(),
            body,
        }
    }
}

/// A message waiting in a consumer's inbox, with where its answer goes.
pub(super) struct Incoming {
    message: Arc<Message>,
    reply: oneshot::Sender<Status>,
}

struct Consumer {
    topics: Vec<Topic>,
    tx: mpsc::Sender<Incoming>,
    /// Parked here from [`Inboxes::declare`] until the consumer subscribes.
    rx: Option<mpsc::Receiver<Incoming>>,
}

impl Consumer {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        Consumer {
            topics: Vec::new(),
            tx,
            rx: Some(rx),
        }
    }

    fn add_topics(&mut self, topics: &[Topic]) {
        for topic in topics {
            if !self.topics.contains(topic) {
                self.topics.push(*topic);
            }
        }
    }
}

/// Every consumer group's inbox in this process.
#[derive(Default)]
pub(super) struct Inboxes {
    consumers: BTreeMap<String, Consumer>,
}

impl Inboxes {
    pub(super) fn declare(&mut self, group: &str, topics: &[Topic]) {
        self.consumers
            .entry(group.to_owned())
            .or_insert_with(Consumer::new)
            .add_topics(topics);
    }

    pub(super) fn subscribe(&mut self, group: &str, topics: &[Topic]) -> InboxSubscription {
        let consumer = self
            .consumers
            .entry(group.to_owned())
            .or_insert_with(Consumer::new);
        consumer.add_topics(topics);
        let rx = match consumer.rx.take() {
            Some(rx) => rx,
            None => {
                // Subscribed again (the first one stopped): a fresh inbox, since the old
                // one went with the old subscription.
                let (tx, rx) = mpsc::channel(CAPACITY);
                consumer.tx = tx;
                rx
            }
        };
        InboxSubscription {
            rx,
            pending: HashMap::new(),
            dropped: HashSet::new(),
            next: 0,
        }
    }

    /// The topics some consumer reads, in a stable order.
    pub(super) fn topics(&self) -> Vec<Topic> {
        Topic::ALL
            .into_iter()
            .filter(|t| self.consumers.values().any(|c| c.topics.contains(t)))
            .collect()
    }

    pub(super) fn senders(&self, topic: Topic) -> Vec<(String, mpsc::Sender<Incoming>)> {
        self.consumers
            .iter()
            .filter(|(_, c)| c.topics.contains(&topic))
            .map(|(name, c)| (name.clone(), c.tx.clone()))
            .collect()
    }
}

/// Hands `message` to each inbox and waits, until `wait` has passed, for every answer.
pub(super) async fn deliver(
    message: Arc<Message>,
    inboxes: Vec<(String, mpsc::Sender<Incoming>)>,
    wait: Duration,
) -> Status {
    let topic = message.topic.clone();
    if inboxes.is_empty() {
        tracing::warn!(
            topic,
            "a message arrived for a topic no consumer here reads"
        );
        return Status::Retry;
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut answers = Vec::with_capacity(inboxes.len());
    for (consumer, tx) in inboxes {
        let (reply, answer) = oneshot::channel();
        let incoming = Incoming {
            message: message.clone(),
            reply,
        };
        match tokio::time::timeout_at(deadline, tx.send(incoming)).await {
            Ok(Ok(())) => answers.push((consumer, answer)),
            Ok(Err(_)) => {
                tracing::warn!(
                    consumer,
                    topic,
                    "consumer not running; asking for redelivery"
                );
                return Status::Retry;
            }
            Err(_) => {
                tracing::warn!(
                    consumer,
                    topic,
                    "consumer inbox full; asking for redelivery"
                );
                return Status::Retry;
            }
        }
    }
    let mut status = Status::Success;
    for (consumer, answer) in answers {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Status::Success)) => {}
            Ok(Ok(Status::Drop)) => status = Status::Drop,
            Ok(Ok(Status::Retry)) | Ok(Err(_)) => {
                tracing::warn!(
                    consumer,
                    topic,
                    "consumer stopped before handling a message; asking for redelivery"
                );
                return Status::Retry;
            }
            Err(_) => {
                tracing::warn!(
                    consumer,
                    topic,
                    wait_ms = wait.as_millis() as u64,
                    "message not handled in time; asking for redelivery"
                );
                return Status::Retry;
            }
        }
    }
    status
}

/// A consumer's subscription: batches from its inbox, answers on acknowledgement.
pub(super) struct InboxSubscription {
    rx: mpsc::Receiver<Incoming>,
    /// Answers owed, by position.
    pending: HashMap<i64, oneshot::Sender<Status>>,
    /// Positions the consumer kept as dead letters, answered `DROP`.
    dropped: HashSet<i64>,
    /// The next position: messages of this subscription are numbered as they arrive.
    next: i64,
}

impl InboxSubscription {
    fn push(&mut self, incoming: Incoming, batch: &mut Batch) {
        let at = Position {
            topic: incoming.message.topic.clone(),
            partition: 0,
            offset: self.next,
        };
        self.next += 1;
        match &incoming.message.body {
            Body::Event(event) => batch.events.push(Delivery {
                at: at.clone(),
                event: event.clone(),
            }),
            Body::Unreadable { payload, error } => batch.unreadable.push(Unreadable {
                at: at.clone(),
                key: None,
                payload: payload.clone(),
                error: error.clone(),
            }),
        }
        self.pending.insert(at.offset, incoming.reply);
    }
}

#[async_trait]
impl Subscription for InboxSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Batch> {
        // The only await: `recv` is cancel-safe, and the rest is synchronous.
        let Some(first) = self.rx.recv().await else {
            return Err(BusError::Failed(
                "the inbox was replaced by a newer subscription".into(),
            ));
        };
        let mut batch = Batch::default();
        self.push(first, &mut batch);
        let mut taken = 1;
        while taken < max.max(1) {
            match self.rx.try_recv() {
                Ok(incoming) => self.push(incoming, &mut batch),
                Err(_) => break,
            }
            taken += 1;
        }
        Ok(batch)
    }

    fn ack(&mut self, batch: &Batch) {
        for at in batch.positions() {
            let status = if self.dropped.remove(&at.offset) {
                Status::Drop
            } else {
                Status::Success
            };
            if let Some(reply) = self.pending.remove(&at.offset) {
                // The request may have given up waiting (it answered RETRY): nothing to do.
                let _ = reply.send(status);
            }
        }
    }

    /// The sidecar commits once it has the answer: nothing is left to make durable here.
    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Answered `DROP` at acknowledgement. The store's dead-letter row, which the consumer
    /// has written by now, is the record.
    async fn dead_letter(&mut self, letter: &DeadLetterMessage<'_>) -> Result<()> {
        self.dropped.insert(letter.at.offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn event_json() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0", "id": uuid::Uuid::new_v4(), "source": "todo/api",
            "type": "task.created", "subject": "t1", "time": "2030-01-01T00:00:00Z",
            "datacontenttype": "application/json", "data": {"user_id": "alice"},
            // What the sidecar adds to a CloudEvent it forwards.
            "topic": "task-events", "pubsubname": "pubsub",
        }))
        .unwrap()
    }

    fn deliver_in_background(
        inboxes: &Inboxes,
        topic: Topic,
        body: Vec<u8>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<Status> {
        let message = Arc::new(Message::parse(topic.as_str(), &body));
        let senders = inboxes.senders(topic);
        tokio::spawn(deliver(message, senders, wait))
    }

    #[tokio::test]
    async fn a_message_waits_for_a_declared_consumer_and_succeeds_once_acknowledged() {
        let mut inboxes = Inboxes::default();
        inboxes.declare("audit", &[Topic::TaskEvents]);
        let answer = deliver_in_background(&inboxes, Topic::TaskEvents, event_json(), WAIT);
        let mut sub = inboxes.subscribe("audit", &[Topic::TaskEvents]);
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].at.topic, "task-events");
        assert!(
            !answer.is_finished(),
            "answered before the batch was handled"
        );
        sub.ack(&batch);
        assert_eq!(answer.await.unwrap(), Status::Success);
    }

    #[tokio::test]
    async fn every_consumer_of_the_topic_gets_it_and_a_dead_letter_is_dropped() {
        let mut inboxes = Inboxes::default();
        let mut audit = inboxes.subscribe("audit", &[Topic::TaskEvents, Topic::Reminders]);
        let mut recurring = inboxes.subscribe("recurring", &[Topic::TaskEvents]);
        let answer =
            deliver_in_background(&inboxes, Topic::TaskEvents, b"{not json".to_vec(), WAIT);
        let batch = recurring.next_batch(10).await.unwrap();
        assert_eq!(batch.unreadable.len(), 1);
        assert_eq!(batch.unreadable[0].payload, "{not json");
        assert!(batch.unreadable[0].error.contains("not a CloudEvent"));
        recurring
            .dead_letter(&DeadLetterMessage {
                consumer: "recurring",
                at: &batch.unreadable[0].at,
                key: None,
                payload: "{not json",
                reason: "unreadable_envelope",
                error: "not a CloudEvent",
                attempts: 1,
            })
            .await
            .unwrap();
        recurring.ack(&batch);
        let batch = audit.next_batch(10).await.unwrap();
        assert_eq!(batch.unreadable.len(), 1);
        audit.ack(&batch);
        assert_eq!(answer.await.unwrap(), Status::Drop);
    }

    #[tokio::test]
    async fn an_unacknowledged_or_abandoned_message_is_retried() {
        let mut inboxes = Inboxes::default();
        let mut sub = inboxes.subscribe("audit", &[Topic::TaskEvents]);
        let answer = deliver_in_background(
            &inboxes,
            Topic::TaskEvents,
            event_json(),
            Duration::from_millis(200),
        );
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(answer.await.unwrap(), Status::Retry, "past the deadline");
        sub.ack(&batch); // too late: no one listens any more, and nothing breaks

        // A consumer that stops (its batch given up for shutdown) answers at once.
        let answer = deliver_in_background(&inboxes, Topic::TaskEvents, event_json(), WAIT);
        let started = std::time::Instant::now();
        let _batch = sub.next_batch(10).await.unwrap();
        drop(sub);
        assert_eq!(answer.await.unwrap(), Status::Retry);
        assert!(started.elapsed() < WAIT);
        // And so does a delivery to a consumer that is gone.
        let answer = deliver_in_background(&inboxes, Topic::TaskEvents, event_json(), WAIT);
        assert_eq!(answer.await.unwrap(), Status::Retry);
        // Subscribing again opens a fresh inbox.
        let mut sub = inboxes.subscribe("audit", &[Topic::TaskEvents]);
        let answer = deliver_in_background(&inboxes, Topic::TaskEvents, event_json(), WAIT);
        let batch = sub.next_batch(10).await.unwrap();
        sub.ack(&batch);
        assert_eq!(answer.await.unwrap(), Status::Success);
    }

    #[tokio::test]
    async fn batches_take_what_is_waiting_up_to_the_maximum() {
        let mut inboxes = Inboxes::default();
        inboxes.declare("sync", &[Topic::TaskUpdates]);
        let answers: Vec<_> = (0..5)
            .map(|_| deliver_in_background(&inboxes, Topic::TaskUpdates, event_json(), WAIT))
            .collect();
        let mut sub = inboxes.subscribe("sync", &[Topic::TaskUpdates]);
        let mut seen = 0;
        while seen < 5 {
            let batch = sub.next_batch(3).await.unwrap();
            assert!(batch.events.len() <= 3);
            seen += batch.events.len();
            sub.ack(&batch);
        }
        for answer in answers {
            assert_eq!(answer.await.unwrap(), Status::Success);
        }
        assert_eq!(inboxes.topics(), [Topic::TaskUpdates]);
    }
}
