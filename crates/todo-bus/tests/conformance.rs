//! Bus conformance: the behaviour every `EventBus` must show, written once and run per
//! implementation (the in-process bus here; a Kafka module joins it later).

use std::sync::Arc;
use std::time::{Duration, Instant};

use todo_bus::{EventBus, Subscription};
use todo_domain::{CloudEvent, CreateTask, EventType, Task, Topic, time};
use todo_store::Store;
use uuid::Uuid;

/// A bus and a way to publish a task event on it.
struct Harness {
    bus: Arc<dyn EventBus>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn publish(&self, title: &str) -> CloudEvent {
        let task: Task = CreateTask::from_json(&serde_json::json!({"title": title}))
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", time::now());
        let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
        self.store.insert_task(&task, &event).await.unwrap();
        event
    }
}

async fn next(sub: &mut Box<dyn Subscription>) -> Vec<CloudEvent> {
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.next_batch(100))
        .await
        .expect("a batch within 5 s")
        .unwrap();
    sub.ack(&batch);
    batch.into_iter().map(|d| (*d.event).clone()).collect()
}

async fn a_group_resumes_after_its_last_commit_and_redelivers_what_was_not_committed(h: Harness) {
    let first = h.publish("one").await;
    let second = h.publish("two").await;
    let mut sub = h.bus.subscribe("g", &[Topic::TaskEvents]).await.unwrap();
    let got = next(&mut sub).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    sub.commit().await.unwrap();
    let third = h.publish("three").await;
    assert_eq!(next(&mut sub).await[0].id, third.id);
    drop(sub); // acknowledged, never committed: a crash here redelivers it

    let mut again = h.bus.subscribe("g", &[Topic::TaskEvents]).await.unwrap();
    assert_eq!(
        next(&mut again).await[0].id,
        third.id,
        "uncommitted event redelivered"
    );
    again.commit().await.unwrap();
    assert_eq!(h.bus.lag("g", &[Topic::TaskEvents]).await.unwrap(), 0);

    // Another group starts from the beginning, independently.
    let mut other = h.bus.subscribe("h", &[Topic::TaskEvents]).await.unwrap();
    assert_eq!(next(&mut other).await.len(), 3);
    assert_eq!(
        h.bus.lag("h", &[Topic::TaskEvents]).await.unwrap(),
        3,
        "lag counts until commit"
    );
}

async fn a_subscriber_sees_only_its_topics(h: Harness) {
    h.publish("task").await;
    let mut sub = h
        .bus
        .subscribe("reminders-only", &[Topic::Reminders])
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), sub.next_batch(10)).await;
    assert!(
        waited.is_err(),
        "a reminders subscriber received a task event"
    );
}

async fn a_waiting_subscriber_wakes_at_once_on_publish(h: Harness) {
    let mut sub = h.bus.subscribe("w", &[Topic::TaskEvents]).await.unwrap();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let batch = sub.next_batch(10).await.unwrap();
        (started.elapsed(), batch.len())
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
    let mut sub = h.bus.subscribe("c", &[Topic::TaskEvents]).await.unwrap();
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
            store: backend.store,
            _dir: dir,
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
            store: todo_store::connect(&url).await.unwrap().store,
            _dir: tempfile::tempdir().unwrap(),
        };
        let mut sub = h.bus.subscribe("g", &[Topic::TaskEvents]).await.unwrap();
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
