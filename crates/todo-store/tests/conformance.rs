//! Store conformance: what every [`Store`] must do, whatever the engine. What the log
//! does with the events, and consumer positions, are in `log_conformance.rs`.
//!
//! Each scenario is written once, as an async function over `&dyn Store` (and the
//! [`EventLog`], for a scenario that checks what a write appended), and each backend runs
//! all of them through [`conformance_tests!`], which makes one thin test per scenario on a
//! fresh database. Scenarios use only the traits, so a new backend passes by behaving, not
//! by sharing an implementation. To add one, write a module with an
//! `async fn fresh_database() -> (String, impl Sized)` returning a `DATABASE_URL` for an
//! empty database and a guard that keeps it alive, then call `conformance_tests!` in it.
//! Tests are named by backend: `sqlite::<scenario>` and `postgres::<scenario>`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use chrono::Duration;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;
use todo_domain::event::EventType;
use todo_domain::query::StatusFilter;
use todo_domain::time::Timestamp;
use todo_domain::{
    AuditEntry, CloudEvent, Frequency, Priority, Recurrence, Reminder, ReminderData, ReminderPlan,
    ReminderStatus, SortKey, Task, TaskQuery, Topic,
};
use todo_store::{
    AuditPosition, AuditQuery, DeadLetter, EventLog, PageQuery, Seek, Store, StoreError,
    WebhookDelivery, WebhookOutcome,
};
use uuid::Uuid;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::*;

// ---------------------------------------------------------------------------------------
// Fixtures (those shared with `log_conformance.rs` are in `support/fixtures.rs`)
// ---------------------------------------------------------------------------------------

fn page(limit: i64) -> PageQuery {
    PageQuery { limit, after: None }
}

fn scheduled(
    task_id: Uuid,
    user_id: &str,
    version: i64,
    remind_at: Timestamp,
    title: &str,
) -> Reminder {
    Reminder {
        task_id,
        user_id: user_id.to_owned(),
        title: title.to_owned(),
        remind_at,
        due_at: remind_at + Duration::minutes(15),
        status: ReminderStatus::Scheduled,
        task_version: version,
        traceparent: None,
    }
}

/// How long a claimed webhook delivery stays leased to its sender.
const LEASE: Duration = Duration::minutes(1);

/// Claims webhook deliveries due at `now`, leasing them for [`LEASE`].
async fn claim(store: &dyn Store, now: Timestamp, limit: i64) -> Vec<WebhookDelivery> {
    store
        .claim_webhooks(now, now + LEASE, limit)
        .await
        .expect("claim_webhooks")
}

