//! Dapr pub/sub (`TODO_BUS=dapr`), following the sidecar's HTTP contract:
//!
//! - **Publishing** ([`Publisher`](crate::Publisher)): each event is POSTed to
//!   `/v1.0/publish/{pubsub}/{topic}` as a structured CloudEvent
//!   (`application/cloudevents+json`, which Dapr forwards without wrapping it again), with
//!   its user id as `metadata.partitionKey` and its `traceparent` as a header: once to its
//!   own topic and once to the fan-out topic, as on Kafka.
//! - **Subscribing**: the app lists its subscriptions at `GET /dapr/subscribe`
//!   ([`DaprBus::subscriptions`]), one per topic that a consumer of this process reads,
//!   and the sidecar POSTs each message to that topic's route. Dapr keeps one subscription
//!   per pub/sub component and topic for an app, so a topic several consumers read has one
//!   route, and [`DaprBus::deliver`] hands the message to each of them. Each consumer's
//!   [`Subscription`] is fed by a bounded channel from those requests; the request waits
//!   until the batch holding the message was handled, and answers Dapr's status: `SUCCESS`,
//!   `DROP` when a consumer kept it as a dead letter, `RETRY` when it was not handled in
//!   time (or the consumer stopped), so the sidecar delivers it again.
//! - **Positions and commits** belong to the sidecar and its broker: it commits a message
//!   once the app answered. [`Subscription::commit`] has nothing left to do, and the
//!   positions in a batch only number the messages of this process.

mod inbox;
mod publish;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use todo_domain::Topic;

use crate::{BusError, EventBus, Membership, PartitionLag, Result, Subscription, TopicNames};
pub use inbox::Status;
use inbox::{Inboxes, Message};

/// How long the readiness probe of the sidecar may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one publish request may take: the sidecar answers once the broker has the
/// message, which covers a broker that is slow to acknowledge.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The route prefix of the subscription handlers: the sidecar POSTs `topic`'s messages to
/// `{EVENTS_ROUTE}/{logical topic}`.
pub const EVENTS_ROUTE: &str = "/dapr/events";

/// Everything the Dapr bus is configured with.
#[derive(Clone)]
pub struct DaprConfig {
    /// The sidecar's HTTP API, `scheme://host:port` (`DAPR_HTTP_ENDPOINT`, or
    /// `http://127.0.0.1:${DAPR_HTTP_PORT}`).
    pub endpoint: String,
    /// The pub/sub component's name (`TODO_DAPR_PUBSUB`).
    pub pubsub: String,
    /// Topic names on the component's broker.
    pub topics: TopicNames,
    /// Sent as `dapr-api-token` when the sidecar requires one (`DAPR_API_TOKEN`).
    pub api_token: Option<String>,
}

impl std::fmt::Debug for DaprConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaprConfig")
            .field("endpoint", &self.endpoint)
            .field("pubsub", &self.pubsub)
            .field("topics", &self.topics)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl DaprConfig {
    /// Settings for the sidecar at `endpoint` with the default component name and topics.
    pub fn new(endpoint: impl Into<String>) -> Self {
        DaprConfig {
            endpoint: endpoint.into(),
            pubsub: "pubsub".to_owned(),
            topics: TopicNames::default(),
            api_token: None,
        }
    }

    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let url = reqwest::Url::parse(&self.endpoint).map_err(|e| {
            BusError::Unsupported(format!(
                "DAPR_HTTP_ENDPOINT is not a URL ({e}); expected e.g. http://127.0.0.1:3500"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(BusError::Unsupported(
                "DAPR_HTTP_ENDPOINT must be an http:// or https:// URL, e.g. http://127.0.0.1:3500"
                    .into(),
            ));
        }
        check_name("TODO_DAPR_PUBSUB", &self.pubsub)?;
        for (setting, name) in [
            ("TODO_TOPIC_TASK_EVENTS", &self.topics.task_events),
            ("TODO_TOPIC_REMINDERS", &self.topics.reminders),
            ("TODO_TOPIC_TASK_UPDATES", &self.topics.task_updates),
        ] {
            check_name(setting, name)?;
        }
        Ok(())
    }
}

/// A component or topic name goes into a URL path: keep to the characters every broker
/// Dapr fronts accepts, so it needs no escaping.
fn check_name(setting: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BusError::Unsupported(format!(
            "{setting} must be 1-249 letters, digits, '.', '_' or '-' (got {name:?})"
        )))
    }
}

/// One entry of the app's answer to `GET /dapr/subscribe` (Dapr's programmatic
/// subscription, v1 form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaprSubscription {
    /// The pub/sub component.
    pub pubsubname: String,
    /// The topic on the component's broker.
    pub topic: String,
    /// Where the sidecar POSTs the topic's messages.
    pub route: String,
    /// The logical topic.
    pub logical: Topic,
}

impl DaprSubscription {
    /// The JSON object Dapr reads.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pubsubname": self.pubsubname,
            "topic": self.topic,
            "route": self.route,
        })
    }
}

/// The Dapr bus: an HTTP client for the sidecar, and the inboxes its deliveries go to.
#[derive(Clone)]
pub struct DaprBus {
    config: Arc<DaprConfig>,
    client: reqwest::Client,
    inboxes: Arc<Mutex<Inboxes>>,
}

