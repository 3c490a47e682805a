//! PostgreSQL-only behaviour: several processes (here, several pools) on one database.

#![cfg(feature = "postgres")]

use std::collections::HashSet;

use chrono::Duration;
use todo_domain::time::{Timestamp, parse_rfc3339};
use todo_domain::{ReminderPlan, Topic};
use todo_store::postgres::PostgresStore;
use todo_store::{EventLog, Store};
use uuid::Uuid;

#[path = "support/postgres.rs"]
mod support;

#[path = "support/fixtures.rs"]
mod fixtures;

fn t0() -> Timestamp {
    parse_rfc3339("2026-11-22T10:00:00Z").expect("a timestamp")
}

/// Two `notification` processes delivering and claiming at once: every due reminder is
/// delivered once, with one notification, one `reminder.due` and one webhook delivery, and
/// every webhook delivery is claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_deliver_each_reminder_and_claim_each_webhook_exactly_once() {
    const REMINDERS: usize = 120;
    let schema = support::Schema::create().await;
    let first = PostgresStore::connect_with_pool_size(&schema.url(), 4)
        .await
        .expect("connect");
    let second = PostgresStore::connect_with_pool_size(&schema.url(), 4)
        .await
        .expect("connect again");
    let due = t0() + Duration::hours(1);
    let mut tasks = HashSet::new();
    for i in 0..REMINDERS {
        let task_id = Uuid::now_v7();
        tasks.insert(task_id);
        let plan = ReminderPlan::Schedule {
            remind_at: due - Duration::seconds(i as i64),
            due_at: due + Duration::minutes(15),
            title: format!("r{i}"),
        };
        first
            .plan_reminder(task_id, "alice", 1, &plan, t0(), None)
            .await
            .expect("plan_reminder")
            .expect("scheduled");
    }

    let deliver = |store: PostgresStore| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store
                    .deliver_due_reminders(due, 7, true)
                    .await
                    .expect("deliver_due_reminders");
                if batch.is_empty() && store.next_reminder_at().await.expect("next").is_none() {
                    return got;
                }
                got.extend(batch.into_iter().map(|r| r.task_id));
            }
        })
    };
    let (a, b) = (deliver(first.clone()), deliver(second.clone()));
    let (a, b) = (a.await.expect("first"), b.await.expect("second"));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both took part: {} and {}",
        a.len(),
        b.len()
    );
    let all: Vec<Uuid> = a.iter().chain(&b).copied().collect();
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a reminder was delivered twice");
    assert_eq!(unique, tasks, "every reminder was delivered");

    let notes = first
        .list_notifications(
            "alice",
            &todo_store::PageQuery {
                limit: 1_000,
                after: None,
            },
        )
        .await
        .expect("list_notifications");
    assert_eq!(notes.len(), REMINDERS, "one notification each");
    // Read once every committed event is readable, however long other tests on the server
    // keep a transaction open.
    fixtures::last_seq(&first).await;
    let due_events = first
        .read_events(0, &[Topic::Reminders], 10_000)
        .await
        .expect("read_events")
        .into_iter()
        .filter(|e| e.event.event_type == "reminder.due")
        .count();
    assert_eq!(due_events, REMINDERS, "one reminder.due each");

    let claim = |store: PostgresStore| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_webhooks(due, due + Duration::minutes(5), 5)
                    .await
                    .expect("claim_webhooks");
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|d| d.event_id));
            }
        })
    };
    let (a, b) = (claim(first.clone()), claim(second.clone()));
    let (a, b) = (a.await.expect("first"), b.await.expect("second"));
    let all: Vec<Uuid> = a.iter().chain(&b).copied().collect();
    let unique: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a webhook delivery was claimed twice"
    );
    assert_eq!(
        unique.len(),
        REMINDERS,
        "every webhook delivery was claimed"
    );
}