fn sent(reminder: &Reminder) -> Reminder {
    Reminder {
        status: ReminderStatus::Sent,
        ..reminder.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------

/// Every field survives a round trip, and another user cannot read the task.
pub async fn a_task_reads_back_equal_to_what_was_inserted_and_only_for_its_owner(
    store: &dyn Store,
) {
    let full = Task {
        id: Uuid::now_v7(),
        user_id: "alice".into(),
        title: "Pay Rent ✓".into(),
        description: Some("Flat 3\nby transfer, not cash".into()),
        completed: true,
        completed_at: Some(at("2026-11-22T11:30:00.123456Z")),
        priority: Priority::High,
        tags: vec!["home".into(), "money".into()],
        due_at: Some(at("2027-01-31T09:00:00.000001Z")),
        remind_before_minutes: Some(90),
        recurrence: Some(Recurrence::new(Frequency::Monthly, 2).expect("a valid recurrence")),
        parent_task_id: Some(Uuid::now_v7()),
        version: 7,
        created_at: at("2026-11-20T08:00:00.5Z"),
        updated_at: at("2026-11-22T11:30:00.123456Z"),
        recurrence_anchor_day: Some(31),
    };
    let minimal = task("alice", "x");
    insert(store, &full).await;
    insert(store, &minimal).await;

    assert_eq!(get(store, "alice", full.id).await, Some(full.clone()));
    assert_eq!(get(store, "alice", minimal.id).await, Some(minimal));
    assert_eq!(
        get(store, "mallory", full.id).await,
        None,
        "another user must not see alice's task"
    );
    assert_eq!(get(store, "alice", Uuid::now_v7()).await, None);
}

/// Optimistic concurrency on update: right version wins, stale or future versions conflict.
pub async fn an_update_at_the_expected_version_succeeds_and_a_stale_one_conflicts(
    store: &dyn Store,
) {
    let mut v1 = task("alice", "Draft");
    v1.description = Some("first thoughts".into());
    v1.tags = vec!["home".into()];
    insert(store, &v1).await;
    let middle = task("alice", "Middle");
    insert(store, &middle).await;

    // Every field an update may change does change.
    let v2 = edited(&v1, |t| {
        t.title = "Zeta final".into();
        t.description = None;
        t.completed = true;
        t.completed_at = Some(t0() + Duration::minutes(5));
        t.priority = Priority::High;
        t.tags = vec!["work".into(), "money".into()];
        t.due_at = Some(at("2027-03-31T09:00:00Z"));
        t.remind_before_minutes = Some(0);
        t.recurrence = Some(Recurrence::new(Frequency::Yearly, 3).expect("a valid recurrence"));
        t.recurrence_anchor_day = Some(31);
    });
    store
        .update_task(&v2, 1, &event(EventType::TaskUpdated, &v2))
        .await
        .expect("update at the expected version");
    assert_eq!(get(store, "alice", v1.id).await, Some(v2.clone()));
    // What the list searches and sorts by follows the update too.
    let list = async |query: TaskQuery| -> Vec<Uuid> {
        ids(&store.list_tasks("alice", &query).await.expect("list_tasks"))
    };
    assert_eq!(
        list(TaskQuery {
            q: Some("zeta".into()),
            ..all_tasks(10)
        })
        .await,
        [v1.id]
    );
    assert!(
        list(TaskQuery {
            q: Some("draft".into()),
            ..all_tasks(10)
        })
        .await
        .is_empty()
    );
    assert!(
        list(TaskQuery {
            q: Some("thoughts".into()),
            ..all_tasks(10)
        })
        .await
        .is_empty()
    );
    assert!(
        list(TaskQuery {
            tags: vec!["home".into()],
            ..all_tasks(10)
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(TaskQuery {
            tags: vec!["money".into()],
            ..all_tasks(10)
        })
        .await,
        [v1.id]
    );
    assert_eq!(
        list(TaskQuery {
            sort: SortKey::Title,
            ..all_tasks(10)
        })
        .await,
        [middle.id, v1.id]
    );
    assert_eq!(
        list(TaskQuery {
            status: StatusFilter::Completed,
            ..all_tasks(10)
        })
        .await,
        [v1.id]
    );

    let lost = edited(&v1, |t| t.title = "Lost update".into());
    let err = store
        .update_task(&lost, 1, &event(EventType::TaskUpdated, &lost))
        .await
        .expect_err("a stale version must conflict");
    assert!(
        matches!(err, StoreError::VersionConflict { current: 2 }),
        "got {err:?}"
    );

    let ahead = edited(&v2, |t| t.title = "From the future".into());
    let err = store
        .update_task(&ahead, 5, &event(EventType::TaskUpdated, &ahead))
        .await
        .expect_err("a version that was never stored must conflict");
    assert!(
        matches!(err, StoreError::VersionConflict { current: 2 }),
        "got {err:?}"
    );
    assert_eq!(
        get(store, "alice", v1.id).await,
        Some(v2.clone()),
        "a conflict must change nothing"
    );

    let ghost = edited(&task("alice", "ghost"), |t| {
        t.title = "still a ghost".into()
    });
    let err = store
        .update_task(&ghost, 1, &event(EventType::TaskUpdated, &ghost))
        .await
        .expect_err("a missing task cannot be updated");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");

    let mut hijack = edited(&v2, |t| t.title = "mine now".into());
    hijack.user_id = "mallory".into();
    let err = store
        .update_task(&hijack, 2, &event(EventType::TaskUpdated, &hijack))
        .await
        .expect_err("another user's task cannot be updated");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    assert_eq!(get(store, "alice", v1.id).await, Some(v2));
}

/// An update changes any subset of the fields the list indexes hold (title, status,
/// priority, due date), the rest alike: after each, every sort and filter lists the tasks
/// as the reference does, and the task reads back as written.
pub async fn every_subset_of_indexed_fields_an_update_changes_keeps_every_list_right(
    store: &dyn Store,
) {
    let mut tasks = Vec::new();
    for (n, title) in ["Bravo", "delta", "Alpha", "charlie"].iter().enumerate() {
        let mut t = task("alice", title);
        t.created_at = t0() + Duration::minutes(n as i64);
        t.updated_at = t.created_at;
        t.due_at = (n % 2 == 0).then(|| t0() + Duration::hours(n as i64 + 1));
        t.priority = [Priority::Low, Priority::High][n % 2];
        insert(store, &t).await;
        tasks.push(t);
    }
    for changed in 0..16u32 {
        let i = changed as usize % tasks.len();
        let next = edited(&tasks[i], |t| {
            t.description = Some(format!("step {changed}"));
            if changed & 1 != 0 {
                t.title = format!(
                    "{} {changed}",
                    ["echo", "Zulu", "apple"][changed as usize % 3]
                );
            }
            if changed & 2 != 0 {
                t.completed = !t.completed;
                t.completed_at = t.completed.then(|| t0() + Duration::hours(1));
            }
            if changed & 4 != 0 {
                t.priority = match t.priority {
                    Priority::Low => Priority::Medium,
                    Priority::Medium => Priority::High,
                    Priority::High => Priority::Low,
                };
            }
            if changed & 8 != 0 {
                t.due_at = match t.due_at {
                    Some(_) if changed % 3 == 0 => None,
                    Some(due) => Some(due + Duration::hours(7)),
                    None => Some(t0() + Duration::minutes(30 + changed as i64)),
                };
            }
        });
        store
            .update_task(
                &next,
                tasks[i].version,
                &event(EventType::TaskUpdated, &next),
            )
            .await
            .unwrap_or_else(|e| panic!("update {changed:04b}: {e}"));
        tasks[i] = next;
        assert_eq!(
            get(store, "alice", tasks[i].id).await.as_ref(),
            Some(&tasks[i]),
            "update {changed:04b}"
        );
        for query in in_every_order(filters(10)) {
            let listed = store.list_tasks("alice", &query).await.expect("list_tasks");
            let expected = reference(&tasks, &query);
            assert_eq!(
                ids(&listed),
                ids(&expected),
                "after update {changed:04b}, {query:?}\nlisted:\n{}\nexpected:\n{}",
                describe(&listed),
                describe(&expected)
            );
        }
    }
}

/// Optimistic concurrency on delete, and a deleted task is gone for good.
pub async fn a_delete_at_the_expected_version_succeeds_and_a_stale_one_conflicts(
    store: &dyn Store,
) {
    let v1 = task("alice", "Old");
    insert(store, &v1).await;
    let v2 = edited(&v1, |t| t.title = "Older".into());
    store
        .update_task(&v2, 1, &event(EventType::TaskUpdated, &v2))
        .await
        .expect("update");
    let deleted = event(EventType::TaskDeleted, &v2);

    let err = store
        .delete_task("alice", v1.id, 1, &deleted)
        .await
        .expect_err("a stale version must conflict");
    assert!(
        matches!(err, StoreError::VersionConflict { current: 2 }),
        "got {err:?}"
    );
    assert_eq!(
        get(store, "alice", v1.id).await,
        Some(v2.clone()),
        "a conflict must keep the task"
    );

    let err = store
        .delete_task("mallory", v1.id, 2, &deleted)
        .await
        .expect_err("another user's task cannot be deleted");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    assert_eq!(get(store, "alice", v1.id).await, Some(v2));

    store
        .delete_task("alice", v1.id, 2, &deleted)
        .await
        .expect("delete at the expected version");
    assert_eq!(get(store, "alice", v1.id).await, None);

    let again = event(EventType::TaskDeleted, &v1);
    let err = store
        .delete_task("alice", v1.id, 2, &again)
        .await
        .expect_err("a deleted task cannot be deleted again");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    let err = store
        .delete_task(
            "alice",
            Uuid::now_v7(),
            1,
            &event(EventType::TaskDeleted, &task("alice", "never")),
        )
        .await
        .expect_err("a task that never existed cannot be deleted");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
}

/// The outbox gets exactly the events of the writes that happened, in order.
pub async fn every_task_write_appends_one_event_in_order_and_a_failed_write_appends_none(
    store: &dyn Store,
    log: &dyn EventLog,
) {
    let start = last_seq(log).await;
    let mut appended: Vec<CloudEvent> = Vec::new();

    let a1 = task("alice", "A");
    appended.push(insert(store, &a1).await);
    let b1 = task("bob", "B");
    appended.push(insert(store, &b1).await);

    // Failed writes: none of these may leave an event behind.
    let before_failures = last_seq(log).await;
    let duplicate = store
        .insert_task(&a1, &event(EventType::TaskCreated, &a1))
        .await;
    assert!(duplicate.is_err(), "inserting an existing id must fail");
    let stale = edited(&edited(&a1, |_| {}), |t| t.title = "stale".into());
    assert!(
        store
            .update_task(&stale, 2, &event(EventType::TaskUpdated, &stale))
            .await
            .is_err()
    );
    assert!(
        store
            .delete_task("bob", b1.id, 9, &event(EventType::TaskDeleted, &b1))
            .await
            .is_err()
    );
    let ghost = edited(&task("alice", "ghost"), |_| {});
    assert!(
        store
            .update_task(&ghost, 1, &event(EventType::TaskUpdated, &ghost))
            .await
            .is_err()
    );

    assert_eq!(
        last_seq(log).await,
        before_failures,
        "a failed write appends no event"
    );

    let a2 = edited(&a1, |t| t.title = "A, renamed".into());
    let updated = event(EventType::TaskUpdated, &a2);
    store.update_task(&a2, 1, &updated).await.expect("update");
    appended.push(updated);
    let a3 = edited(&a2, |t| {
        t.completed = true;
        t.completed_at = Some(t.updated_at);
    });
    let completed = event(EventType::TaskCompleted, &a3);
    store
        .update_task(&a3, 2, &completed)
        .await
        .expect("complete");
    appended.push(completed);
    let deleted = event(EventType::TaskDeleted, &b1);
    store
        .delete_task("bob", b1.id, 1, &deleted)
        .await
        .expect("delete");
    appended.push(deleted);

    let events = events_after(log, start, Topic::TaskEvents).await;
    assert_eq!(
        types(&events),
        [
            "task.created",
            "task.created",
            "task.updated",
            "task.completed",
            "task.deleted"
        ]
    );
    let read: Vec<&CloudEvent> = events.iter().map(|e| &*e.event).collect();
    let expected: Vec<&CloudEvent> = appended.iter().collect();
    assert_eq!(
        read, expected,
        "the log must hold exactly the appended events, unchanged"
    );
    assert!(events[0].seq > start);
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq must strictly increase: {events:?}"
    );
    assert_eq!(last_seq(log).await, events[4].seq);
}

/// Writes made at once, some of them refused: on SQLite they share the writer's
/// transactions, which run without savepoints until a job refuses and then again with one
/// per job. Each refused write leaves nothing behind, and every other is written, with its
/// event, exactly once.
pub async fn concurrent_writes_where_some_are_refused_commit_the_others_once(
    store: &dyn Store,
    log: &dyn EventLog,
) {
    use std::future::Future;
    use std::pin::Pin;
    type Write<'a> =
        Pin<Box<dyn Future<Output = (Option<String>, CloudEvent, Result<(), StoreError>)> + 'a>>;

    let shared = task("alice", "contended");
    insert(store, &shared).await;
    let start = last_seq(log).await;
    let mut writes: Vec<Write<'_>> = Vec::new();
    for round in 0..16 {
        for i in 0..3 {
            let fresh = task("alice", &format!("new {round}.{i}"));
            let created = event(EventType::TaskCreated, &fresh);
            writes.push(Box::pin(async move {
                let result = store.insert_task(&fresh, &created).await;
                (None, created, result)
            }));
        }
        // Every round also renames the shared task at version 1: only one rename can win.
        let renamed = edited(&shared, |t| t.title = format!("renamed {round}"));
        let updated = event(EventType::TaskUpdated, &renamed);
        writes.push(Box::pin(async move {
            let result = store.update_task(&renamed, 1, &updated).await;
            (Some(renamed.title.clone()), updated, result)
        }));
    }
    let results = futures_util::future::join_all(writes).await;

    let mut expected = HashSet::new();
    let mut renames_won = Vec::new();
    for (rename, event, result) in results {
        match (rename, result) {
            (None, Ok(())) => {}
            (None, Err(e)) => panic!("an insert failed: {e}"),
            (Some(title), Ok(())) => renames_won.push(title),
            (Some(_), Err(e)) => {
                assert!(matches!(e, StoreError::VersionConflict { .. }), "{e}");
                continue;
            }
        }
        expected.insert(event.id);
    }
    assert_eq!(renames_won.len(), 1, "exactly one rename at version 1 wins");
    let events = events_after(log, start, Topic::TaskEvents).await;
    let read: Vec<Uuid> = events.iter().map(|e| e.event.id).collect();
    assert_eq!(
        read.len(),
        49,
        "48 creations and one rename: {:?}",
        types(&events)
    );
    assert_eq!(
        read.iter().copied().collect::<HashSet<_>>(),
        expected,
        "the log holds each written event once, and none of a refused write"
    );
    // The in-process tail (where this store keeps one) is what in-process consumers read
    // first: it too holds each written event once, in the log's order.
    if let Some(tail) = log.recent_events(start, &[Topic::TaskEvents], 1_000) {
        let tail: Vec<(i64, Uuid)> = tail.events.iter().map(|e| (e.seq, e.event.id)).collect();
        let logged: Vec<(i64, Uuid)> = events.iter().map(|e| (e.seq, e.event.id)).collect();
        assert_eq!(tail, logged, "the in-process tail and the log differ");
    }
    let now = get(store, "alice", shared.id)
        .await
        .expect("the shared task");
    assert_eq!(now.version, 2);
    assert_eq!(now.title, renames_won[0]);
    let all = store
        .list_tasks("alice", &all_tasks(100))
        .await
        .expect("list");
    assert_eq!(all.len(), 49, "48 new tasks and the shared one");
}

/// A recurring task's next occurrence is created at most once, however often it is asked for.
pub async fn the_next_occurrence_is_spawned_once_per_parent(store: &dyn Store, log: &dyn EventLog) {
    let weekly = Recurrence::new(Frequency::Weekly, 1).expect("a valid recurrence");
    let mut parent = task("alice", "Water plants");
    parent.recurrence = Some(weekly);
    parent.due_at = Some(t0());
    parent.recurrence_anchor_day = Some(22);
    insert(store, &parent).await;
    let parent = edited(&parent, |t| {
        t.completed = true;
        t.completed_at = Some(t.updated_at);
    });
    store
        .update_task(&parent, 1, &event(EventType::TaskCompleted, &parent))
        .await
        .expect("complete");
    let start = last_seq(log).await;

    let next = |title: &str| {
        let mut child = task("alice", title);
        child.recurrence = Some(weekly);
        child.due_at = Some(t0() + Duration::weeks(1));
        child.parent_task_id = Some(parent.id);
        child.recurrence_anchor_day = Some(22);
        child
    };
    let child = next("Water plants");
    let created = event(EventType::TaskCreated, &child);
    assert!(
        store
            .spawn_next_occurrence(parent.id, &child, &created)
            .await
            .expect("spawn")
    );
    let twin = next("Water plants again");
    assert!(
        !store
            .spawn_next_occurrence(parent.id, &twin, &event(EventType::TaskCreated, &twin))
            .await
            .expect("spawn again"),
        "a second spawn for the same parent must report false"
    );

    assert_eq!(get(store, "alice", child.id).await, Some(child.clone()));
    assert_eq!(get(store, "alice", twin.id).await, None);
    let listed: HashSet<Uuid> = store
        .list_tasks("alice", &all_tasks(50))
        .await
        .expect("list_tasks")
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, HashSet::from([parent.id, child.id]));
    let events = events_after(log, start, Topic::TaskEvents).await;
    assert_eq!(
        events.len(),
        1,
        "one task.created for one child: {events:?}"
    );
    assert_eq!(*events[0].event, created);

    let other_parent = task("alice", "Other series");
    insert(store, &other_parent).await;
    let mut other_child = next("Other series");
    other_child.parent_task_id = Some(other_parent.id);
    assert!(
        store
            .spawn_next_occurrence(
                other_parent.id,
                &other_child,
                &event(EventType::TaskCreated, &other_child)
            )
            .await
            .expect("spawn for another parent"),
        "each parent gets its own next occurrence"
    );
}

// ---------------------------------------------------------------------------------------
// Listing: a property test against the reference filter and the contract's order
// ---------------------------------------------------------------------------------------

const TITLES: &[&str] = &[
    "100% juice",
    "snake_case",
    "apple",
    "Apple",
    "APPLE pie",
    "banana",
    "Banana",
    "cherry",
    "Éclair",
    "éclair",
    "zebra",
    "Zed",
    "10 things",
    "a",
];
const DESCRIPTIONS: &[Option<&str>] = &[
    None,
    Some("buy at the market"),
    Some("Call APPLE support"),
    Some("apple cake"),
    Some(""),
];
const TAGS: &[&str] = &["home", "work", "money", "x"];

/// One generated task, before it gets an id and an owner.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    title: &'static str,
    description: Option<&'static str>,
    priority: Priority,
    tags: Vec<&'static str>,
    /// Hours after [`t0`]; few values, so ties on `due_at` are common.
    due_hours: Option<i64>,
    /// Minutes after [`t0`]; few values, so ties on `created_at` are common.
    created_minutes: i64,
    completed: bool,
}

/// What one property case stores and how it pages.
#[derive(Debug, Clone)]
pub struct Dataset {
    tasks: Vec<TaskSpec>,
    /// Tasks inserted between pages.
    arrivals: Vec<TaskSpec>,
    limit: i64,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        proptest::sample::select(TITLES),
        proptest::sample::select(DESCRIPTIONS),
        proptest::sample::select(Priority::ALL.to_vec()),
        proptest::sample::subsequence(TAGS, 0..=3),
        proptest::option::weighted(0.7, 0i64..24),
        0i64..40,
        any::<bool>(),
    )
        .prop_map(
            |(title, description, priority, tags, due_hours, created_minutes, completed)| {
                TaskSpec {
                    title,
                    description,
                    priority,
                    tags,
                    due_hours,
                    created_minutes,
                    completed,
                }
            },
        )
}

