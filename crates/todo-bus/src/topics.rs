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
