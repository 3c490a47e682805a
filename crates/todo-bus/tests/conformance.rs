//! Bus conformance: the behaviour every `EventBus` must show, written once and run per
//! implementation: the in-process bus, and the Kafka bus on both real brokers available
//! here (noida-db and tansu).

#[cfg(feature = "kafka")]
#[path = "support/broker.rs"]
mod broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use todo_bus::{EventBus, Membership, Publisher, Subscription};
use todo_domain::{CloudEvent, CreateTask, EventType, Task, Topic, time};
use todo_store::Store;
use uuid::Uuid;

/// Where a harness's events come from: the store's outbox, or a broker.
enum Source {
    Store(Arc<dyn Store>),
    Broker(Arc<dyn Publisher>),
}

/// A bus and a way to publish a task event on it.
struct Harness {
    bus: Arc<dyn EventBus>,
    source: Source,
    _dir: tempfile::TempDir,
    #[cfg(feature = "kafka")]
    _broker: Option<broker::Broker>,
}

impl Harness {
    async fn publish(&self, title: &str) -> CloudEvent {
        let task: Task = CreateTask::from_json(&serde_json::json!({"title": title}))
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", time::now());
        let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
        match &self.source {
            Source::Store(store) => store.insert_task(&task, &event).await.unwrap(),
            Source::Broker(publisher) => {
                publisher.publish(&[Arc::new(event.clone())]).await.unwrap();
            }
        }
        event
    }

    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Box<dyn Subscription> {
        self.bus
            .subscribe(group, topics, Membership::Shared)
            .await
            .unwrap()
    }

    /// Waits until `group`'s lag over `topics` adds up to `expected`, while `sub` (a member
    /// of the group) waits for events, as a running consumer does. A broker reports lag
    /// from its client's statistics, every half second here, which arrive while the
    /// member reads. No event may arrive meanwhile.
    async fn lag_becomes(
        &self,
        sub: &mut Box<dyn Subscription>,
        group: &str,
        topics: &[Topic],
        expected: i64,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lag: i64 = self
                .bus
                .lag(group, topics)
                .await
                .unwrap()
                .iter()
                .map(|l| l.lag)
                .sum();
            if lag == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lag of {group} stayed {lag}, expected {expected}"
            );
            if let Ok(batch) =
                tokio::time::timeout(Duration::from_millis(100), sub.next_batch(10)).await
            {
                panic!("unexpected events while waiting for lag: {batch:?}");
            }
        }
    }
}

async fn next(sub: &mut Box<dyn Subscription>) -> Vec<CloudEvent> {
    let batch = tokio::time::timeout(Duration::from_secs(20), sub.next_batch(100))
        .await
        .expect("a batch within 20 s")
        .unwrap();
    sub.ack(&batch);
    batch
        .events
        .into_iter()
        .map(|d| (*d.event).clone())
        .collect()
}

/// Takes events until `n` have arrived.
async fn take(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<CloudEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(next(sub).await);
    }
    got
}

async fn a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed(h: Harness) {
    let first = h.publish("one").await;
    let second = h.publish("two").await;
    let mut sub = h.subscribe("g", &[Topic::TaskEvents]).await;
    let got = take(&mut sub, 2).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    sub.commit().await.unwrap();
    let third = h.publish("three").await;
    assert_eq!(next(&mut sub).await[0].id, third.id);
    drop(sub); // acknowledged, never committed: a crash here redelivers it

    let mut again = h.subscribe("g", &[Topic::TaskEvents]).await;
    assert_eq!(
        next(&mut again).await[0].id,
        third.id,
        "uncommitted event redelivered"
    );
    again.commit().await.unwrap();
    h.lag_becomes(&mut again, "g", &[Topic::TaskEvents], 0)
        .await;

    // Another group starts from the beginning, independently; its lag counts until it
    // commits.
    let mut other = h.subscribe("h", &[Topic::TaskEvents]).await;
    assert_eq!(take(&mut other, 3).await.len(), 3);
    h.lag_becomes(&mut other, "h", &[Topic::TaskEvents], 3)
        .await;
    other.commit().await.unwrap();
    h.lag_becomes(&mut other, "h", &[Topic::TaskEvents], 0)
        .await;
}

async fn a_subscriber_sees_only_its_topics(h: Harness) {
    h.publish("task").await;
    let mut sub = h.subscribe("reminders-only", &[Topic::Reminders]).await;
    let waited = tokio::time::timeout(Duration::from_millis(300), sub.next_batch(10)).await;
    assert!(
        waited.is_err(),
        "a reminders subscriber received a task event"
    );
}

async fn a_waiting_subscriber_wakes_at_once_on_publish(h: Harness) {
    let mut sub = h.subscribe("w", &[Topic::TaskEvents]).await;
    // Joined and reading first (a broker's group join takes a moment).
    h.publish("warm up").await;
    take(&mut sub, 1).await;
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let batch = sub.next_batch(10).await.unwrap();
        (started.elapsed(), batch.events.len())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let published = Instant::now();
    h.publish("wake").await;
    let (_, n) = waiter.await.unwrap();
    assert_eq!(n, 1);
    // Far below the 1 s idle poll: the wake-up came from the append signal.
    assert!(
        published.elapsed() < Duration::from_millis(500),
        "took {:?}",
        published.elapsed()
    );
}