fn dataset() -> impl Strategy<Value = Dataset> {
    (
        proptest::collection::vec(task_spec(), 60..=150),
        proptest::collection::vec(task_spec(), 12),
        4i64..=9,
    )
        .prop_map(|(tasks, arrivals, limit)| Dataset {
            tasks,
            arrivals,
            limit,
        })
}

/// A fresh id whose order has nothing to do with insertion order (unlike UUIDv7), so a
/// store that forgets the `id` tie-breaker cannot pass by returning rows as inserted.
fn scrambled_id() -> Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
    // splitmix64's finalizer: a bijection, so distinct counters give distinct high halves.
    let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Uuid::from_u64_pair(z ^ (z >> 31), n)
}

fn materialize(spec: &TaskSpec, user_id: &str) -> Task {
    let created = t0() + Duration::minutes(spec.created_minutes);
    let due_at = spec.due_hours.map(|h| t0() + Duration::hours(h));
    Task {
        id: scrambled_id(),
        user_id: user_id.to_owned(),
        title: spec.title.to_owned(),
        description: spec.description.map(str::to_owned),
        completed: spec.completed,
        completed_at: spec.completed.then_some(created),
        priority: spec.priority,
        tags: spec.tags.iter().map(|t| (*t).to_owned()).collect(),
        due_at,
        remind_before_minutes: due_at.map(|_| 15),
        recurrence: None,
        parent_task_id: None,
        version: 1,
        created_at: created,
        updated_at: created,
        recurrence_anchor_day: None,
    }
}

