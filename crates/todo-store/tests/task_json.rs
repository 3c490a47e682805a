//! Lists and single reads copy each task's stored JSON (`doc`); a task written before that
//! column existed has none, and its page (or itself) is rendered from the columns instead,
//! until its next write stores one. Checked on both stores by emptying the column behind
//! the store's back, as a database migrated from an earlier schema has it.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use todo_domain::event::EventType;
use todo_store::Store;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::*;

#[path = "support/postgres.rs"]
mod postgres;

/// The page as the API renders it from `list_tasks`: JSON objects joined with commas.
async fn rendered(store: &dyn Store, limit: i64) -> (String, Option<String>) {
    let rows = store.list_tasks("alice", &all_tasks(limit)).await.unwrap();
    let shown: Vec<String> = rows
        .iter()
        .take(limit as usize)
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    let more = rows.len() > limit as usize;
    (
        shown.join(","),
        more.then(|| shown.last().cloned()).flatten(),
    )
}

async fn pages_match(store: &dyn Store) {
    for limit in [1, 2, 3, 10] {
        let json = store
            .list_tasks_json("alice", &all_tasks(limit))
            .await
            .unwrap();
        let (items, last) = rendered(store, limit).await;
        assert_eq!(
            String::from_utf8(json.items().to_vec()).unwrap(),
            items,
            "limit {limit}"
        );
        assert_eq!(json.last, last, "limit {limit}");
    }
    for task in store.list_tasks("alice", &all_tasks(10)).await.unwrap() {
        // Also checks `get_task_json` against `get_task`.
        assert_eq!(get(store, "alice", task.id).await.as_ref(), Some(&task));
    }
}

/// Three tasks; `empty_docs` then clears the column, as before the migration; the pages
/// must read the same, and a write stores the task's JSON again.
async fn scenario(store: &dyn Store, empty_docs: impl AsyncFnOnce(), docs: impl AsyncFn() -> i64) {
    let mut tasks = Vec::new();
    for title in ["one", "two \"quoted\"", "three\n"] {
        let t = task("alice", title);
        insert(store, &t).await;
        tasks.push(t);
    }
    assert_eq!(docs().await, 3, "every write stores the task's JSON");
    pages_match(store).await;
    empty_docs().await;
    assert_eq!(docs().await, 0);
    pages_match(store).await;
    let changed = edited(&tasks[1], |t| t.title = "two, edited".into());
    store
        .update_task(
            &changed,
            tasks[1].version,
            &event(EventType::TaskUpdated, &changed),
        )
        .await
        .unwrap();
    assert_eq!(docs().await, 1, "an update stores the task's JSON again");
    pages_match(store).await;
}

#[tokio::test]
async fn sqlite_pages_without_stored_json_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("todo.db");
    let backend = todo_store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let raw = || rusqlite::Connection::open(&path).unwrap();
    scenario(
        &*backend.store,
        async || {
            raw().execute("UPDATE tasks SET doc = NULL", []).unwrap();
        },
        async || {
            raw()
                .query_row(
                    "SELECT count(*) FROM tasks WHERE doc IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_pages_without_stored_json_read_the_same() {
    let schema = postgres::Schema::create().await;
    let backend = todo_store::connect(&schema.url()).await.unwrap();
    let admin = postgres::admin().await;
    let table = format!("{}.tasks", schema.name);
    scenario(
        &*backend.store,
        async || {
            admin
                .execute(&format!("UPDATE {table} SET doc = NULL"), &[])
                .await
                .unwrap();
        },
        async || {
            admin
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE doc IS NOT NULL"),
                    &[],
                )
                .await
                .unwrap()
                .get(0)
        },
    )
    .await;
}

/// A page whose second row has no stored JSON, with far more bytes after it than the
/// connection holds for a stream that is not read: the page is rendered from the columns,
/// without waiting on the abandoned stream.
#[tokio::test]
async fn postgres_page_missing_json_early_is_rendered_without_hanging() {
    let schema = postgres::Schema::create().await;
    let backend = todo_store::connect(&schema.url()).await.unwrap();
    let store = &*backend.store;
    for i in 0..300 {
        let mut t = task("alice", &format!("task {i}"));
        t.description = Some("d".repeat(500));
        insert(store, &t).await;
    }
    let ordered = store.list_tasks("alice", &all_tasks(300)).await.unwrap();
    let second = ordered[1].id;
    postgres::admin()
        .await
        .execute(
            &format!("UPDATE {}.tasks SET doc = NULL WHERE id = $1", schema.name),
            &[&second],
        )
        .await
        .unwrap();
    let json = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store.list_tasks_json("alice", &all_tasks(300)),
    )
    .await
    .expect("the page was rendered within 30 s")
    .unwrap();
    let (items, _) = rendered(store, 300).await;
    assert!(json.items().len() > 150_000, "the page spans many reads");
    assert_eq!(String::from_utf8(json.items().to_vec()).unwrap(), items);
}
