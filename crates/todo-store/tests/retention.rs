//! Trimming the embedded event log never removes an event some consumer still needs.

use todo_domain::{CloudEvent, CreateTask, EventType, Topic, time};
use todo_store::Store;
use uuid::Uuid;

async fn store_with_events(dir: &tempfile::TempDir, n: usize) -> std::sync::Arc<dyn Store> {
    let store = todo_store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    for i in 0..n {
        let task = CreateTask::from_json(&serde_json::json!({"title": format!("t{i}")}))
            .unwrap()
            .into_task(Uuid::now_v7(), "alice", time::now());
        let event = CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None);
        store.insert_task(&task, &event).await.unwrap();
    }
    store
}

#[tokio::test]
async fn pruning_waits_for_every_consumer_and_keeps_what_any_still_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(&dir, 10).await;
    let later = time::now() + chrono::Duration::seconds(1);
    let consumers = ["audit", "sync"];

    // A consumer that never committed needs everything.
    store.commit_position("audit", 10).await.unwrap();
    assert_eq!(store.prune_events(later, &consumers).await.unwrap(), 0);

    // Only what both have passed goes.
    store.commit_position("sync", 4).await.unwrap();
    assert_eq!(store.prune_events(later, &consumers).await.unwrap(), 4);
    let left = store
        .read_events(0, &[Topic::TaskEvents], 100)
        .await
        .unwrap();
    assert_eq!(left.first().map(|e| e.seq), Some(5));
    assert_eq!(left.len(), 6);

    // Nothing newer than the cut-off time goes, whatever the positions.
    store.commit_position("sync", 10).await.unwrap();
    let earlier = time::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_events(earlier, &consumers).await.unwrap(), 0);
}

#[tokio::test]
async fn sequence_numbers_are_never_reused_after_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(&dir, 3).await;
    store.commit_position("audit", 3).await.unwrap();
    let later = time::now() + chrono::Duration::seconds(1);
    assert_eq!(store.prune_events(later, &["audit"]).await.unwrap(), 3);
    let task = CreateTask::from_json(&serde_json::json!({"title": "after"}))
        .unwrap()
        .into_task(Uuid::now_v7(), "alice", time::now());
    store
        .insert_task(
            &task,
            &CloudEvent::task(EventType::TaskCreated, "api", &task, time::now(), None),
        )
        .await
        .unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), 4);
}