/// The order the contract promises, written independently of any store: priority by rank,
/// `due_at` with undated tasks last in both directions, title by its lower-cased text
/// (code-point order), `created_at`; ties break on `id` in the same direction.
fn contract_order(query: &TaskQuery, a: &Task, b: &Task) -> Ordering {
    if query.sort == SortKey::DueAt {
        match (a.due_at.is_some(), b.due_at.is_some()) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
    }
    let key = match query.sort {
        SortKey::CreatedAt => a.created_at.cmp(&b.created_at),
        SortKey::DueAt => a.due_at.cmp(&b.due_at),
        SortKey::Priority => a.priority.rank().cmp(&b.priority.rank()),
        SortKey::Title => a.title.to_lowercase().cmp(&b.title.to_lowercase()),
    };
    let order = key.then_with(|| a.id.cmp(&b.id));
    if query.descending {
        order.reverse()
    } else {
        order
    }
}

/// What a complete listing must hold: `tasks` filtered by [`TaskQuery::matches`], in order.
fn reference(tasks: &[Task], query: &TaskQuery) -> Vec<Task> {
    let mut expected: Vec<Task> = tasks.iter().filter(|t| query.matches(t)).cloned().collect();
    expected.sort_by(|a, b| contract_order(query, a, b));
    expected
}