async fn a_cancelled_wait_loses_no_event(h: Harness) {
    let mut sub = h.subscribe("c", &[Topic::TaskEvents]).await;
    // Drop a pending next_batch, as a select! on shutdown or a timer does.
    let _ = tokio::time::timeout(Duration::from_millis(20), sub.next_batch(10)).await;
    let event = h.publish("after").await;
    assert_eq!(next(&mut sub).await[0].id, event.id);
}

mod memory {
    use super::*;

    async fn harness() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let backend = todo_store::connect(&format!("sqlite://{}/bus.db", dir.path().display()))
            .await
            .unwrap();
        let bus: Arc<dyn EventBus> = Arc::new(todo_bus::memory::MemoryBus::new(backend.log));
        Harness {
            bus,
            source: Source::Store(backend.store),
            _dir: dir,
            #[cfg(feature = "kafka")]
            _broker: None,
        }
    }

    #[tokio::test]
    async fn a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed() {
        super::a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed(
            harness().await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_subscriber_sees_only_its_topics() {
        super::a_subscriber_sees_only_its_topics(harness().await).await;
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_at_once_on_publish() {
        super::a_waiting_subscriber_wakes_at_once_on_publish(harness().await).await;
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_event() {
        super::a_cancelled_wait_loses_no_event(harness().await).await;
    }

    /// The embedded bus serves what this process wrote from memory; events another
    /// process wrote to the same file (split services sharing one SQLite database) must
    /// still arrive, in log order, with none skipped.
    #[tokio::test]
    async fn events_written_by_another_process_on_the_same_file_are_delivered_in_order() {
        let h = harness().await;
        let url = format!("sqlite://{}/bus.db", h._dir.path().display());
        let elsewhere = Harness {
            bus: h.bus.clone(),
            source: Source::Store(todo_store::connect(&url).await.unwrap().store),
            _dir: tempfile::tempdir().unwrap(),
            #[cfg(feature = "kafka")]
            _broker: None,
        };
        let mut sub = h.subscribe("g", &[Topic::TaskEvents]).await;
        let mut expected = vec![h.publish("here 1").await.id];
        assert_eq!(ids(next(&mut sub).await), expected);
        // Here, there, here: the second local write leaves a gap in this process's tail.
        expected = vec![
            elsewhere.publish("there").await.id,
            h.publish("here 2").await.id,
        ];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < expected.len() && Instant::now() < deadline {
            got.extend(ids(next(&mut sub).await));
        }
        assert_eq!(got, expected, "log order, nothing skipped");
        // Alone, another process's event arrives by the idle poll.
        let there = elsewhere.publish("there 2").await.id;
        assert_eq!(ids(next(&mut sub).await), vec![there]);
    }

    fn ids(events: Vec<CloudEvent>) -> Vec<Uuid> {
        events.into_iter().map(|e| e.id).collect()
    }
}

/// The Kafka bus on a real broker: each test gets a broker of its own.
#[cfg(feature = "kafka")]
macro_rules! kafka_suite {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            async fn harness() -> Harness {
                let broker = broker::Broker::start($kind);
                let bus = Arc::new(
                    todo_bus::kafka::KafkaBus::new(super::kafka_config(&broker.addr())).unwrap(),
                );
                Harness {
                    bus: bus.clone(),
                    source: Source::Broker(bus),
                    _dir: tempfile::tempdir().unwrap(),
                    _broker: Some(broker),
                }
            }

            #[tokio::test]
            async fn a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed() {
                super::a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed(
                    harness().await,
                )
                .await;
            }

            #[tokio::test]
            async fn a_subscriber_sees_only_its_topics() {
                super::a_subscriber_sees_only_its_topics(harness().await).await;
            }

            #[tokio::test]
            async fn a_waiting_subscriber_wakes_at_once_on_publish() {
                super::a_waiting_subscriber_wakes_at_once_on_publish(harness().await).await;
            }

            #[tokio::test]
            async fn a_cancelled_wait_loses_no_event() {
                super::a_cancelled_wait_loses_no_event(harness().await).await;
            }
        }
    };
}

/// Settings for tests: quick joins and lag figures every half second.
#[cfg(feature = "kafka")]
fn kafka_config(brokers: &str) -> todo_bus::kafka::KafkaConfig {
    let mut config = todo_bus::kafka::KafkaConfig::new(brokers);
    config.session_timeout_ms = 6000;
    config.extra = todo_bus::kafka::parse_properties("statistics.interval.ms=500").unwrap();
    config
}

#[cfg(feature = "kafka")]
kafka_suite!(noida, broker::Kind::Noida);
#[cfg(feature = "kafka")]
kafka_suite!(tansu, broker::Kind::Tansu);