impl std::fmt::Debug for DaprBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaprBus")
            .field("endpoint", &self.config.endpoint)
            .field("pubsub", &self.config.pubsub)
            .finish_non_exhaustive()
    }
}

impl DaprBus {
    /// A bus on the sidecar `config` names. Nothing is contacted yet: the sidecar may start
    /// after the app, and writes still go to the outbox meanwhile.
    pub fn new(config: DaprConfig) -> Result<Self> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .connect_timeout(PING_TIMEOUT)
            .timeout(PUBLISH_TIMEOUT)
            .build()
            .map_err(|e| BusError::Unsupported(format!("cannot build the HTTP client: {e}")))?;
        Ok(DaprBus {
            config: Arc::new(config),
            client,
            inboxes: Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DaprConfig {
        &self.config
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, Inboxes> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that consumer `group` will subscribe to `topics`, so its subscriptions are
    /// listed, and its messages queue for it, even before it has subscribed: the sidecar
    /// asks for the list once, when the app starts listening.
    pub fn declare(&self, group: &str, topics: &[Topic]) {
        self.inboxes().declare(group, topics);
    }

    /// The subscriptions to list at `GET /dapr/subscribe`: one per topic some declared or
    /// subscribed consumer reads.
    pub fn subscriptions(&self) -> Vec<DaprSubscription> {
        let topics = self.inboxes().topics();
        topics
            .into_iter()
            .map(|topic| DaprSubscription {
                pubsubname: self.config.pubsub.clone(),
                topic: self.config.topics.name(topic).to_owned(),
                route: format!("{EVENTS_ROUTE}/{}", topic.as_str()),
                logical: topic,
            })
            .collect()
    }

    /// Hands a message the sidecar delivered on `topic` (the request body) to every
    /// consumer of the topic, and waits up to `wait` for the outcome: [`Status::Success`]
    /// once each handled it, [`Status::Drop`] if one kept it as a dead letter (and none
    /// needs it again), otherwise [`Status::Retry`]. A body that is no CloudEvent reaches
    /// the consumers as a message they cannot read, which they keep as a dead letter.
    pub async fn deliver(&self, topic: Topic, body: &[u8], wait: Duration) -> Status {
        let message = Arc::new(Message::parse(self.config.topics.name(topic), body));
        let inboxes = self.inboxes().senders(topic);
        inbox::deliver(message, inboxes, wait).await
    }
}

#[async_trait]
impl EventBus for DaprBus {
    async fn subscribe(
        &self,
        group: &str,
        topics: &[Topic],
        membership: Membership,
    ) -> Result<Box<dyn Subscription>> {
        // How replicas share messages is the sidecar's business: its consumer group is the
        // app id, so each app id gets every message once (see docs/dapr.md).
        let _ = membership;
        Ok(Box::new(self.inboxes().subscribe(group, topics)))
    }

    /// The sidecar does not report consumer positions: no lag figures in this mode.
    async fn lag(&self, _group: &str, _topics: &[Topic]) -> Result<Vec<PartitionLag>> {
        Ok(Vec::new())
    }

    /// The sidecar's outbound health: whether its components (the pub/sub one among them)
    /// are ready.
    async fn ping(&self) -> Result<()> {
        let url = format!("{}/v1.0/healthz/outbound", self.config.endpoint);
        let response = self
            .client
            .get(url)
            .timeout(PING_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                BusError::Unavailable(format!("the Dapr sidecar cannot be reached: {e}"))
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!(
                "the Dapr sidecar is not ready (healthz/outbound answered {})",
                response.status()
            )))
        }
    }

    fn check_name(&self) -> Option<&'static str> {
        Some("sidecar")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_the_setting_named() {
        DaprConfig::new("http://127.0.0.1:3500").validate().unwrap();
        let e = DaprConfig::new("127.0.0.1:3500")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("DAPR_HTTP_ENDPOINT"), "{e}");
        let mut config = DaprConfig::new("http://127.0.0.1:3500");
        config.pubsub = "pub sub".into();
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("TODO_DAPR_PUBSUB"), "{e}");
        let mut config = DaprConfig::new("http://127.0.0.1:3500");
        config.topics.reminders = "a/b".into();
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("TODO_TOPIC_REMINDERS"), "{e}");
        config.topics.reminders = "todo.reminders_v2".into();
        config.validate().unwrap();
        config.api_token = Some("secret-token".into());
        assert!(!format!("{config:?}").contains("secret-token"));
    }

    #[test]
    fn one_subscription_per_topic_whatever_the_number_of_consumers() {
        let mut config = DaprConfig::new("http://127.0.0.1:3500");
        config.topics.task_events = "prod.task-events".into();
        let bus = DaprBus::new(config).unwrap();
        bus.declare("audit", &[Topic::TaskEvents, Topic::Reminders]);
        bus.declare("recurring", &[Topic::TaskEvents]);
        let subs = bus.subscriptions();
        let json: Vec<_> = subs.iter().map(DaprSubscription::to_json).collect();
        assert_eq!(
            json,
            [
                serde_json::json!({"pubsubname": "pubsub", "topic": "prod.task-events",
                                   "route": "/dapr/events/task-events"}),
                serde_json::json!({"pubsubname": "pubsub", "topic": "reminders",
                                   "route": "/dapr/events/reminders"}),
            ]
        );
    }
}