fn describe(tasks: &[Task]) -> String {
    tasks
        .iter()
        .map(|t| {
            format!(
                "  {} {:?} due={:?} created={} done={} {:?} {:?}",
                t.id,
                t.priority,
                t.due_at.map(|d| d.to_rfc3339()),
                t.created_at.to_rfc3339(),
                t.completed,
                t.title,
                t.tags
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids(tasks: &[Task]) -> Vec<Uuid> {
    tasks.iter().map(|t| t.id).collect()
}

fn failed(e: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

/// Every filter the property checks, each at page size `limit`.
fn filters(limit: i64) -> Vec<TaskQuery> {
    let base = all_tasks(limit);
    vec![
        base.clone(),
        TaskQuery {
            status: StatusFilter::Pending,
            ..base.clone()
        },
        TaskQuery {
            status: StatusFilter::Completed,
            ..base.clone()
        },
        TaskQuery {
            priority: Some(Priority::High),
            ..base.clone()
        },
        TaskQuery {
            status: StatusFilter::Pending,
            priority: Some(Priority::Low),
            ..base.clone()
        },
        TaskQuery {
            tags: vec!["home".into()],
            ..base.clone()
        },
        TaskQuery {
            tags: vec!["home".into(), "work".into()],
            ..base.clone()
        },
        TaskQuery {
            q: Some("apple".into()),
            ..base.clone()
        },
        TaskQuery {
            q: Some("an".into()),
            ..base.clone()
        },
        TaskQuery {
            q: Some("éc".into()),
            ..base.clone()
        },
        // LIKE wildcards must be matched literally.
        TaskQuery {
            q: Some("0%".into()),
            ..base.clone()
        },
        TaskQuery {
            q: Some("e_c".into()),
            ..base.clone()
        },
        TaskQuery {
            due_before: Some(t0() + Duration::hours(10)),
            ..base.clone()
        },
        TaskQuery {
            due_after: Some(t0() + Duration::hours(5)),
            ..base.clone()
        },
        TaskQuery {
            status: StatusFilter::Pending,
            tags: vec!["money".into()],
            due_after: Some(t0() + Duration::hours(3)),
            due_before: Some(t0() + Duration::hours(12)),
            ..base
        },
    ]
}

const SORTS: [SortKey; 4] = [
    SortKey::CreatedAt,
    SortKey::DueAt,
    SortKey::Priority,
    SortKey::Title,
];

/// Each of `filters` in every sort, both directions.
fn in_every_order(filters: impl IntoIterator<Item = TaskQuery>) -> Vec<TaskQuery> {
    let mut queries = Vec::new();
    for filter in filters {
        for sort in SORTS {
            for descending in [false, true] {
                queries.push(TaskQuery {
                    sort,
                    descending,
                    ..filter.clone()
                });
            }
        }
    }
    queries
}

/// Follows cursors from the first page until a page comes back without its extra row,
/// inserting one of `arrivals` (into `known` too) after each page.
async fn page_through(
    store: &dyn Store,
    user_id: &str,
    query: &TaskQuery,
    arrivals: &mut Vec<Task>,
    known: &mut Vec<Task>,
) -> Result<Vec<Task>, TestCaseError> {
    let mut query = TaskQuery {
        after: None,
        ..query.clone()
    };
    let limit = usize::try_from(query.limit).expect("a positive limit");
    let mut listed: Vec<Task> = Vec::new();
    for _ in 0..=known.len() + arrivals.len() + 1 {
        let page = store.list_tasks(user_id, &query).await.map_err(failed)?;
        prop_assert!(
            page.len() <= limit + 1,
            "a page holds at most limit + 1 rows, got {}",
            page.len()
        );
        let more = page.len() == limit + 1;
        // The same page as JSON: each task as the API renders it, the last one again
        // exactly when more remain.
        let json = store
            .list_tasks_json(user_id, &query)
            .await
            .map_err(failed)?;
        let shown: Vec<&Task> = page.iter().take(limit).collect();
        let rendered: Vec<String> = shown
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        prop_assert_eq!(
            String::from_utf8(json.items().to_vec()).unwrap(),
            rendered.join(",")
        );
        prop_assert_eq!(json.count, shown.len());
        prop_assert_eq!(
            json.last.clone(),
            more.then(|| rendered.last().cloned()).flatten()
        );
        listed.extend(page.into_iter().take(limit));
        if !more {
            return Ok(listed);
        }
        let last = listed.last().expect("a full page is not empty");
        query.after = Some(query.cursor_after(last));
        if let Some(arrival) = arrivals.pop() {
            store
                .insert_task(&arrival, &event(EventType::TaskCreated, &arrival))
                .await
                .map_err(failed)?;
            known.push(arrival);
        }
    }
    Err(TestCaseError::fail(format!(
        "paging {query:?} did not end: the cursor does not advance"
    )))
}

/// One property case: pages concatenate to the reference, with and without inserts between pages.
pub async fn listing_pages_concatenate_to_the_reference(
    store: &dyn Store,
    data: &Dataset,
) -> Result<(), TestCaseError> {
    let user_id = format!("lister-{}", Uuid::new_v4());
    let mut known: Vec<Task> = data
        .tasks
        .iter()
        .map(|spec| materialize(spec, &user_id))
        .collect();
    for t in &known {
        store
            .insert_task(t, &event(EventType::TaskCreated, t))
            .await
            .map_err(failed)?;
    }
    // Someone else's tasks, with the same titles and keys, must never show up.
    let stranger = format!("stranger-{}", Uuid::new_v4());
    for spec in data.tasks.iter().take(5) {
        let theirs = materialize(spec, &stranger);
        store
            .insert_task(&theirs, &event(EventType::TaskCreated, &theirs))
            .await
            .map_err(failed)?;
    }

    for query in in_every_order(filters(data.limit)) {
        let listed = page_through(store, &user_id, &query, &mut Vec::new(), &mut known).await?;
        let expected = reference(&known, &query);
        if ids(&listed) != ids(&expected) {
            return Err(TestCaseError::fail(format!(
                "pages of {query:?} differ from the reference\nlisted:\n{}\nexpected:\n{}",
                describe(&listed),
                describe(&expected)
            )));
        }
        prop_assert_eq!(
            listed,
            expected,
            "listed tasks must equal the stored ones field by field"
        );
    }

    // New tasks arriving between pages: keyset paging may or may not show them, but it must
    // never repeat a task nor skip one that existed before the first page.
    let arrival_filters = [
        all_tasks(data.limit),
        TaskQuery {
            status: StatusFilter::Pending,
            tags: vec!["home".into()],
            ..all_tasks(data.limit)
        },
    ];
    for query in in_every_order(arrival_filters) {
        let before = reference(&known, &query);
        let mut arrivals: Vec<Task> = data
            .arrivals
            .iter()
            .map(|spec| materialize(spec, &user_id))
            .collect();
        let listed = page_through(store, &user_id, &query, &mut arrivals, &mut known).await?;
        let listed_ids = ids(&listed);
        let unique: HashSet<Uuid> = listed_ids.iter().copied().collect();
        prop_assert_eq!(
            unique.len(),
            listed.len(),
            "a task repeated across pages of {:?}",
            query
        );
        let skipped: Vec<Task> = before
            .iter()
            .filter(|t| !unique.contains(&t.id))
            .cloned()
            .collect();
        prop_assert!(
            skipped.is_empty(),
            "paging {:?} with arrivals skipped tasks that existed before the first page:\n{}",
            query,
            describe(&skipped)
        );
        prop_assert!(
            listed
                .iter()
                .all(|t| query.matches(t) && t.user_id == user_id)
        );
        prop_assert!(
            listed
                .windows(2)
                .all(|w| contract_order(&query, &w[0], &w[1]) == Ordering::Less),
            "pages of {:?} with arrivals are out of order:\n{}",
            query,
            describe(&listed)
        );
    }
    Ok(())
}

/// Runs [`listing_pages_concatenate_to_the_reference`] on generated data sets, each under
/// its own user, all in `store`.
pub fn listing_property(rt: &tokio::runtime::Runtime, store: &dyn Store) {
    let config = ProptestConfig {
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::with_cases(16)
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&dataset(), |data| {
        rt.block_on(listing_pages_concatenate_to_the_reference(store, &data))
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------------------

fn dead_letter(consumer: &str, event_id: Uuid, position: i64, error: &str) -> DeadLetter {
    DeadLetter {
        consumer: consumer.into(),
        event_id,
        event_type: "task.completed".into(),
        position,
        payload: format!(r#"{{"id":"{event_id}","type":"task.completed","data":{{}}}}"#),
        reason: "unreadable_data".into(),
        error: error.into(),
        failed_at: t0() + Duration::seconds(position),
    }
}

/// A dead letter is kept once per consumer and event: recording it again (a redelivery)
/// counts an attempt and keeps the last failure, and another consumer's letter for the
/// same event is a row of its own.
pub async fn a_dead_letter_is_kept_once_per_consumer_and_event(store: &dyn Store) {
    assert!(
        store
            .list_dead_letters(10)
            .await
            .expect("list_dead_letters")
            .is_empty()
    );
    store
        .record_dead_letters(&[])
        .await
        .expect("recording nothing");
    let event_id = Uuid::now_v7();
    let first = dead_letter("recurring", event_id, 7, "missing field `task`");
    store
        .record_dead_letters(std::slice::from_ref(&first))
        .await
        .expect("record");
    let again = dead_letter("recurring", event_id, 9, "missing field `task` (again)");
    store
        .record_dead_letters(std::slice::from_ref(&again))
        .await
        .expect("record again");

    let kept = store
        .list_dead_letters(10)
        .await
        .expect("list_dead_letters");
    assert_eq!(kept.len(), 1, "one row per consumer and event: {kept:#?}");
    assert_eq!(kept[0].attempts, 2);
    assert_eq!(kept[0].first_failed_at, first.failed_at);
    assert_eq!(kept[0].letter, again, "the last failure is the one kept");

    // Another consumer failing on the same event, and another event, are rows of their own.
    let other_consumer = dead_letter("notification", event_id, 9, "missing field `task`");
    let other_event = dead_letter("recurring", Uuid::now_v7(), 10, "expected a string");
    store
        .record_dead_letters(&[other_consumer.clone(), other_event.clone()])
        .await
        .expect("record two");
    let kept = store
        .list_dead_letters(10)
        .await
        .expect("list_dead_letters");
    let summary: Vec<_> = kept
        .iter()
        .map(|k| (k.letter.consumer.as_str(), k.letter.event_id, k.attempts))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("recurring", event_id, 2),
            ("notification", event_id, 1),
            ("recurring", other_event.event_id, 1),
        ],
        "oldest first failure first"
    );
    assert_eq!(kept[1].letter, other_consumer);
    assert_eq!(kept[1].first_failed_at, other_consumer.failed_at);
    assert_eq!(store.list_dead_letters(1).await.expect("limit").len(), 1);
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

fn audit_entry(user_id: &str, event_type: &str, task_id: Uuid, n: i64) -> AuditEntry {
    AuditEntry {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        task_id: Some(task_id),
        user_id: user_id.to_owned(),
        occurred_at: t0() + Duration::seconds(n),
        recorded_at: t0() + Duration::seconds(n) + Duration::microseconds(1_500),
        source: "todo/api".to_owned(),
        data: json!({"user_id": user_id, "n": n, "nested": {"tags": ["a", "b"]}}),
    }
}

fn audit_query(limit: i64) -> AuditQuery {
    AuditQuery {
        task_id: None,
        event_type: None,
        limit,
        before: None,
    }
}

async fn audit(store: &dyn Store, user_id: &str, query: &AuditQuery) -> Vec<(i64, AuditEntry)> {
    store.list_audit(user_id, query).await.expect("list_audit")
}

fn entries(rows: &[(i64, AuditEntry)]) -> Vec<AuditEntry> {
    rows.iter().map(|(_, e)| e.clone()).collect()
}

/// Recording is idempotent per event id; listing is newest first, filtered and paged.
pub async fn audit_recording_skips_known_event_ids_and_lists_newest_first(store: &dyn Store) {
    let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
    let e: Vec<AuditEntry> = [
        ("task.created", t1),
        ("task.created", t2),
        ("task.updated", t1),
        ("task.completed", t1),
        ("task.updated", t2),
        ("task.deleted", t2),
    ]
    .iter()
    .zip(0..)
    .map(|((kind, task_id), n)| audit_entry("alice", kind, *task_id, n))
    .collect();
    let bobs = audit_entry("bob", "task.created", Uuid::now_v7(), 9);

    // The ids recorded, in no particular order.
    let ids = |entries: &[&AuditEntry]| entries.iter().map(|e| e.event_id).collect::<HashSet<_>>();
    assert_eq!(
        store
            .record_audit(&e[0..3])
            .await
            .expect("record")
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&e[0], &e[1], &e[2]])
    );
    let mut replayed = e[1].clone();
    replayed.data = json!({"tampered": true});
    assert_eq!(
        store
            .record_audit(&[replayed, e[3].clone(), e[4].clone(), bobs.clone()])
            .await
            .expect("record")
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&e[3], &e[4], &bobs]),
        "an event id already recorded is skipped, and not returned"
    );
    assert_eq!(
        store
            .record_audit(&[e[5].clone(), e[5].clone()])
            .await
            .expect("record")
            .into_iter()
            .collect::<HashSet<_>>(),
        ids(&[&e[5]])
    );
    assert!(store.record_audit(&[]).await.expect("record").is_empty());
    assert!(store.record_audit(&e).await.expect("record").is_empty());

    let newest_first: Vec<AuditEntry> = e.iter().rev().cloned().collect();
    let all = audit(store, "alice", &audit_query(50)).await;
    assert_eq!(
        entries(&all),
        newest_first,
        "newest first, and the first recording wins"
    );
    assert!(
        all.windows(2).all(|w| w[0].0 > w[1].0),
        "seqs must strictly decrease: {all:?}"
    );
    assert_eq!(
        entries(&audit(store, "bob", &audit_query(50)).await),
        vec![bobs]
    );

    let by_task = AuditQuery {
        task_id: Some(t1),
        ..audit_query(50)
    };
    assert_eq!(
        entries(&audit(store, "alice", &by_task).await),
        vec![e[3].clone(), e[2].clone(), e[0].clone()]
    );
    let by_type = AuditQuery {
        event_type: Some("task.updated".into()),
        ..audit_query(50)
    };
    assert_eq!(
        entries(&audit(store, "alice", &by_type).await),
        vec![e[4].clone(), e[2].clone()]
    );
    let both = AuditQuery {
        task_id: Some(t2),
        event_type: Some("task.updated".into()),
        ..audit_query(50)
    };
    assert_eq!(
        entries(&audit(store, "alice", &both).await),
        vec![e[4].clone()]
    );

    let mut paged = Vec::new();
    let mut query = audit_query(2);
    loop {
        let rows = audit(store, "alice", &query).await;
        assert!(rows.len() <= 3, "a page holds at most limit + 1 rows");
        let more = rows.len() == 3;
        paged.extend(rows.into_iter().take(2));
        if !more {
            break;
        }
        query.before = paged.last().map(|(seq, entry)| AuditPosition {
            occurred_at: entry.occurred_at,
            seq: *seq,
        });
    }
    assert_eq!(paged, all, "pages concatenate to the full list");
    let only_t1_older = AuditQuery {
        task_id: Some(t1),
        before: Some(AuditPosition {
            occurred_at: all[2].1.occurred_at,
            seq: all[2].0,
        }),
        ..audit_query(50)
    };
    assert_eq!(
        entries(&audit(store, "alice", &only_t1_older).await),
        vec![e[2].clone(), e[0].clone()]
    );
}

// ---------------------------------------------------------------------------------------
// Reminders and webhooks
// ---------------------------------------------------------------------------------------

/// Scheduling emits one event; repeats and stale plans are no-ops; newer plans move or cancel.
pub async fn a_reminder_plan_applies_once_per_task_version(store: &dyn Store, log: &dyn EventLog) {
    let task_id = Uuid::now_v7();
    let first_at = t0() + Duration::hours(1);
    let start = last_seq(log).await;

    let made = store
        .plan_reminder(
            task_id,
            "alice",
            1,
            &schedule(first_at, "Call mum"),
            t0(),
            Some(TRACEPARENT.to_owned()),
        )
        .await
        .expect("plan_reminder")
        .expect("a new reminder");
    assert!(made.announced, "a new reminder is announced");
    let expected = Reminder {
        traceparent: Some(TRACEPARENT.to_owned()),
        ..scheduled(task_id, "alice", 1, first_at, "Call mum")
    };
    assert_eq!(made.reminder, expected);
    let events = events_after(log, start, Topic::Reminders).await;
    assert_eq!(types(&events), ["reminder.scheduled"]);
    assert_eq!(events[0].event.subject, task_id.to_string());
    assert_eq!(events[0].event.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(
        events[0].event.reminder_data().expect("reminder data"),
        ReminderData {
            user_id: "alice".into(),
            task_id,
            title: "Call mum".into(),
            due_at: first_at + Duration::minutes(15),
            remind_at: first_at,
        }
    );
    assert!(events_after(log, start, Topic::TaskEvents).await.is_empty());
    let after_first = last_seq(log).await;

    assert_eq!(
        plan(store, task_id, "alice", 1, &schedule(first_at, "Call mum")).await,
        None,
        "a repeat changes nothing"
    );
    assert_eq!(
        plan(store, task_id, "alice", 2, &schedule(first_at, "Call mum")).await,
        None,
        "the same plan changes nothing"
    );
    let elsewhen = schedule(first_at + Duration::hours(5), "Call dad");
    assert_eq!(
        plan(store, task_id, "alice", 1, &elsewhen).await,
        None,
        "the same version is a repeat"
    );
    assert_eq!(
        plan(store, task_id, "alice", 0, &elsewhen).await,
        None,
        "an older version is stale"
    );
    assert_eq!(
        plan(store, task_id, "alice", 0, &ReminderPlan::Cancel).await,
        None,
        "a stale cancel is ignored"
    );
    assert_eq!(
        store
            .list_reminders("alice", &page(10))
            .await
            .expect("list_reminders"),
        vec![expected]
    );
    assert_eq!(last_seq(log).await, after_first, "no-ops append no event");

    let moved_at = t0() + Duration::hours(3);
    let moved = planned(store, task_id, "alice", 3, &schedule(moved_at, "Call mum"))
        .await
        .expect("moved");
    assert!(moved.announced, "a moved reminder is announced");
    assert_eq!(
        moved.reminder,
        scheduled(task_id, "alice", 3, moved_at, "Call mum")
    );
    let events = events_after(log, after_first, Topic::Reminders).await;
    assert_eq!(
        types(&events),
        ["reminder.scheduled"],
        "moving a reminder announces it once"
    );
    assert_eq!(
        events[0]
            .event
            .reminder_data()
            .expect("reminder data")
            .remind_at,
        moved_at
    );
    assert_eq!(
        store.next_reminder_at().await.expect("next_reminder_at"),
        Some(moved_at)
    );

    let after_move = last_seq(log).await;
    let cancelled = planned(store, task_id, "alice", 4, &ReminderPlan::Cancel)
        .await
        .expect("a cancelled reminder");
    assert!(!cancelled.announced, "a cancel announces nothing");
    let cancelled = cancelled.reminder;
    assert_eq!(cancelled.status, ReminderStatus::Cancelled);
    assert_eq!(cancelled.task_version, 4);
    let listed = store
        .list_reminders("alice", &page(10))
        .await
        .expect("list_reminders");
    assert_eq!(
        listed.iter().map(|r| r.status).collect::<Vec<_>>(),
        [ReminderStatus::Cancelled]
    );
    assert_eq!(
        last_seq(log).await,
        after_move,
        "cancelling appends no reminder.scheduled"
    );
    assert_eq!(
        store.next_reminder_at().await.expect("next_reminder_at"),
        None
    );
    assert_eq!(
        plan(store, task_id, "alice", 5, &ReminderPlan::Cancel).await,
        None,
        "cancelling twice changes nothing"
    );
    assert!(
        store
            .list_reminders("bob", &page(10))
            .await
            .expect("list_reminders")
            .is_empty()
    );
}

/// Delivery marks due reminders sent with one notification, event and webhook each, once.
pub async fn due_reminders_are_delivered_once_each(store: &dyn Store, log: &dyn EventLog) {
    let (a, b, c, d, e) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let ra = scheduled(a, "alice", 1, t0() + Duration::hours(1), "A");
    let rb = scheduled(b, "alice", 1, t0() + Duration::hours(2), "B");
    let rc = scheduled(c, "bob", 1, t0() + Duration::hours(5), "C");
    let re = scheduled(e, "alice", 1, t0() + Duration::hours(4), "E");
    // Planned in a trace: their deliveries continue it.
    let [ra, rb, rc, re] = [ra, rb, rc, re].map(|r| Reminder {
        traceparent: Some(TRACEPARENT.to_owned()),
        ..r
    });
    for r in [&ra, &rb, &rc, &re] {
        assert!(
            store
                .plan_reminder(
                    r.task_id,
                    &r.user_id,
                    1,
                    &schedule(r.remind_at, &r.title),
                    t0(),
                    r.traceparent.clone(),
                )
                .await
                .expect("plan_reminder")
                .is_some()
        );
    }
    // The earliest reminder of all, but cancelled: never delivered, never "next".
    plan(
        store,
        d,
        "alice",
        1,
        &schedule(t0() + Duration::minutes(30), "D"),
    )
    .await;
    plan(store, d, "alice", 2, &ReminderPlan::Cancel).await;
    assert_eq!(
        store.next_reminder_at().await.expect("next_reminder_at"),
        Some(ra.remind_at)
    );

    let early = store
        .deliver_due_reminders(t0() + Duration::minutes(59), 10, true)
        .await
        .expect("deliver");
    assert!(early.is_empty(), "nothing is due yet: {early:?}");

    let start = last_seq(log).await;
    let now = t0() + Duration::hours(2);
    let delivered = store
        .deliver_due_reminders(now, 10, true)
        .await
        .expect("deliver");
    assert_eq!(delivered, vec![sent(&ra), sent(&rb)]);
    let events = events_after(log, start, Topic::Reminders).await;
    assert_eq!(types(&events), ["reminder.due", "reminder.due"]);
    assert!(
        events
            .iter()
            .all(|s| s.event.traceparent.as_deref() == Some(TRACEPARENT)),
        "a delivery continues the trace that planned it"
    );
    let mut due_tasks: Vec<Uuid> = events
        .iter()
        .map(|s| s.event.reminder_data().expect("reminder data").task_id)
        .collect();
    due_tasks.sort();
    let mut ab = vec![a, b];
    ab.sort();
    assert_eq!(due_tasks, ab, "one reminder.due per delivered reminder");

    let notes = store
        .list_notifications("alice", &page(10))
        .await
        .expect("list_notifications");
    assert_eq!(
        notes.len(),
        2,
        "one notification per delivered reminder: {notes:?}"
    );
    assert!(notes[0].0 > notes[1].0, "notifications are newest first");
    for (note, r) in notes.iter().map(|(_, n)| n).zip([&rb, &ra]) {
        assert_eq!(
            (note.task_id, note.title.as_str()),
            (r.task_id, r.title.as_str())
        );
        assert_eq!(
            (note.due_at, note.remind_at, note.delivered_at),
            (r.due_at, r.remind_at, now)
        );
    }

    let hooks = claim(store, now, 10).await;
    assert_eq!(
        hooks.len(),
        2,
        "one webhook delivery per reminder.due: {hooks:?}"
    );
    let hook_events: HashSet<Uuid> = hooks.iter().map(|h| h.event_id).collect();
    assert_eq!(
        hook_events,
        events.iter().map(|s| s.event.id).collect::<HashSet<_>>()
    );
    for hook in &hooks {
        assert_eq!(hook.attempts, 0);
        let body: CloudEvent =
            serde_json::from_str(&hook.payload).expect("the payload is a CloudEvent");
        let logged = events
            .iter()
            .find(|s| s.event.id == hook.event_id)
            .expect("a logged event");
        assert_eq!(body, *logged.event, "the webhook posts the logged event");
    }

    let statuses: Vec<(Uuid, ReminderStatus)> = store
        .list_reminders("alice", &page(10))
        .await
        .expect("list_reminders")
        .iter()
        .map(|r| (r.task_id, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (e, ReminderStatus::Scheduled),
            (b, ReminderStatus::Sent),
            (a, ReminderStatus::Sent),
            (d, ReminderStatus::Cancelled)
        ],
        "reminders are listed newest remind_at first"
    );

    let seq_after_delivery = last_seq(log).await;
    assert!(
        store
            .deliver_due_reminders(now, 10, true)
            .await
            .expect("deliver")
            .is_empty(),
        "delivered once only"
    );
    assert_eq!(last_seq(log).await, seq_after_delivery);
    assert_eq!(
        store
            .list_notifications("alice", &page(10))
            .await
            .expect("list_notifications")
            .len(),
        2
    );
    assert!(
        claim(store, now, 10).await.is_empty(),
        "claimed deliveries are not handed out again while their lease lasts"
    );
    assert_eq!(
        store.next_reminder_at().await.expect("next_reminder_at"),
        Some(re.remind_at)
    );

    // A renamed task keeps its sent reminder for the same moment: not delivered again.
    let renamed = plan(store, a, "alice", 2, &schedule(ra.remind_at, "A, renamed")).await;
    assert_eq!(renamed.map(|r| r.status), Some(ReminderStatus::Sent));
    assert_eq!(
        last_seq(log).await,
        seq_after_delivery,
        "a sent reminder is not re-announced"
    );

    // Limits are honoured, earliest first, and webhook=false queues no webhook.
    let later = t0() + Duration::hours(6);
    assert_eq!(
        store
            .deliver_due_reminders(later, 1, false)
            .await
            .expect("deliver"),
        vec![sent(&re)]
    );
    assert_eq!(
        store
            .deliver_due_reminders(later, 1, false)
            .await
            .expect("deliver"),
        vec![sent(&rc)]
    );
    assert!(
        store
            .deliver_due_reminders(later, 1, false)
            .await
            .expect("deliver")
            .is_empty()
    );
    assert_eq!(
        types(&events_after(log, seq_after_delivery, Topic::Reminders).await),
        ["reminder.due", "reminder.due"]
    );
    let reclaimed: HashSet<Uuid> = claim(store, later, 10)
        .await
        .iter()
        .map(|h| h.event_id)
        .collect();
    assert_eq!(
        reclaimed, hook_events,
        "webhook=false adds no delivery, and unfinished ones come back once their lease ends"
    );
    assert_eq!(
        store
            .list_notifications("bob", &page(10))
            .await
            .expect("list_notifications")
            .len(),
        1
    );
    assert_eq!(
        store.next_reminder_at().await.expect("next_reminder_at"),
        None
    );
}

/// Reminders page by (`remind_at`, `task_id`) and notifications by sequence, newest first.
pub async fn reminder_and_notification_lists_page_newest_first(store: &dyn Store) {
    // Duplicate times and scrambled ids, so the task_id tie-breaker matters.
    let hours = [3, 1, 3, 2, 3, 1, 4];
    let mut expected: Vec<Reminder> = Vec::new();
    for (n, h) in hours.into_iter().enumerate() {
        let r = scheduled(
            scrambled_id(),
            "alice",
            1,
            t0() + Duration::hours(h),
            &format!("R{n}"),
        );
        plan(
            store,
            r.task_id,
            "alice",
            1,
            &schedule(r.remind_at, &r.title),
        )
        .await;
        expected.push(r);
    }
    plan(
        store,
        Uuid::now_v7(),
        "bob",
        1,
        &schedule(t0() + Duration::hours(2), "bob's"),
    )
    .await;
    expected.sort_by_key(|r| std::cmp::Reverse((r.remind_at, r.task_id)));

    let mut paged: Vec<Reminder> = Vec::new();
    let mut query = page(2);
    for _ in 0..=hours.len() {
        let rows = store
            .list_reminders("alice", &query)
            .await
            .expect("list_reminders");
        assert!(rows.len() <= 3, "a page holds at most limit + 1 rows");
        let more = rows.len() == 3;
        paged.extend(rows.into_iter().take(2));
        if !more {
            break;
        }
        let last = paged.last().expect("a full page is not empty");
        query.after = Some(Seek {
            key: last.remind_at.timestamp_micros(),
            id: last.task_id.to_string(),
        });
    }
    assert_eq!(
        paged, expected,
        "reminder pages concatenate to all of alice's, newest remind_at first"
    );

    let now = t0() + Duration::hours(5);
    assert_eq!(
        store
            .deliver_due_reminders(now, 100, false)
            .await
            .expect("deliver")
            .len(),
        hours.len() + 1
    );
    let all = store
        .list_notifications("alice", &page(50))
        .await
        .expect("list_notifications");
    assert_eq!(all.len(), hours.len(), "bob's notification is not alice's");
    assert!(
        all.windows(2).all(|w| w[0].0 > w[1].0),
        "notifications are newest first: {all:?}"
    );
    let mut paged = Vec::new();
    let mut query = page(2);
    for _ in 0..=hours.len() {
        let rows = store
            .list_notifications("alice", &query)
            .await
            .expect("list_notifications");
        assert!(rows.len() <= 3, "a page holds at most limit + 1 rows");
        let more = rows.len() == 3;
        paged.extend(rows.into_iter().take(2));
        if !more {
            break;
        }
        let (seq, last) = paged.last().expect("a full page is not empty");
        query.after = Some(Seek {
            key: *seq,
            id: last.task_id.to_string(),
        });
    }
    assert_eq!(
        paged, all,
        "notification pages concatenate to the full list"
    );
}

/// A claimed webhook is leased; a retried one waits for its next attempt; finished ones are gone.
pub async fn a_retried_webhook_waits_for_its_next_attempt_and_a_finished_one_is_gone(
    store: &dyn Store,
) {
    let due_at = t0() + Duration::hours(1);
    plan(
        store,
        Uuid::now_v7(),
        "alice",
        1,
        &schedule(due_at, "first"),
    )
    .await;
    plan(
        store,
        Uuid::now_v7(),
        "alice",
        1,
        &schedule(due_at, "second"),
    )
    .await;
    assert_eq!(
        store.next_webhook_at().await.expect("next_webhook_at"),
        None
    );
    assert_eq!(
        store
            .deliver_due_reminders(due_at, 10, true)
            .await
            .expect("deliver")
            .len(),
        2
    );
    assert_eq!(
        store.next_webhook_at().await.expect("next_webhook_at"),
        Some(due_at)
    );
    assert!(
        claim(store, due_at - Duration::seconds(1), 10)
            .await
            .is_empty(),
        "nothing is due before its first attempt"
    );

    let first = store
        .claim_webhooks(due_at, due_at + LEASE, 1)
        .await
        .expect("claim_webhooks");
    assert_eq!(first.len(), 1, "limit is honoured: {first:?}");
    let second = claim(store, due_at, 10).await;
    assert_eq!(
        second.len(),
        1,
        "the first delivery is leased, so only the other one is claimed: {second:?}"
    );
    let (retried, delivered) = (&first[0], &second[0]);
    assert_ne!(retried.id, delivered.id);
    assert_ne!(retried.event_id, delivered.event_id);
    assert_eq!((retried.attempts, delivered.attempts), (0, 0));
    assert_eq!(
        store.next_webhook_at().await.expect("next_webhook_at"),
        Some(due_at + LEASE)
    );
    assert!(
        claim(store, due_at + LEASE - Duration::seconds(1), 10)
            .await
            .is_empty(),
        "a leased delivery is not claimed twice"
    );

    let finished_at = due_at + Duration::seconds(10);
    let retry_at = due_at + Duration::minutes(5);
    store
        .finish_webhook(
            retried.id,
            &WebhookOutcome::Retry {
                at: retry_at,
                error: "HTTP 503".into(),
            },
            finished_at,
        )
        .await
        .expect("finish_webhook");
    store
        .finish_webhook(delivered.id, &WebhookOutcome::Delivered, finished_at)
        .await
        .expect("finish_webhook");
    assert_eq!(
        store.next_webhook_at().await.expect("next_webhook_at"),
        Some(retry_at)
    );
    assert!(
        claim(store, retry_at - Duration::seconds(1), 10)
            .await
            .is_empty(),
        "a retried delivery waits for its next attempt, and a delivered one is gone"
    );

    let again = claim(store, retry_at, 10).await;
    assert_eq!(
        again.len(),
        1,
        "the retried delivery is due at its next attempt: {again:?}"
    );
    assert_eq!(
        (again[0].id, again[0].event_id, &again[0].payload),
        (retried.id, retried.event_id, &retried.payload)
    );
    assert_eq!(again[0].attempts, 1, "the failed attempt is counted");

    store
        .finish_webhook(
            retried.id,
            &WebhookOutcome::GaveUp {
                error: "HTTP 410".into(),
            },
            retry_at,
        )
        .await
        .expect("finish_webhook");
    let far_future = t0() + Duration::days(365);
    assert!(
        claim(store, far_future, 10).await.is_empty(),
        "finished deliveries are never due again"
    );
    assert_eq!(
        store.next_webhook_at().await.expect("next_webhook_at"),
        None
    );
}

// ---------------------------------------------------------------------------------------
// Forged cursors
// ---------------------------------------------------------------------------------------

/// A cursor the domain would refuse (`SortKey::check_cursor`), handed to the store anyway:
/// a key of the wrong type for the sort, a rank or time out of any range, a tie-breaking id
/// that is no UUID. The store may answer with an error or a page, never a panic, and it
/// keeps working afterwards.
pub async fn a_forged_cursor_gives_an_error_or_a_page_never_a_panic(store: &dyn Store) {
    use todo_domain::cursor::{Cursor, CursorKey};
    let mut dated = task("alice", "Dated");
    dated.due_at = Some(t0() + Duration::hours(1));
    insert(store, &dated).await;
    insert(store, &task("alice", "Undated")).await;

    let real_id = dated.id.to_string();
    let keys = [
        CursorKey::Text("zzz".into()),
        CursorKey::Text(String::new()),
        CursorKey::Int(99),
        CursorKey::Int(-7),
        CursorKey::Int(i64::MAX),
        CursorKey::Int(i64::MIN),
        CursorKey::Int(i64::MAX - 1),
        CursorKey::Int(i64::MIN + 1),
    ];
    let ids = [
        real_id.as_str(),
        "not-a-uuid",
        "",
        "00000000-0000-0000-0000-00000000000g",
    ];
    for sort in SORTS {
        for descending in [false, true] {
            for key in &keys {
                for id in ids {
                    let query = TaskQuery {
                        sort,
                        descending,
                        after: Some(Cursor {
                            sort: sort.as_str().to_owned(),
                            descending,
                            key: key.clone(),
                            id: id.to_owned(),
                        }),
                        ..all_tasks(10)
                    };
                    if let Ok(page) = store.list_tasks("alice", &query).await {
                        assert!(page.len() <= 2, "only alice's two tasks exist: {page:?}");
                    }
                }
            }
        }
    }
    for id in ids {
        for key in [0, i64::MAX, i64::MIN] {
            let query = PageQuery {
                limit: 10,
                after: Some(Seek {
                    key,
                    id: id.to_owned(),
                }),
            };
            let _ = store.list_reminders("alice", &query).await;
            let _ = store.list_notifications("alice", &query).await;
        }
    }
    assert_eq!(
        store
            .list_tasks("alice", &all_tasks(10))
            .await
            .expect("the store still answers")
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// One test per scenario, each on its own fresh database from `$fresh_database`, an
/// `async fn() -> (String, impl Sized)` giving a `DATABASE_URL` and a guard to keep alive.
/// Scenarios that check what a write appended also get the log, to read it.
macro_rules! conformance_tests {
    (@each $fresh_database:path; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (url, _guard) = $fresh_database().await;
                let backend = todo_store::connect(&url).await.expect("connect");
                super::$scenario(&*backend.store).await;
            }
        )*
    };
    (@each_with_log $fresh_database:path; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (url, _guard) = $fresh_database().await;
                let backend = todo_store::connect(&url).await.expect("connect");
                super::$scenario(&*backend.store, &*backend.log).await;
            }
        )*
    };
    ($fresh_database:path) => {
        conformance_tests!(@each $fresh_database;
            a_task_reads_back_equal_to_what_was_inserted_and_only_for_its_owner,
            an_update_at_the_expected_version_succeeds_and_a_stale_one_conflicts,
            every_subset_of_indexed_fields_an_update_changes_keeps_every_list_right,
            a_delete_at_the_expected_version_succeeds_and_a_stale_one_conflicts,
            a_dead_letter_is_kept_once_per_consumer_and_event,
            audit_recording_skips_known_event_ids_and_lists_newest_first,
            reminder_and_notification_lists_page_newest_first,
            a_retried_webhook_waits_for_its_next_attempt_and_a_finished_one_is_gone,
            a_forged_cursor_gives_an_error_or_a_page_never_a_panic,
        );
        conformance_tests!(@each_with_log $fresh_database;
            every_task_write_appends_one_event_in_order_and_a_failed_write_appends_none,
            concurrent_writes_where_some_are_refused_commit_the_others_once,
            the_next_occurrence_is_spawned_once_per_parent,
            a_reminder_plan_applies_once_per_task_version,
            due_reminders_are_delivered_once_each,
        );

        #[test]
        fn listing_pages_concatenate_to_the_contract_order_without_repeats_or_skips() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let (url, _guard) = rt.block_on($fresh_database());
            let backend = rt.block_on(todo_store::connect(&url)).expect("connect");
            super::listing_property(&rt, &*backend.store);
        }
    };
}

mod sqlite {
    use tempfile::TempDir;

    /// A new database file in its own directory, removed when the guard drops.
    async fn fresh_database() -> (String, TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        (format!("sqlite://{}/t.db", dir.path().display()), dir)
    }

    conformance_tests!(fresh_database);
}

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg_support;

/// The same scenarios on PostgreSQL, each in a schema of its own, dropped afterwards.
#[cfg(feature = "postgres")]
mod postgres {
    use super::pg_support::fresh_database;

    conformance_tests!(fresh_database);
}
