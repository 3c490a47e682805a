//! Broker topic names: what the logical topics are called on a broker (Kafka, or the
//! broker behind Dapr's pub/sub component), from the `TODO_TOPIC_*` settings.

use todo_domain::Topic;

/// Broker topic names for the logical topics, and for dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    /// `task.*` events (`TODO_TOPIC_TASK_EVENTS`).
    pub task_events: String,
    /// `reminder.*` events (`TODO_TOPIC_REMINDERS`).
    pub reminders: String,
    /// The fan-out stream `sync` reads (`TODO_TOPIC_TASK_UPDATES`).
    pub task_updates: String,
    /// Messages consumers gave up on (`TODO_TOPIC_DEAD_LETTERS`).
    pub dead_letters: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            task_events: Topic::TaskEvents.as_str().to_owned(),
            reminders: Topic::Reminders.as_str().to_owned(),
            task_updates: Topic::TaskUpdates.as_str().to_owned(),
            dead_letters: "todo-dead-letters".to_owned(),
        }
    }
}

impl TopicNames {
    /// The broker name of a logical topic.
    pub fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::TaskEvents => &self.task_events,
            Topic::Reminders => &self.reminders,
            Topic::TaskUpdates => &self.task_updates,
        }
    }

    /// Every topic the platform uses, dead letters included.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.task_events,
            &self.reminders,
            &self.task_updates,
            &self.dead_letters,
        ]
    }
}

/// One event as a publisher sends it: its JSON, and the two topics it goes to.
#[cfg(any(feature = "kafka", feature = "dapr"))]
pub(crate) struct Outgoing<'a> {
    /// The CloudEvent in structured JSON.
    pub(crate) payload: String,
    /// Its own topic, then the fan-out topic `sync` reads.
    pub(crate) topics: [&'a str; 2],
}

#[cfg(any(feature = "kafka", feature = "dapr"))]
impl TopicNames {
    /// Where `event` is published, and as what. An event of a type this build does not
    /// know still travels, on the task topic, where its consumers keep it as a dead letter.
    pub(crate) fn outgoing(&self, event: &todo_domain::CloudEvent) -> crate::Result<Outgoing<'_>> {
        let payload = serde_json::to_string(event)
            .map_err(|e| crate::BusError::Failed(format!("event {} is not JSON: {e}", event.id)))?;
        let own = self.name(event.topic().unwrap_or(Topic::TaskEvents));
        Ok(Outgoing {
            payload,
            topics: [own, self.task_updates.as_str()],
        })
    }
}

/// Messages published per topic, in the order topics were first seen.
#[cfg(any(feature = "kafka", feature = "dapr"))]
#[derive(Debug, Default)]
pub(crate) struct Counts(Vec<(String, u64)>);

#[cfg(any(feature = "kafka", feature = "dapr"))]
impl Counts {
    /// Counts one message on `topic`.
    pub(crate) fn add(&mut self, topic: &str) {
        match self.0.iter_mut().find(|(t, _)| t == topic) {
            Some((_, n)) => *n += 1,
            None => self.0.push((topic.to_owned(), 1)),
        }
    }

    /// The counts.
    pub(crate) fn into_vec(self) -> Vec<(String, u64)> {
        self.0
    }
}