/// Two plans for one task racing from two processes, each newer version after the other:
/// the reminder ends at the newest version, and `reminder.scheduled` is appended once per
/// change, never for a plan that lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_plans_for_one_task_apply_one_after_another() {
    let schema = support::Schema::create().await;
    let first = PostgresStore::connect_with_pool_size(&schema.url(), 2)
        .await
        .expect("connect");
    let second = PostgresStore::connect_with_pool_size(&schema.url(), 2)
        .await
        .expect("connect");
    let task_id = Uuid::now_v7();
    let mut handles = Vec::new();
    for (i, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut changed = 0;
            for version in 1..=20i64 {
                let p = ReminderPlan::Schedule {
                    remind_at: t0() + Duration::minutes(version * 2 + i as i64),
                    due_at: t0() + Duration::hours(3),
                    title: "t".into(),
                };
                if store
                    .plan_reminder(task_id, "alice", version, &p, t0(), None)
                    .await
                    .expect("plan_reminder")
                    .is_some()
                {
                    changed += 1;
                }
            }
            changed
        }));
    }
    let mut changes = 0;
    for h in handles {
        changes += h.await.expect("planner");
    }
    let reminders = first
        .list_reminders(
            "alice",
            &todo_store::PageQuery {
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("list_reminders");
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].task_version, 20);
    fixtures::last_seq(&first).await;
    let scheduled = first
        .read_events(0, &[Topic::Reminders], 1_000)
        .await
        .expect("read_events")
        .len();
    assert_eq!(
        scheduled, changes,
        "one reminder.scheduled per applied change"
    );
    assert!(
        (20..=40).contains(&changes),
        "each version applied at most once per store: {changes}"
    );
}

/// A write through one store (one process) wakes the consumers of another on the same
/// schema at once (LISTEN/NOTIFY), and the event is readable when they look; a store in
/// another schema is not woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_one_process_wakes_the_consumers_of_another() {
    use todo_domain::{CloudEvent, CreateTask, EventType};
    let schema = support::Schema::create().await;
    let other_schema = support::Schema::create().await;
    let writer = PostgresStore::connect(&schema.url())
        .await
        .expect("connect");
    let reader = PostgresStore::connect(&schema.url())
        .await
        .expect("connect");
    let elsewhere = PostgresStore::connect(&other_schema.url())
        .await
        .expect("connect");
    let mut woken = reader.appended();
    let mut unrelated = elsewhere.appended();
    // The listeners connect in the background: give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    woken.borrow_and_update();
    unrelated.borrow_and_update();

    let task = CreateTask::from_json(&serde_json::json!({"title": "wake up"}))
        .expect("a task")
        .into_task(Uuid::now_v7(), "alice", todo_domain::time::now());
    let event = CloudEvent::task(EventType::TaskCreated, "api", &task, task.created_at, None);
    writer
        .insert_task(&task, &event)
        .await
        .expect("insert_task");
    tokio::time::timeout(std::time::Duration::from_secs(2), woken.changed())
        .await
        .expect("the other process is woken within 2 s")
        .expect("the signal stays open");
    let read = reader
        .read_events(0, &[Topic::TaskEvents], 10)
        .await
        .expect("read_events");
    assert_eq!(read.len(), 1);
    assert_eq!(*read[0].event, event);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !unrelated.has_changed().expect("open"),
        "a store on another schema is not woken"
    );
}

/// Two processes starting on an empty schema at once both end up with the whole schema,
/// each migration applied once; migrating again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_two_processes_start_at_once() {
    let schema = support::Schema::create().await;
    let url = schema.url();
    let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
    let (a, b) = (a.expect("first"), b.expect("second"));
    a.migrate().await.expect("migrate again");
    b.ping().await.expect("ping");
    let admin = support::admin().await;
    let applied: i64 = admin
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM {}.todo_schema_migrations",
                schema.name
            ),
            &[],
        )
        .await
        .expect("count migrations")
        .get(0);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("the migrations folder")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64;
    assert_eq!(applied, migrations, "each migration recorded once");
    let tables: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema.name],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 10, "nine tables and the migration record");
}

/// A server that cannot be reached is `Unavailable` (a 503), not a failure of the work.
#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=2")
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_unavailable(), "got {err:?}");
    // A certificate no trusted root signed (the machine's server has a self-signed one,
    // or no TLS at all) is refused by verify-full, never downgraded to plain TCP.
    let schema = support::Schema::create().await;
    let tls = format!("{}&sslmode=verify-full", schema.url());
    assert!(
        PostgresStore::connect(&tls).await.is_err(),
        "sslmode=verify-full must fail without a trusted certificate"
    );
    let err = todo_store::connect("mysql://db/todo")
        .await
        .expect_err("unknown scheme");
    assert!(
        err.to_string()
            .contains("must start with sqlite:// or postgres://"),
        "{err}"
    );
}
