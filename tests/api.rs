//! The task API and the HTTP surface, tested against the contract (`contract/API.md`):
//! every route, its success and error answers, list filters, sorts and cursors, auth,
//! problem+json errors, the OpenAPI document, health, metrics, request ids and logs.
//!
//! Every test starts its own server (they are cheap), so no test depends on another; run
//! against a deployment (`tests/split/run.sh`), each uses user names of its own instead.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use common::reply::{Reply, assert_invalid, assert_problem, error_fields, send};
use common::{TestApp, eventually, metric_sample as sample, next_event};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

fn id_set(items: &[Value]) -> BTreeSet<String> {
    ids(items).into_iter().collect()
}

fn set_of(tasks: &[&Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(task: &Value) -> String {
    task["id"].as_str().expect("task id").to_owned()
}

fn timestamp(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("timestamp string"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Signs `claims` with the test secret (HS256).
fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(common::secret().as_bytes()),
    )
    .unwrap()
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// An unsigned `alg: none` token for `sub` that would otherwise be valid.
fn unsigned_token(sub: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"sub": sub, "iat": now_secs(), "exp": now_secs() + 3600}).to_string());
    format!("{header}.{claims}.")
}

/// Every `/api` route of the contract as (method, path under `/api/{user}`), with `{id}`
/// standing for a task id.
const API_ROUTES: [(&str, &str); 10] = [
    ("POST", "/tasks"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("PUT", "/tasks/{id}"),
    ("PATCH", "/tasks/{id}/complete"),
    ("DELETE", "/tasks/{id}"),
    ("GET", "/audit"),
    ("GET", "/reminders"),
    ("GET", "/notifications"),
    ("GET", "/ws"),
];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

/// `GET /api/{user}/tasks?{query}` as a raw reply.
async fn list(app: &TestApp, user: &str, query: &str) -> Reply {
    send(app.request(Method::GET, user, &format!("/tasks?{query}"))).await
}

/// Follows cursors with `limit` per page; returns the items in order.
async fn walk(app: &TestApp, user: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/tasks?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(user, &path).await;
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit, "page larger than limit {limit}");
        items.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("pagination did not end");
}

// ---------------------------------------------------------------------------------------
// POST /api/{user_id}/tasks
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_task_answers_201_with_the_task_a_location_that_serves_it_and_an_etag() {
    let app = TestApp::spawn().await;
    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .json(&json!({"title": "Pay rent", "description": "before the 1st"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "task bodies are JSON"
    );
    let task = reply.json();
    assert!(uuid::Uuid::parse_str(task["id"].as_str().unwrap()).is_ok());
    assert_eq!(task["user_id"], app.user("alice"));
    assert_eq!(task["title"], "Pay rent");
    assert_eq!(task["description"], "before the 1st");
    assert_eq!(task["completed"], false);
    assert_eq!(task["completed_at"], Value::Null);
    assert_eq!(task["version"], 1);
    assert_eq!(task["parent_task_id"], Value::Null);
    assert_eq!(task["recurrence"], Value::Null);
    assert_eq!(task["tags"], json!([]));
    let created = timestamp(&task["created_at"]);
    assert_eq!(created, timestamp(&task["updated_at"]));
    assert!((Utc::now() - created).num_seconds().abs() < 60);

    let location = reply
        .header("location")
        .expect("Location header")
        .to_owned();
    assert!(
        location.ends_with(&format!(
            "/api/{}/tasks/{}",
            app.user("alice"),
            id_of(&task)
        )),
        "Location {location:?} must point at the task"
    );
    let url = if location.starts_with("http") {
        location.clone()
    } else {
        format!("{}{location}", app.base)
    };
    let fetched = send(app.client.get(&url).bearer_auth(app.token("alice"))).await;
    assert_eq!(fetched.status, 200, "GET Location: {}", fetched.text);
    assert_eq!(
        fetched.json(),
        task,
        "GET on Location returns the created task"
    );

    let etag = reply.header("etag").expect("ETag header on 201");
    assert_eq!(etag.trim_start_matches("W/").trim_matches('"'), "1");
    assert_eq!(
        fetched.header("etag"),
        Some(etag),
        "GET carries the same ETag"
    );
}

#[tokio::test]
async fn a_new_task_gets_medium_priority_and_a_15_minute_reminder_only_when_it_has_a_due_date() {
    let app = TestApp::spawn().await;
    let plain = app.create_task("alice", json!({"title": "no due"})).await;
    assert_eq!(plain["priority"], "medium");
    assert_eq!(plain["due_at"], Value::Null);
    assert_eq!(plain["remind_before_minutes"], Value::Null);

    let due = app
        .create_task(
            "alice",
            json!({"title": "due", "due_at": "2030-12-01T09:00:00Z"}),
        )
        .await;
    assert_eq!(due["remind_before_minutes"], 15);
    assert_eq!(
        timestamp(&due["due_at"]),
        timestamp(&json!("2030-12-01T09:00:00Z"))
    );

    let disabled = app
        .create_task(
            "alice",
            json!({"title": "quiet", "due_at": "2030-12-01T09:00:00Z", "remind_before_minutes": null}),
        )
        .await;
    assert_eq!(
        disabled["remind_before_minutes"],
        Value::Null,
        "explicit null disables reminders"
    );

    let explicit = app
        .create_task(
            "alice",
            json!({"title": "early", "due_at": "2030-12-01T09:00:00+02:00", "remind_before_minutes": 0,
                   "priority": "high", "recurrence": {"frequency": "monthly", "interval": 2}}),
        )
        .await;
    assert_eq!(explicit["remind_before_minutes"], 0);
    assert_eq!(explicit["priority"], "high");
    assert_eq!(
        explicit["recurrence"],
        json!({"frequency": "monthly", "interval": 2})
    );
    assert_eq!(
        timestamp(&explicit["due_at"]),
        timestamp(&json!("2030-12-01T07:00:00Z")),
        "offsets are honoured"
    );
    // Fetching returns what was created.
    assert_eq!(
        app.get_task("alice", &id_of(&explicit)).await.unwrap(),
        explicit
    );
}

#[tokio::test]
async fn tags_are_stored_lower_case_and_unique_and_the_title_is_trimmed() {
    let app = TestApp::spawn().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "  \t Pay rent \n ", "tags": ["Home", "home", "MONEY", "money", "HoMe"]}),
        )
        .await;
    assert_eq!(task["title"], "Pay rent");
    let tags: Vec<&str> = task["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = tags.iter().copied().collect();
    assert_eq!(unique, BTreeSet::from(["home", "money"]));
    assert_eq!(tags.len(), 2, "tags are unique: {tags:?}");
    // Ten entries are fine, and collapse when they repeat; an eleventh entry is refused
    // even when it repeats one (the document's `maxItems: 10` counts entries as sent).
    let ten: Vec<String> = (0..10).map(|i| format!("T{i}")).collect();
    let task = app
        .create_task("alice", json!({"title": "x", "tags": ten}))
        .await;
    assert_eq!(task["tags"].as_array().unwrap().len(), 10);
    let mut doubled: Vec<String> = ten[..5].to_vec();
    doubled.extend(ten[..5].iter().map(|t| t.to_lowercase()));
    let task = app
        .create_task("alice", json!({"title": "x", "tags": doubled}))
        .await;
    assert_eq!(task["tags"].as_array().unwrap().len(), 5);
    let mut eleven = ten.clone();
    eleven.push("t0".into());
    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .json(&json!({"title": "x", "tags": eleven})),
    )
    .await;
    assert_invalid(&reply, "tags");
    // A 200-character title (after trimming) is accepted.
    let long = format!("  {}  ", "é".repeat(200));
    let task = app.create_task("alice", json!({"title": long})).await;
    assert_eq!(task["title"].as_str().unwrap().chars().count(), 200);
}

#[tokio::test]
async fn invalid_fields_are_a_422_problem_naming_each_field() {
    let app = TestApp::spawn().await;
    let post = |body: Value| {
        let request = app.request(Method::POST, "alice", "/tasks").json(&body);
        async move { send(request).await }
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "title"),
        (json!({"title": null}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": 42}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (
            json!({"title": "x", "description": "d".repeat(2001)}),
            "description",
        ),
        (json!({"title": "x", "priority": "urgent"}), "priority"),
        (json!({"title": "x", "priority": "HIGH!"}), "priority"),
        (
            json!({"title": "x", "tags": ["a", "b", "c", "t".repeat(33)]}),
            "tags[3]",
        ),
        (json!({"title": "x", "tags": ["a", ""]}), "tags[1]"),
        (json!({"title": "x", "tags": ["a", 7]}), "tags[1]"),
        (json!({"title": "x", "tags": "home"}), "tags"),
        (
            json!({"title": "x", "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"title": "x", "due_at": "tomorrow"}), "due_at"),
        (json!({"title": "x", "due_at": "2030-12-01"}), "due_at"),
        (
            json!({"title": "x", "due_at": "2030-12-01T09:00:00Z", "remind_before_minutes": -1}),
            "remind_before_minutes",
        ),
        (
            json!({"title": "x", "due_at": "2030-12-01T09:00:00Z", "remind_before_minutes": "15"}),
            "remind_before_minutes",
        ),
        (
            json!({"title": "x", "due_at": "2030-12-01T09:00:00Z", "recurrence": {"frequency": "daily", "interval": 0}}),
            "recurrence.interval",
        ),
        (
            json!({"title": "x", "due_at": "2030-12-01T09:00:00Z", "recurrence": {"frequency": "daily", "interval": 366}}),
            "recurrence.interval",
        ),
        (
            json!({"title": "x", "due_at": "2030-12-01T09:00:00Z", "recurrence": {"frequency": "hourly", "interval": 1}}),
            "recurrence.frequency",
        ),
        (
            json!({"title": "x", "recurrence": {"frequency": "weekly", "interval": 1}}),
            "due_at",
        ),
    ];
    for (body, field) in cases {
        let reply = post(body.clone()).await;
        assert!(
            reply.status == 422,
            "{body} should be 422 naming {field}, got {}: {}",
            reply.status,
            reply.text
        );
        assert_invalid(&reply, field);
    }
    // Every bad field is reported at once.
    let reply = post(json!({
        "title": "",
        "priority": "urgent",
        "tags": ["ok", "ok2", "ok3", "x".repeat(40)],
        "recurrence": {"frequency": "daily", "interval": 0},
    }))
    .await;
    let fields = error_fields(&assert_problem(&reply, 422));
    for field in ["title", "priority", "tags[3]", "recurrence.interval"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    // Nothing was created by any of these.
    assert!(app.list_all("alice", "").await.is_empty());
    // The boundaries themselves are accepted.
    app.create_task(
        "alice",
        json!({"title": "x".repeat(200), "description": "d".repeat(2000),
               "tags": ["t".repeat(32)], "due_at": "2030-12-01T09:00:00Z",
               "recurrence": {"frequency": "yearly", "interval": 365}}),
    )
    .await;
    app.create_task(
        "alice",
        json!({"title": "x", "due_at": "2030-12-01T09:00:00Z",
               "recurrence": {"frequency": "daily", "interval": 1}}),
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_and_non_object_json_is_a_422() {
    let app = TestApp::spawn().await;
    for raw in [
        "{",
        "{\"title\": }",
        "not json",
        "{\"title\": \"x\",}",
        "\u{feff}{}x",
        "",
    ] {
        let reply = send(
            app.request(Method::POST, "alice", "/tasks")
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        assert_problem(&reply, 400);
    }
    for raw in ["[]", "[{\"title\": \"x\"}]", "\"x\"", "42", "null", "true"] {
        let reply = send(
            app.request(Method::POST, "alice", "/tasks")
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        let problem = assert_problem(&reply, 422);
        error_fields(&problem);
    }
    assert!(app.list_all("alice", "").await.is_empty());
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413_problem_on_post_and_put() {
    let app = TestApp::spawn().await;
    // A valid JSON body of exactly `len` bytes (the padding field is ignored).
    let body_of = |len: usize| {
        let head = r#"{"title":"big","pad":""#;
        let tail = r#""}"#;
        let pad = "a".repeat(len - head.len() - tail.len());
        let body = format!("{head}{pad}{tail}");
        assert_eq!(body.len(), len);
        body
    };
    let at_limit = send(
        app.request(Method::POST, "alice", "/tasks")
            .header("content-type", "application/json")
            .body(body_of(64 * 1024)),
    )
    .await;
    assert_eq!(
        at_limit.status, 201,
        "a body of exactly 64 KiB is not over the limit: {}",
        at_limit.text
    );
    let task = at_limit.json();

    for len in [64 * 1024 + 1, 200 * 1024] {
        let reply = send(
            app.request(Method::POST, "alice", "/tasks")
                .header("content-type", "application/json")
                .body(body_of(len)),
        )
        .await;
        assert_problem(&reply, 413);
        let reply = send(
            app.request(Method::PUT, "alice", &format!("/tasks/{}", id_of(&task)))
                .header("content-type", "application/json")
                .body(body_of(len)),
        )
        .await;
        assert_problem(&reply, 413);
    }
    assert_eq!(app.list_all("alice", "").await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// GET /api/{user_id}/tasks/{id}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_task_is_404_when_absent_not_a_uuid_or_another_users_on_every_task_route() {
    let app = TestApp::spawn().await;
    let alice = app.create_task("alice", json!({"title": "alice's"})).await;
    let alice_id = id_of(&alice);
    let got = send(app.request(Method::GET, "alice", &format!("/tasks/{alice_id}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), alice);

    let absent = uuid::Uuid::now_v7().to_string();
    for (user, id) in [
        ("alice", absent.as_str()),
        ("alice", "not-a-uuid"),
        ("alice", "123"),
        ("alice", "00000000-0000-0000-0000-00000000000g"),
        // Bob asks on his own path for Alice's task.
        ("bob", alice_id.as_str()),
    ] {
        for (verb, path, body) in [
            ("GET", format!("/tasks/{id}"), None),
            (
                "PUT",
                format!("/tasks/{id}"),
                Some(json!({"title": "hijack"})),
            ),
            ("PATCH", format!("/tasks/{id}/complete"), None),
            ("DELETE", format!("/tasks/{id}"), None),
        ] {
            let mut request = app.request(method(verb), user, &path);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let reply = send(request).await;
            assert_eq!(
                reply.status, 404,
                "{verb} {path} as {user} must be 404: {}",
                reply.text
            );
            assert_problem(&reply, 404);
        }
    }
    // Bob's attempts changed nothing.
    assert_eq!(app.get_task("alice", &alice_id).await.unwrap(), alice);
    assert!(app.list_all("bob", "").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// PUT /api/{user_id}/tasks/{id}
// ---------------------------------------------------------------------------------------

async fn put(app: &TestApp, user: &str, id: &str, body: Value) -> Reply {
    send(
        app.request(Method::PUT, user, &format!("/tasks/{id}"))
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn put_sets_present_fields_keeps_absent_ones_and_clears_nulls() {
    let app = TestApp::spawn().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "Pay rent", "description": "bank", "priority": "high",
                   "tags": ["home", "money"], "due_at": "2030-12-01T09:00:00Z",
                   "remind_before_minutes": 30,
                   "recurrence": {"frequency": "monthly", "interval": 1}}),
        )
        .await;
    let id = id_of(&task);

    let reply = put(&app, "alice", &id, json!({"title": "  Pay the rent "})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let updated = reply.json();
    assert_eq!(updated["title"], "Pay the rent");
    for kept in [
        "description",
        "priority",
        "tags",
        "due_at",
        "remind_before_minutes",
        "recurrence",
        "completed",
        "created_at",
        "id",
        "user_id",
    ] {
        assert_eq!(updated[kept], task[kept], "{kept} is kept when absent");
    }
    assert_eq!(updated["version"], 2);
    assert!(timestamp(&updated["updated_at"]) >= timestamp(&task["updated_at"]));
    assert_eq!(
        reply
            .header("etag")
            .map(|e| e.trim_start_matches("W/").trim_matches('"')),
        Some("2")
    );
    assert_eq!(app.get_task("alice", &id).await.unwrap(), updated);

    let reply = put(
        &app,
        "alice",
        &id,
        json!({"description": null, "tags": null, "priority": "low", "tags2": "ignored"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let cleared = reply.json();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["tags"], json!([]));
    assert_eq!(cleared["priority"], "low");
    assert_eq!(cleared["title"], "Pay the rent");
    assert_eq!(cleared["due_at"], task["due_at"]);
    assert_eq!(cleared["version"], 3);

    let reply = put(
        &app,
        "alice",
        &id,
        json!({"remind_before_minutes": null, "recurrence": null}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let quiet = reply.json();
    assert_eq!(quiet["remind_before_minutes"], Value::Null);
    assert_eq!(quiet["recurrence"], Value::Null);
    assert_eq!(quiet["due_at"], task["due_at"]);
    assert_eq!(quiet["version"], 4);

    let reply = put(
        &app,
        "alice",
        &id,
        json!({"due_at": null, "tags": ["Work", "WORK"], "description": "d"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let undated = reply.json();
    assert_eq!(undated["due_at"], Value::Null);
    assert_eq!(undated["tags"], json!(["work"]));
    assert_eq!(undated["description"], "d");
    assert_eq!(undated["version"], 5);

    // PUT validates like POST.
    assert_invalid(
        &put(&app, "alice", &id, json!({"title": null})).await,
        "title",
    );
    assert_invalid(
        &put(&app, "alice", &id, json!({"title": " "})).await,
        "title",
    );
    assert_invalid(
        &put(
            &app,
            "alice",
            &id,
            json!({"tags": ["a", "b", "c", "d".repeat(33)]}),
        )
        .await,
        "tags[3]",
    );
    assert_invalid(
        &put(&app, "alice", &id, json!({"priority": "urgent"})).await,
        "priority",
    );
    error_fields(&assert_problem(
        &put(&app, "alice", &id, json!([])).await,
        422,
    ));
    let reply = send(
        app.request(Method::PUT, "alice", &format!("/tasks/{id}"))
            .header("content-type", "application/json")
            .body("{\"title\": "),
    )
    .await;
    assert_problem(&reply, 400);
    assert_eq!(
        app.get_task("alice", &id).await.unwrap(),
        undated,
        "rejected PUTs change nothing"
    );
}

#[tokio::test]
async fn a_recurring_task_without_a_due_date_is_rejected_by_put() {
    let app = TestApp::spawn().await;
    let plain = app.create_task("alice", json!({"title": "plain"})).await;
    let reply = put(
        &app,
        "alice",
        &id_of(&plain),
        json!({"recurrence": {"frequency": "weekly", "interval": 1}}),
    )
    .await;
    assert_invalid(&reply, "due_at");

    let recurring = app
        .create_task(
            "alice",
            json!({"title": "weekly", "due_at": "2030-12-01T09:00:00Z",
                   "recurrence": {"frequency": "weekly", "interval": 1}}),
        )
        .await;
    let reply = put(&app, "alice", &id_of(&recurring), json!({"due_at": null})).await;
    assert_invalid(&reply, "due_at");
    let reply = put(
        &app,
        "alice",
        &id_of(&recurring),
        json!({"recurrence": {"frequency": "weekly", "interval": 400}}),
    )
    .await;
    assert_invalid(&reply, "recurrence.interval");
    assert_eq!(app.get_task("alice", &id_of(&plain)).await.unwrap(), plain);
    assert_eq!(
        app.get_task("alice", &id_of(&recurring)).await.unwrap(),
        recurring
    );
    // Both together are fine.
    let reply = put(
        &app,
        "alice",
        &id_of(&plain),
        json!({"due_at": "2030-01-01T00:00:00Z", "recurrence": {"frequency": "daily", "interval": 3}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json()["recurrence"],
        json!({"frequency": "daily", "interval": 3})
    );
}

#[tokio::test]
async fn every_change_increments_the_version_and_a_no_op_put_keeps_it() {
    let app = TestApp::spawn().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "same", "tags": ["a"], "priority": "high"}),
        )
        .await;
    let id = id_of(&task);
    for body in [
        json!({}),
        json!({"title": "same"}),
        json!({"title": "  same  ", "tags": ["A"], "priority": "high"}),
        json!({"unknown_field": 1}),
    ] {
        let reply = put(&app, "alice", &id, body.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.json(),
            task,
            "no-op PUT {body} keeps the task and version"
        );
    }
    let mut version = 1;
    for body in [
        json!({"title": "changed"}),
        json!({"priority": "low"}),
        json!({"tags": ["a", "b"]}),
        json!({"completed": true}),
    ] {
        let reply = put(&app, "alice", &id, body.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        version += 1;
        assert_eq!(reply.json()["version"], version, "after {body}");
    }
    let completed = app.complete_task("alice", &id, None).await;
    assert_eq!(completed["version"], version + 1);
    assert_eq!(
        app.get_task("alice", &id).await.unwrap()["version"],
        version + 1
    );
}

#[tokio::test]
async fn if_match_with_the_current_version_bare_or_quoted_lets_writes_through() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "v1"})).await;
    let id = id_of(&task);
    let path = format!("/tasks/{id}");

    let reply = send(
        app.request(Method::PUT, "alice", &path)
            .header("if-match", "1")
            .json(&json!({"title": "v2"})),
    )
    .await;
    assert_eq!(reply.status, 200, "bare version matches: {}", reply.text);
    assert_eq!(reply.json()["version"], 2);

    let reply = send(
        app.request(Method::PUT, "alice", &path)
            .header("if-match", "\"2\"")
            .json(&json!({"title": "v3"})),
    )
    .await;
    assert_eq!(reply.status, 200, "quoted version matches: {}", reply.text);
    assert_eq!(reply.json()["version"], 3);

    // The ETag a GET returns is a valid If-Match.
    let got = send(app.request(Method::GET, "alice", &path)).await;
    let etag = got.header("etag").expect("ETag on GET").to_owned();
    let reply = send(
        app.request(Method::PATCH, "alice", &format!("{path}/complete"))
            .header("if-match", &etag),
    )
    .await;
    assert_eq!(reply.status, 200, "ETag as If-Match: {}", reply.text);
    assert_eq!(reply.json()["version"], 4);
    assert_eq!(reply.json()["completed"], true);
    let new_etag = reply.header("etag").expect("ETag on PATCH").to_owned();
    assert_ne!(new_etag, etag, "the ETag changes with the version");

    // `*` matches any existing version.
    let reply = send(
        app.request(Method::PUT, "alice", &path)
            .header("if-match", "*")
            .json(&json!({"title": "v5"})),
    )
    .await;
    assert_eq!(reply.status, 200, "If-Match: *: {}", reply.text);
    assert_eq!(reply.json()["version"], 5);

    let reply = send(
        app.request(Method::DELETE, "alice", &path)
            .header("if-match", "5"),
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(app.get_task("alice", &id).await.is_none());
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_a_412_problem_on_put_patch_and_delete() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "v1"})).await;
    let id = id_of(&task);
    let path = format!("/tasks/{id}");
    let reply = put(&app, "alice", &id, json!({"title": "v2"})).await;
    let current = reply.json();
    assert_eq!(current["version"], 2);

    for stale in ["1", "\"1\"", "3", "\"99\"", "W/\"1\""] {
        let reply = send(
            app.request(Method::PUT, "alice", &path)
                .header("if-match", stale)
                .json(&json!({"title": "lost update"})),
        )
        .await;
        assert_problem(&reply, 412);
        let reply = send(
            app.request(Method::PUT, "alice", &path)
                .header("if-match", stale)
                .json(&json!({"title": "v2"})),
        )
        .await;
        assert_problem(&reply, 412); // even when the PUT would change nothing
        let reply = send(
            app.request(Method::PATCH, "alice", &format!("{path}/complete"))
                .header("if-match", stale),
        )
        .await;
        assert_problem(&reply, 412);
        let reply = send(
            app.request(Method::PATCH, "alice", &format!("{path}/complete"))
                .header("if-match", stale)
                .json(&json!({"completed": true})),
        )
        .await;
        assert_problem(&reply, 412);
        let reply = send(
            app.request(Method::DELETE, "alice", &path)
                .header("if-match", stale),
        )
        .await;
        assert_problem(&reply, 412);
    }
    assert_eq!(
        app.get_task("alice", &id).await.unwrap(),
        current,
        "412s change nothing"
    );
}

// ---------------------------------------------------------------------------------------
// PATCH /api/{user_id}/tasks/{id}/complete
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn patch_complete_without_a_body_toggles_and_stamps_completed_at() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "toggle"})).await;
    let id = id_of(&task);
    let done = app.complete_task("alice", &id, None).await;
    assert_eq!(done["completed"], true);
    let completed_at = timestamp(&done["completed_at"]);
    assert!((Utc::now() - completed_at).num_seconds().abs() < 60);
    assert_eq!(done["version"], 2);
    assert_eq!(app.get_task("alice", &id).await.unwrap(), done);

    let undone = app.complete_task("alice", &id, None).await;
    assert_eq!(undone["completed"], false);
    assert_eq!(undone["completed_at"], Value::Null);
    assert_eq!(undone["version"], 3);

    // An explicitly empty JSON content type with no bytes also toggles.
    let reply = send(
        app.request(Method::PATCH, "alice", &format!("/tasks/{id}/complete"))
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["completed"], true);
    assert!(reply.header("etag").is_some());
}

#[tokio::test]
async fn patch_complete_with_a_body_sets_the_state_idempotently() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "set"})).await;
    let id = id_of(&task);
    let done = app.complete_task("alice", &id, Some(true)).await;
    assert_eq!(done["completed"], true);
    assert_eq!(done["version"], 2);
    assert!(done["completed_at"].is_string());
    let again = app.complete_task("alice", &id, Some(true)).await;
    assert_eq!(
        again, done,
        "setting true again changes nothing, version kept"
    );

    let undone = app.complete_task("alice", &id, Some(false)).await;
    assert_eq!(undone["completed"], false);
    assert_eq!(undone["completed_at"], Value::Null);
    assert_eq!(undone["version"], 3);
    let again = app.complete_task("alice", &id, Some(false)).await;
    assert_eq!(again, undone);
}

#[tokio::test]
async fn patch_complete_with_a_bad_body_is_a_422_or_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "strict"})).await;
    let id = id_of(&task);
    let path = format!("/tasks/{id}/complete");
    for body in [
        json!({"completed": "yes"}),
        json!({"completed": 1}),
        json!({"completed": null}),
    ] {
        let reply = send(app.request(Method::PATCH, "alice", &path).json(&body)).await;
        assert_invalid(&reply, "completed");
    }
    for body in [json!([]), json!("true"), json!(true)] {
        let reply = send(app.request(Method::PATCH, "alice", &path).json(&body)).await;
        assert_problem(&reply, 422);
    }
    let reply = send(
        app.request(Method::PATCH, "alice", &path)
            .header("content-type", "application/json")
            .body("{\"completed\": tru"),
    )
    .await;
    assert_problem(&reply, 400);
    assert_eq!(app.get_task("alice", &id).await.unwrap(), task);
}

// ---------------------------------------------------------------------------------------
// DELETE /api/{user_id}/tasks/{id}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_answers_204_then_the_task_is_gone_and_a_second_delete_is_404() {
    let app = TestApp::spawn().await;
    let keep = app.create_task("alice", json!({"title": "keep"})).await;
    let task = app.create_task("alice", json!({"title": "bye"})).await;
    let path = format!("/tasks/{}", id_of(&task));
    let reply = send(app.request(Method::DELETE, "alice", &path)).await;
    assert_eq!(reply.status, 204);
    assert!(reply.text.is_empty(), "204 has no body");
    assert_problem(&send(app.request(Method::GET, "alice", &path)).await, 404);
    assert_problem(
        &send(app.request(Method::DELETE, "alice", &path)).await,
        404,
    );
    assert_problem(
        &put(&app, "alice", &id_of(&task), json!({"title": "back"})).await,
        404,
    );
    assert_eq!(app.list_all("alice", "").await, vec![keep]);
}

// ---------------------------------------------------------------------------------------
// GET /api/{user_id}/tasks: filters
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn list_filters_by_status_priority_every_tag_and_text_in_title_or_description() {
    let app = TestApp::spawn().await;
    let milk = app
        .create_task(
            "alice",
            json!({"title": "Buy milk", "description": "From the STORE", "priority": "high",
                   "tags": ["home", "errand"], "due_at": "2030-01-10T09:00:00Z"}),
        )
        .await;
    let mom = app
        .create_task(
            "alice",
            json!({"title": "Call mom", "priority": "low", "tags": ["family"]}),
        )
        .await;
    let rent = app
        .create_task(
            "alice",
            json!({"title": "Pay rent", "description": "bank transfer",
                   "tags": ["home", "money"], "due_at": "2030-02-01T09:00:00Z"}),
        )
        .await;
    let shake = app
        .create_task(
            "alice",
            json!({"title": "MILKSHAKE", "tags": ["errand"], "due_at": "2029-06-01T09:00:00Z"}),
        )
        .await;
    app.complete_task("alice", &id_of(&mom), None).await;
    app.complete_task("alice", &id_of(&shake), None).await;
    // Bob's look-alike task never shows up in Alice's lists.
    app.create_task(
        "bob",
        json!({"title": "Buy milk", "tags": ["home"], "priority": "high"}),
    )
    .await;

    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("", vec![&milk, &mom, &rent, &shake]),
        ("status=all", vec![&milk, &mom, &rent, &shake]),
        ("status=pending", vec![&milk, &rent]),
        ("status=completed", vec![&mom, &shake]),
        ("priority=high", vec![&milk]),
        ("priority=medium", vec![&rent, &shake]),
        ("priority=low", vec![&mom]),
        ("tag=home", vec![&milk, &rent]),
        ("tag=errand", vec![&milk, &shake]),
        ("tag=home&tag=money", vec![&rent]),
        ("tag=home&tag=errand", vec![&milk]),
        ("tag=home&tag=family", vec![]),
        ("tag=nothing", vec![]),
        ("q=milk", vec![&milk, &shake]),
        ("q=MiLk", vec![&milk, &shake]),
        ("q=store", vec![&milk]),
        ("q=TRANSFER", vec![&rent]),
        ("q=bank%20trans", vec![&rent]),
        ("q=zzz", vec![]),
        ("q=%25", vec![]),
        ("q=_", vec![]),
        ("status=pending&tag=home&q=milk", vec![&milk]),
        ("status=completed&priority=medium&tag=errand", vec![&shake]),
    ];
    for (query, expected) in cases {
        let items = app.list_all("alice", query).await;
        assert_eq!(id_set(&items), set_of(&expected), "query {query:?}");
        assert!(items.iter().all(|t| t["user_id"] == app.user("alice")));
    }
    // Items are whole tasks.
    let items = app.list_all("alice", "q=rent").await;
    assert_eq!(
        items[0],
        app.get_task("alice", &id_of(&rent)).await.unwrap()
    );
}

#[tokio::test]
async fn due_before_and_due_after_select_by_due_date_and_never_match_tasks_without_one() {
    let app = TestApp::spawn().await;
    let jan = app
        .create_task(
            "alice",
            json!({"title": "jan", "due_at": "2030-01-10T09:00:00Z"}),
        )
        .await;
    let feb = app
        .create_task(
            "alice",
            json!({"title": "feb", "due_at": "2030-02-01T09:00:00+01:00"}),
        )
        .await;
    let old = app
        .create_task(
            "alice",
            json!({"title": "old", "due_at": "2029-06-01T09:00:00Z"}),
        )
        .await;
    let _undated = app.create_task("alice", json!({"title": "undated"})).await;

    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("due_before=2030-01-15T00:00:00Z", vec![&jan, &old]),
        ("due_after=2030-01-15T00:00:00Z", vec![&feb]),
        ("due_after=2000-01-01T00:00:00Z", vec![&jan, &feb, &old]),
        ("due_before=2100-01-01T00:00:00Z", vec![&jan, &feb, &old]),
        ("due_before=2000-01-01T00:00:00Z", vec![]),
        (
            "due_after=2029-12-01T00:00:00Z&due_before=2030-01-15T00:00:00Z",
            vec![&jan],
        ),
        // Offsets count: 2030-01-10T11:00+03:00 is 08:00Z, before jan's 09:00Z.
        ("due_after=2030-01-10T11:00:00%2B03:00", vec![&jan, &feb]),
        ("due_before=2030-01-10T11:00:00%2B03:00", vec![&old]),
        (
            "due_after=2030-01-10T11:00:00%2B03:00&sort=due_at",
            vec![&jan, &feb],
        ),
    ];
    for (query, expected) in cases {
        let items = app.list_all("alice", query).await;
        assert_eq!(id_set(&items), set_of(&expected), "query {query:?}");
    }
    for bad in ["due_before=soon", "due_after=2030-01-01", "due_before=1"] {
        let field = bad.split('=').next().unwrap();
        assert_invalid(&list(&app, "alice", bad).await, field);
    }
}

// ---------------------------------------------------------------------------------------
// GET /api/{user_id}/tasks: sorting
// ---------------------------------------------------------------------------------------

fn priority_rank(task: &Value) -> i64 {
    match task["priority"].as_str().unwrap() {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        other => panic!("unknown priority {other}"),
    }
}

/// The orders a correct server may return for `sort`/`descending` over `tasks`: ties on
/// `id` (either direction, as long as it's consistent) and, for `due_at`, tasks without
/// one at either end.
fn acceptable_orders(tasks: &[Value], sort: &str, descending: bool) -> Vec<Vec<String>> {
    let mut orders = Vec::new();
    for id_desc in [false, true] {
        for nulls_first in [false, true] {
            let mut sorted: Vec<&Value> = tasks.iter().collect();
            sorted.sort_by(|a, b| {
                let primary = match sort {
                    "created_at" => {
                        let o = timestamp(&a["created_at"]).cmp(&timestamp(&b["created_at"]));
                        if descending { o.reverse() } else { o }
                    }
                    "priority" => {
                        let o = priority_rank(a).cmp(&priority_rank(b));
                        if descending { o.reverse() } else { o }
                    }
                    "title" => {
                        let o = a["title"]
                            .as_str()
                            .unwrap()
                            .to_lowercase()
                            .cmp(&b["title"].as_str().unwrap().to_lowercase());
                        if descending { o.reverse() } else { o }
                    }
                    "due_at" => match (a["due_at"].is_null(), b["due_at"].is_null()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => {
                            if nulls_first {
                                std::cmp::Ordering::Less
                            } else {
                                std::cmp::Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if nulls_first {
                                std::cmp::Ordering::Greater
                            } else {
                                std::cmp::Ordering::Less
                            }
                        }
                        (false, false) => {
                            let o = timestamp(&a["due_at"]).cmp(&timestamp(&b["due_at"]));
                            if descending { o.reverse() } else { o }
                        }
                    },
                    other => panic!("unknown sort {other}"),
                };
                let tie = a["id"].as_str().unwrap().cmp(b["id"].as_str().unwrap());
                primary.then(if id_desc { tie.reverse() } else { tie })
            });
            let order: Vec<String> = sorted.iter().map(|t| id_of(t)).collect();
            if !orders.contains(&order) {
                orders.push(order);
            }
        }
    }
    orders
}

#[tokio::test]
async fn every_sort_key_and_order_gives_the_documented_order_with_ties_broken_by_id() {
    let app = TestApp::spawn().await;
    let specs = [
        ("banana", "high", Some("2030-01-02T00:00:00Z")),
        ("Apple", "low", None),
        ("cherry", "medium", Some("2030-01-01T00:00:00Z")),
        ("apple", "high", Some("2030-01-02T00:00:00Z")),
        ("Banana", "low", Some("2030-01-03T00:00:00Z")),
        ("date", "medium", None),
        ("Elder", "low", Some("2030-01-01T00:00:00Z")),
        ("fig", "medium", Some("2029-12-31T00:00:00Z")),
        ("Zucchini", "low", None),
    ];
    let mut tasks = Vec::new();
    for (title, priority, due) in specs {
        let mut body = json!({"title": title, "priority": priority});
        if let Some(due) = due {
            body["due_at"] = json!(due);
        }
        tasks.push(app.create_task("alice", body).await);
    }
    let by_id = |order: &[String]| -> Vec<String> {
        order
            .iter()
            .map(|id| {
                tasks
                    .iter()
                    .find(|t| &id_of(t) == id)
                    .map(|t| format!("{}/{}", t["title"], t["priority"]))
                    .unwrap_or_else(|| id.clone())
            })
            .collect()
    };

    for sort in ["created_at", "due_at", "priority", "title"] {
        let asc = acceptable_orders(&tasks, sort, false);
        let desc = acceptable_orders(&tasks, sort, true);
        for (order, expected) in [("asc", &asc), ("desc", &desc)] {
            let query = format!("sort={sort}&order={order}");
            let whole = ids(&app.list_all("alice", &query).await);
            assert!(
                expected.contains(&whole),
                "sort={sort}&order={order} gave {:?}; expected one of {:?}",
                by_id(&whole),
                expected.iter().map(|o| by_id(o)).collect::<Vec<_>>()
            );
            // Paging through two at a time yields the very same order.
            let paged = ids(&walk(&app, "alice", &query, 2).await);
            assert_eq!(paged, whole, "pages of 2 for {query}");
        }
        // Without `order`, the sort still applies in one of the two directions.
        let default = ids(&app.list_all("alice", &format!("sort={sort}")).await);
        assert!(
            asc.contains(&default) || desc.contains(&default),
            "sort={sort} without order gave {:?}",
            by_id(&default)
        );
    }

    // The spelled-out checks behind the generic ones.
    let titles = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_lowercase())
            .collect()
    };
    let priorities: Vec<String> = app
        .list_all("alice", "sort=priority&order=asc")
        .await
        .iter()
        .map(|t| t["priority"].as_str().unwrap().to_owned())
        .collect();
    let mut ranked = priorities.clone();
    ranked.dedup();
    assert_eq!(
        ranked,
        vec!["low", "medium", "high"],
        "priority ranks low < medium < high, not alphabetically"
    );
    assert_eq!(
        titles(app.list_all("alice", "sort=title&order=asc").await),
        vec![
            "apple", "apple", "banana", "banana", "cherry", "date", "elder", "fig", "zucchini"
        ],
        "titles sort case-insensitively"
    );
    let by_due = app.list_all("alice", "sort=due_at&order=asc").await;
    let nulls: Vec<bool> = by_due.iter().map(|t| t["due_at"].is_null()).collect();
    assert!(
        nulls == [false, false, false, false, false, false, true, true, true]
            || nulls == [true, true, true, false, false, false, false, false, false],
        "tasks without due_at are grouped at one end: {nulls:?}"
    );
    // Sorting composes with filters.
    let pending_high = app
        .list_all("alice", "priority=high&sort=title&order=desc")
        .await;
    assert_eq!(titles(pending_high), vec!["banana", "apple"]);
}

// ---------------------------------------------------------------------------------------
// GET /api/{user_id}/tasks: limit, bad parameters, cursors
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn limit_defaults_to_50_accepts_1_to_200_and_otherwise_is_a_422_naming_limit() {
    let app = TestApp::spawn().await;
    for i in 0..51 {
        app.create_task("alice", json!({"title": format!("task {i}")}))
            .await;
    }
    let page = app.get_json("alice", "/tasks").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50, "default limit");
    assert!(page["next_cursor"].is_string());
    let page = app.get_json("alice", "/tasks?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let page = app.get_json("alice", "/tasks?limit=200").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 51);
    assert_eq!(page["next_cursor"], Value::Null);
    for bad in [
        "0",
        "201",
        "-1",
        "1000000",
        "ten",
        "1.5",
        "99999999999999999999",
    ] {
        assert_invalid(&list(&app, "alice", &format!("limit={bad}")).await, "limit");
    }
}

#[tokio::test]
async fn a_bad_sort_order_status_or_priority_is_a_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    app.create_task("alice", json!({"title": "x"})).await;
    for (query, field) in [
        ("sort=size", "sort"),
        ("sort=PRIORITY", "sort"),
        ("order=up", "order"),
        ("order=ascending", "order"),
        ("status=done", "status"),
        ("priority=urgent", "priority"),
    ] {
        assert_invalid(&list(&app, "alice", query).await, field);
    }
    // All at once: every bad parameter is named.
    let reply = list(
        &app,
        "alice",
        "sort=size&order=up&status=done&priority=urgent&limit=0",
    )
    .await;
    let fields = error_fields(&assert_problem(&reply, 422));
    for field in ["sort", "order", "status", "priority", "limit"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
}

#[tokio::test]
async fn requiring_more_tags_than_a_task_can_hold_is_a_422_naming_tag_never_a_500() {
    let app = TestApp::spawn().await;
    let tags: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let task = app
        .create_task("alice", json!({"title": "tagged", "tags": tags}))
        .await;
    let ten = tags
        .iter()
        .map(|t| format!("tag={t}"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(app.list_all("alice", &ten).await, vec![task]);
    // A repeated tag (in any case) matches once; the limit counts parameters as sent.
    let repeated = format!("{}&tag=T1", &ten[..ten.rfind("&tag=").unwrap()]);
    assert_eq!(app.list_all("alice", &repeated).await.len(), 1);
    assert_invalid(&list(&app, "alice", &format!("{ten}&tag=t0")).await, "tag");
    // Beyond what a task can hold, and far beyond (once a database error: a 500).
    for n in [11, 1000, 2000] {
        let query = (0..n)
            .map(|i| format!("tag=t{i}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_invalid(&list(&app, "alice", &query).await, "tag");
    }
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_is_a_422_naming_cursor() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.create_task(
            "alice",
            json!({"title": format!("t{i}"), "priority": "high"}),
        )
        .await;
    }
    let title_cursor = app
        .get_json("alice", "/tasks?sort=title&order=asc&limit=1")
        .await["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    // It works where it was made...
    let next = list(
        &app,
        "alice",
        &format!("sort=title&order=asc&limit=1&cursor={title_cursor}"),
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.text);
    // ...and nowhere else.
    for query in [
        format!("sort=priority&order=asc&cursor={title_cursor}"),
        format!("sort=title&order=desc&cursor={title_cursor}"),
        format!("cursor={title_cursor}"),
        "cursor=garbage!!".to_owned(),
        "cursor=%00%FF".to_owned(),
        format!("cursor={}", URL_SAFE_NO_PAD.encode("not json")),
        format!("cursor={}", URL_SAFE_NO_PAD.encode("{\"s\": 1}")),
        format!("cursor={}", "A".repeat(5000)),
    ] {
        assert_invalid(&list(&app, "alice", &query).await, "cursor");
    }
    // Forged cursors for the right sort whose key or id no page of that sort would hold.
    let id = "01a230b6-6449-74bc-9d70-3eacf623c64c";
    for (query, forged) in [
        (
            "sort=title&order=asc",
            json!({"s": "title", "d": false, "k": 5, "i": id}),
        ),
        (
            "sort=created_at",
            json!({"s": "created_at", "d": true, "k": "text", "i": id}),
        ),
        (
            "sort=priority",
            json!({"s": "priority", "d": true, "k": 7, "i": id}),
        ),
        (
            "sort=due_at&order=asc",
            json!({"s": "due_at", "d": false, "k": 1, "i": "not-a-uuid"}),
        ),
    ] {
        let cursor = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert_invalid(
            &list(&app, "alice", &format!("{query}&cursor={cursor}")).await,
            "cursor",
        );
    }
    let forged = json!({"s": "reminders", "d": true, "k": 1, "i": "x'; --"});
    let reply = send(app.request(
        Method::GET,
        "alice",
        &format!(
            "/reminders?cursor={}",
            URL_SAFE_NO_PAD.encode(forged.to_string())
        ),
    ))
    .await;
    assert_invalid(&reply, "cursor");

    // A cursor from another list (the audit log) is refused by the task list.
    let audit_cursor = eventually(Duration::from_secs(10), || async {
        let page = app.get_json("alice", "/audit?limit=1").await;
        page["next_cursor"].as_str().map(str::to_owned)
    })
    .await
    .expect("the audit log pages within 10 s");
    assert_invalid(
        &list(&app, "alice", &format!("cursor={audit_cursor}")).await,
        "cursor",
    );
}

#[tokio::test]
async fn next_cursor_is_null_exactly_when_nothing_is_left_even_when_the_last_page_is_full() {
    let app = TestApp::spawn().await;
    let page = app.get_json("alice", "/tasks").await;
    assert_eq!(page, json!({"items": [], "next_cursor": null}));
    for i in 0..4 {
        app.create_task("alice", json!({"title": format!("t{i}")}))
            .await;
    }
    for sort in ["created_at", "title", "priority", "due_at"] {
        for limit in 1..=5usize {
            let mut seen = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/tasks?sort={sort}&limit={limit}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let page = app.get_json("alice", &path).await;
                let n = page["items"].as_array().unwrap().len();
                seen += n;
                let left = 4 - seen;
                if left == 0 {
                    assert_eq!(
                        page["next_cursor"],
                        Value::Null,
                        "sort={sort} limit={limit}: nothing left, so no cursor"
                    );
                    break;
                }
                assert_eq!(n, limit, "a page before the last is full");
                cursor = Some(
                    page["next_cursor"]
                        .as_str()
                        .unwrap_or_else(|| {
                            panic!("sort={sort} limit={limit}: {left} left but no cursor")
                        })
                        .to_owned(),
                );
            }
        }
    }
    let page = app.get_json("alice", "/tasks?status=completed").await;
    assert_eq!(page["next_cursor"], Value::Null);
}

#[tokio::test]
async fn pagination_never_skips_or_repeats_while_tasks_are_inserted_between_pages() {
    let app = TestApp::spawn().await;
    let priorities = ["low", "medium", "high"];
    let mut n = 0usize;
    let mut make = |app_count: usize| {
        n += 1;
        let mut body = json!({
            "title": format!("{} task {}", ["b", "A", "c", "a", "B"][n % 5], n % 3),
            "priority": priorities[(n * 7 + app_count) % 3],
        });
        if !n.is_multiple_of(4) {
            body["due_at"] = json!(format!("2030-01-{:02}T00:00:00Z", 1 + n % 5));
        }
        body
    };
    for (round, query) in [
        "",
        "sort=created_at&order=asc",
        "sort=created_at&order=desc",
        "sort=title&order=asc",
        "sort=title&order=desc",
        "sort=priority&order=asc",
        "sort=priority&order=desc",
        "sort=due_at&order=asc",
        "sort=due_at&order=desc",
    ]
    .into_iter()
    .enumerate()
    {
        // A user per query keeps the walks short.
        let user = format!("pager{round}");
        for _ in 0..10 {
            app.create_task(&user, make(0)).await;
        }
        let before = id_set(&app.list_all(&user, "").await);
        assert_eq!(before.len(), 10);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/tasks?limit=3&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = app.get_json(&user, &path).await;
            seen.extend(ids(page["items"].as_array().unwrap()));
            // Others keep writing between our pages.
            for _ in 0..2 {
                app.create_task(&user, make(seen.len())).await;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(seen.len() < 1000, "pagination must end");
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{query:?}: a task was repeated");
        let seen: BTreeSet<String> = seen.into_iter().collect();
        let skipped: Vec<&String> = before.difference(&seen).collect();
        assert!(skipped.is_empty(), "{query:?}: skipped {skipped:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------

fn route_path(path: &str, id: &str) -> String {
    path.replace("{id}", id)
}

#[tokio::test]
async fn every_api_route_without_a_valid_token_is_a_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "mine"})).await;
    let id = id_of(&task);
    let expired = sign(&json!({"sub": "alice", "iat": now_secs() - 7200, "exp": now_secs() - 300}));
    let no_exp = sign(&json!({"sub": "alice", "iat": now_secs()}));
    let wrong_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "exp": now_secs() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-0123456789abcdef0123456789"),
    )
    .unwrap();
    let valid = app.token("alice");
    let tampered = {
        // Same header and signature, claims swapped for another user's.
        let parts: Vec<&str> = valid.split('.').collect();
        let claims =
            URL_SAFE_NO_PAD.encode(json!({"sub": "bob", "exp": now_secs() + 3600}).to_string());
        format!("{}.{claims}.{}", parts[0], parts[2])
    };
    let authorizations: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer garbage".into()),
        Some("Bearer a.b.c".into()),
        Some(format!("Basic {}", URL_SAFE_NO_PAD.encode("alice:pw"))),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {no_exp}")),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {}", unsigned_token("alice"))),
        Some(format!("Bearer {tampered}")),
        Some(valid.clone()), // the token without the scheme
    ];
    for (verb, path) in API_ROUTES {
        for authorization in &authorizations {
            let mut request = app
                .client
                .request(method(verb), app.url("alice", &route_path(path, &id)));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            if verb == "POST" || verb == "PUT" {
                request = request.json(&json!({"title": "sneaky"}));
            }
            let reply = send(request).await;
            assert_eq!(
                reply.status, 401,
                "{verb} {path} with {authorization:?}: {}",
                reply.text
            );
            assert_problem(&reply, 401);
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "401 carries WWW-Authenticate: Bearer, got {challenge:?}"
            );
        }
    }
    // `?access_token=` is for the WebSocket only.
    let reply = send(app.client.get(format!(
        "{}?access_token={valid}",
        app.url("alice", "/tasks")
    )))
    .await;
    assert_problem(&reply, 401);
    // Nothing changed.
    assert_eq!(app.list_all("alice", "").await, vec![task]);
}

#[tokio::test]
async fn a_token_that_expired_beyond_the_leeway_is_refused_but_a_fresh_one_works() {
    let app = TestApp::spawn().await;
    let fresh = sign(&json!({"sub": app.user("alice"), "iat": now_secs(), "exp": now_secs() + 60}));
    let reply = send(
        app.client
            .get(app.url("alice", "/tasks"))
            .bearer_auth(&fresh),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // Well past any reasonable clock-skew leeway (30 s).
    let expired =
        sign(&json!({"sub": app.user("alice"), "iat": now_secs() - 600, "exp": now_secs() - 120}));
    let reply = send(
        app.client
            .get(app.url("alice", "/tasks"))
            .bearer_auth(&expired),
    )
    .await;
    assert_problem(&reply, 401);
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer"))
    );
}

#[tokio::test]
async fn a_token_for_alice_on_bobs_path_is_a_403_on_every_api_route() {
    let app = TestApp::spawn().await;
    let bobs = app.create_task("bob", json!({"title": "bob's"})).await;
    let id = id_of(&bobs);
    for (verb, path) in API_ROUTES {
        let mut request = app
            .client
            .request(method(verb), app.url("bob", &route_path(path, &id)))
            .bearer_auth(app.token("alice"));
        if verb == "POST" || verb == "PUT" {
            request = request.json(&json!({"title": "alice was here"}));
        }
        let reply = send(request).await;
        assert_eq!(reply.status, 403, "{verb} {path}: {}", reply.text);
        assert_problem(&reply, 403);
    }
    assert_eq!(app.list_all("bob", "").await, vec![bobs]);
}

#[tokio::test]
async fn a_websocket_handshake_with_a_bad_token_is_refused_with_401_before_the_upgrade() {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn().await;
    let expired = sign(&json!({"sub": "alice", "exp": now_secs() - 300}));
    let cases: Vec<(String, Option<String>, u16)> = vec![
        (format!("ws://{}/api/alice/ws", app.addr), None, 401),
        (
            format!("ws://{}/api/alice/ws", app.addr),
            Some("Bearer garbage".into()),
            401,
        ),
        (
            format!("ws://{}/api/alice/ws", app.addr),
            Some(format!("Bearer {expired}")),
            401,
        ),
        (
            format!("ws://{}/api/alice/ws", app.addr),
            Some(format!("Bearer {}", unsigned_token("alice"))),
            401,
        ),
        (
            format!("ws://{}/api/alice/ws?access_token=garbage", app.addr),
            None,
            401,
        ),
        (
            format!("ws://{}/api/bob/ws", app.addr),
            Some(format!("Bearer {}", app.token("alice"))),
            403,
        ),
        (
            format!(
                "ws://{}/api/bob/ws?access_token={}",
                app.addr,
                app.token("alice")
            ),
            None,
            403,
        ),
    ];
    for (url, authorization, status) in cases {
        let mut request = url.as_str().into_client_request().unwrap();
        if let Some(value) = &authorization {
            request
                .headers_mut()
                .insert("authorization", value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => panic!("{url} with {authorization:?} was upgraded"),
            Err(Error::Http(response)) => {
                assert_eq!(
                    response.status().as_u16(),
                    status,
                    "{url} with {authorization:?}"
                );
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(content_type.starts_with("application/problem+json"));
                if status == 401 {
                    assert!(
                        response
                            .headers()
                            .get("www-authenticate")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|c| c.starts_with("Bearer"))
                    );
                }
            }
            Err(other) => panic!("{url}: expected an HTTP refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_websocket_accepts_the_token_as_an_access_token_query_parameter() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let url = format!(
        "ws://{}/api/{}/ws?access_token={}",
        app.addr,
        app.user("alice"),
        app.token("alice")
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgrade with ?access_token=");
    assert_eq!(response.status(), 101);
    let task = app.create_task("alice", json!({"title": "pushed"})).await;
    let event = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("an event on the query-authenticated socket");
    assert_eq!(event["data"]["task"]["id"], task["id"]);
    // The header form works too (the harness uses it).
    let _ws = app.connect_ws("alice").await;
}

// ---------------------------------------------------------------------------------------
// Errors from the router
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "x"})).await;
    for path in [
        "/nope".to_owned(),
        "/api".to_owned(),
        "/api/alice".to_owned(),
        "/api/alice/nope".to_owned(),
        "/api/alice/tasks/".to_owned(),
        format!("/api/alice/tasks/{}/nope", id_of(&task)),
        format!("/api/alice/tasks/{}/complete/now", id_of(&task)),
        "/healthz/deep".to_owned(),
    ] {
        for authorized in [false, true] {
            let mut request = app.client.get(format!("{}{path}", app.base));
            if authorized {
                request = request.bearer_auth(app.token("alice"));
            }
            let reply = send(request).await;
            assert_eq!(reply.status, 404, "GET {path}: {}", reply.text);
            assert_problem(&reply, 404);
        }
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_an_allow_header() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "x"})).await;
    let id = id_of(&task);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("DELETE", "/api/alice/tasks".into(), vec!["GET", "POST"]),
        ("PUT", "/api/alice/tasks".into(), vec!["GET", "POST"]),
        (
            "POST",
            format!("/api/alice/tasks/{id}"),
            vec!["GET", "PUT", "DELETE"],
        ),
        (
            "PATCH",
            format!("/api/alice/tasks/{id}"),
            vec!["GET", "PUT", "DELETE"],
        ),
        (
            "GET",
            format!("/api/alice/tasks/{id}/complete"),
            vec!["PATCH"],
        ),
        (
            "POST",
            format!("/api/alice/tasks/{id}/complete"),
            vec!["PATCH"],
        ),
        ("POST", "/api/alice/audit".into(), vec!["GET"]),
        ("DELETE", "/api/alice/reminders".into(), vec!["GET"]),
        ("PUT", "/api/alice/notifications".into(), vec!["GET"]),
        ("POST", "/api/alice/ws".into(), vec!["GET"]),
        ("POST", "/healthz".into(), vec!["GET"]),
        ("DELETE", "/readyz".into(), vec!["GET"]),
        ("POST", "/metrics".into(), vec!["GET"]),
        ("PUT", "/openapi.json".into(), vec!["GET"]),
    ];
    for (verb, path, allowed) in cases {
        let reply = send(
            app.client
                .request(method(verb), format!("{}{path}", app.base))
                .bearer_auth(app.token("alice")),
        )
        .await;
        assert_eq!(reply.status, 405, "{verb} {path}: {}", reply.text);
        assert_problem(&reply, 405);
        let allow: BTreeSet<String> = reply
            .header("allow")
            .unwrap_or_else(|| panic!("405 for {verb} {path} carries Allow"))
            .split(',')
            .map(|m| m.trim().to_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let expected: BTreeSet<String> = allowed.iter().map(|m| m.to_string()).collect();
        let extra: BTreeSet<&String> = allow
            .difference(&expected)
            .filter(|m| *m != "HEAD")
            .collect();
        assert!(
            expected.is_subset(&allow) && extra.is_empty(),
            "{verb} {path}: Allow {allow:?}, expected {expected:?}"
        );
    }
    // The wrong method changed nothing.
    assert_eq!(app.get_task("alice", &id).await.unwrap(), task);
}

// ---------------------------------------------------------------------------------------
// No 500 for bad input
// ---------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn random_scalar(rng: &mut Rng) -> Value {
    let choices = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1),
        json!(365),
        json!(366),
        json!(525_601),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e308),
        json!(-0.5),
        json!(""),
        json!(" "),
        json!("x"),
        json!("high"),
        json!("daily"),
        json!("2030-12-01T09:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
        json!("0000-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59-23:59"),
        json!("0000-01-01T00:00:00+23:59"),
        json!("2030-02-30T00:00:00Z"),
        json!("2030-12-01T09:00:00.123456789Z"),
        json!("\u{0}\u{7f}\u{fffd}"),
        json!("💩".repeat(50)),
        json!("x".repeat(3000)),
        json!("'; DROP TABLE tasks; --"),
        json!("%_\\"),
        json!([]),
        json!({}),
        json!(["a", "A", 1, null]),
        json!({"frequency": "monthly", "interval": 1}),
        json!({"frequency": "yearly", "interval": 365}),
        json!({"frequency": null, "interval": "x"}),
    ];
    rng.pick(&choices).clone()
}

fn random_body(rng: &mut Rng) -> (Option<String>, Vec<u8>) {
    const FIELDS: [&str; 11] = [
        "title",
        "description",
        "priority",
        "tags",
        "due_at",
        "remind_before_minutes",
        "recurrence",
        "completed",
        "version",
        "id",
        "user_id",
    ];
    let json_type = Some("application/json".to_owned());
    match rng.below(10) {
        0 => (None, Vec::new()),
        1 => {
            let garbage: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            (json_type, garbage)
        }
        2 => {
            let depth = 1 + rng.below(3000);
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            (json_type, nested.into_bytes())
        }
        3 => (json_type, b"{\"title\": \"unterminated".to_vec()),
        4 => {
            let odd = rng.pick(&[
                "text/plain",
                "application/xml",
                "",
                "application/json; charset=latin1",
            ]);
            (Some((*odd).to_owned()), br#"{"title": "typed"}"#.to_vec())
        }
        5 => (json_type, random_scalar(rng).to_string().into_bytes()),
        _ => {
            let mut body = serde_json::Map::new();
            if rng.chance(70) {
                body.insert("title".into(), json!("fuzz"));
            }
            for _ in 0..rng.below(6) {
                let field = *rng.pick(&FIELDS);
                body.insert(field.to_owned(), random_scalar(rng));
            }
            if rng.chance(20) {
                let tags: Vec<Value> = (0..rng.below(15)).map(|_| random_scalar(rng)).collect();
                body.insert("tags".into(), Value::Array(tags));
            }
            if rng.chance(15) {
                body.insert(
                    "recurrence".into(),
                    json!({"frequency": random_scalar(rng), "interval": random_scalar(rng)}),
                );
            }
            (json_type, Value::Object(body).to_string().into_bytes())
        }
    }
}

fn random_query(rng: &mut Rng) -> String {
    const KEYS: [&str; 15] = [
        "status",
        "priority",
        "tag",
        "q",
        "due_before",
        "due_after",
        "sort",
        "order",
        "limit",
        "cursor",
        "task_id",
        "event_type",
        "access_token",
        "unknown",
        "",
    ];
    const VALUES: [&str; 30] = [
        "all",
        "pending",
        "completed",
        "high",
        "low",
        "home",
        "asc",
        "desc",
        "created_at",
        "due_at",
        "priority",
        "title",
        "0",
        "1",
        "200",
        "201",
        "-1",
        "9223372036854775808",
        "2030-12-01T09:00:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "%FF%FE",
        "%",
        "%zz",
        "a+b",
        "%00",
        "eyJzIjoiY3JlYXRlZF9hdCIsImQiOnRydWUsImsiOiJ4IiwiaSI6MX0",
        "eyJzIjoidGl0bGUiLCJkIjpmYWxzZSwiayI6OTk5OTk5OTk5OTk5OTk5OTk5OSwiaSI6IngifQ",
        "task.created",
        "",
    ];
    let mut parts = Vec::new();
    for _ in 0..rng.below(6) {
        let key = *rng.pick(&KEYS);
        let value = if rng.chance(10) {
            "x".repeat(rng.below(5000))
        } else {
            (*rng.pick(&VALUES)).to_owned()
        };
        parts.push(if rng.chance(5) {
            key.to_owned()
        } else {
            format!("{key}={value}")
        });
    }
    if rng.chance(5) {
        parts.push("&&==&".into());
    }
    if rng.chance(3) {
        // Many repeated filters (each one a SQL clause).
        let n = 1 + rng.below(1500);
        parts.extend((0..n).map(|i| format!("tag=t{i}")));
    }
    parts.join("&")
}

#[tokio::test]
async fn bad_input_of_any_kind_never_gets_a_500() {
    let app = TestApp::spawn().await;
    let task = app
        .create_task(
            "alice",
            json!({"title": "target", "due_at": "2030-12-01T09:00:00Z",
                   "recurrence": {"frequency": "monthly", "interval": 1}}),
        )
        .await;
    let real_id = id_of(&task);
    let seed: u64 = std::env::var("API_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let mut rng = Rng(seed);
    let ids = [
        real_id.clone(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::nil().to_string(),
        "not-a-uuid".into(),
        "%00".into(),
        "%FF%FE".into(),
        "..".into(),
        "%2e%2e%2f".into(),
        "💩".into(),
        "x".repeat(3000),
        "1".into(),
        "%20".into(),
    ];
    let users = ["alice", "alice", "alice", "bob", "%00", "a%2Fb", "ALICE"];
    let templates = [
        "/api/{user}/tasks",
        "/api/{user}/tasks/{id}",
        "/api/{user}/tasks/{id}/complete",
        "/api/{user}/audit",
        "/api/{user}/reminders",
        "/api/{user}/notifications",
        "/api/{user}/ws",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/api/{user}/tasks/{id}/{id}",
    ];
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
    let if_matches: [&[u8]; 10] = [
        b"garbage",
        b"\"\"",
        b"*",
        b"W/\"1\"",
        b"99999999999999999999",
        b"-1",
        b"1, 2, x",
        b"\"1",
        b",,,",
        b"\xff\xfe",
    ];
    for round in 0..400 {
        let verb = *rng.pick(&methods);
        let user = *rng.pick(&users);
        let id = rng.pick(&ids).clone();
        let mut url = format!(
            "{}{}",
            app.base,
            rng.pick(&templates)
                .replace("{user}", user)
                .replace("{id}", &id)
        );
        if rng.chance(60) {
            url.push('?');
            url.push_str(&random_query(&mut rng));
        }
        let mut request = app.client.request(method(verb), &url);
        if rng.chance(90) {
            let token = if user == "bob" && rng.chance(50) {
                app.token("bob")
            } else {
                app.token("alice")
            };
            request = request.bearer_auth(token);
        } else {
            request = request.header(
                "authorization",
                *rng.pick(&["Bearer", "Bearer x.y.z", "bearer  ", "Token abc"]),
            );
        }
        if rng.chance(30) {
            let value: &[u8] = rng.pick::<&[u8]>(&if_matches);
            request = request.header(
                "if-match",
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        if rng.chance(15) {
            let long = [b'r'; 500];
            let request_ids: [&[u8]; 5] = [b"\xff\xfe", b"a b c", &long, b"", b"ok-123"];
            request = request.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(rng.pick::<&[u8]>(&request_ids)).unwrap(),
            );
        }
        if rng.chance(10) {
            request = request.header(
                "traceparent",
                *rng.pick(&[
                    "garbage",
                    "00-00000000000000000000000000000000-0000000000000000-00",
                    "ff-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff",
                ]),
            );
        }
        let (content_type, body) = random_body(&mut rng);
        let described_body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if !body.is_empty() || rng.chance(50) {
            request = request.body(body);
        }
        let reply = send(request).await;
        assert!(
            reply.status < 500,
            "round {round} (seed {seed:#x}): {verb} {url} with body {described_body:?} got {}: {}",
            reply.status,
            reply.text
        );
        if reply.status >= 400 && verb != "HEAD" {
            let content_type = reply.header("content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/problem+json"),
                "round {round}: {verb} {url} got a {} that is not problem+json ({content_type:?}): {}",
                reply.status,
                reply.text
            );
            assert_problem(&reply, reply.status);
        }
    }
    // The server is still healthy and serving.
    let health = send(app.client.get(format!("{}/healthz", app.base))).await;
    assert_eq!(health.status, 200);
    app.wait_ready().await;
    app.get_json("alice", "/tasks?limit=1").await;
}

// ---------------------------------------------------------------------------------------
// /openapi.json
// ---------------------------------------------------------------------------------------

/// Every (path, method) the contract says the all-in-one server serves.
fn contract_operations() -> BTreeSet<(String, String)> {
    let mut ops: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|(verb, path)| (format!("/api/{{user_id}}{path}"), verb.to_lowercase()))
        .collect();
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        ops.insert((path.to_owned(), "get".to_owned()));
    }
    ops
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_exactly_the_routes_the_server_serves() {
    let app = TestApp::spawn().await;
    app.wait_ready().await;
    let reply = send(app.client.get(format!("{}/openapi.json", app.base))).await;
    assert_eq!(reply.status, 200, "no auth needed: {}", reply.text);
    let doc = reply.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi version: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                documented.insert((path.clone(), key.clone()));
            }
        }
    }
    assert_eq!(documented, contract_operations());

    // Each documented operation is served: never a 404 from the router nor a 405.
    for (path, verb) in &documented {
        let task = app.create_task("alice", json!({"title": "probe"})).await;
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{user_id}", "alice")
                .replace("{id}", &id_of(&task))
        );
        let mut request = app
            .client
            .request(method(&verb.to_uppercase()), &url)
            .bearer_auth(app.token("alice"));
        if verb == "post" || verb == "put" {
            request = request.json(&json!({"title": "probe"}));
        }
        let reply = send(request).await;
        assert!(
            reply.status != 404 && reply.status != 405 && reply.status < 500,
            "{verb} {path} is documented but answered {}: {}",
            reply.status,
            reply.text
        );
    }
    // And on documented paths, the undocumented methods are not served.
    let paths: BTreeSet<&String> = documented.iter().map(|(p, _)| p).collect();
    let task = app.create_task("alice", json!({"title": "probe"})).await;
    for path in paths {
        for verb in ["get", "post", "put", "patch", "delete"] {
            if documented.contains(&(path.clone(), verb.to_owned())) {
                continue;
            }
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{user_id}", "alice")
                    .replace("{id}", &id_of(&task))
            );
            let reply = send(
                app.client
                    .request(method(&verb.to_uppercase()), &url)
                    .bearer_auth(app.token("alice")),
            )
            .await;
            assert_eq!(
                reply.status, 405,
                "{verb} {path} is not documented, so it must not be served"
            );
        }
    }
}

/// In a split deployment the process running `api` serves the document, and clients read it
/// through the front door that routes the other services' paths elsewhere.
#[tokio::test]
async fn a_process_running_only_api_documents_the_routes_of_every_service() {
    let app = TestApp::spawn_with(common::Options::default().env("TODO_SERVICES", "api")).await;
    app.wait_ready().await;
    let doc = send(app.client.get(format!("{}/openapi.json", app.base)))
        .await
        .json();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| !matches!(k.as_str(), "parameters" | "summary" | "description"))
                .map(move |verb| (path.clone(), verb.clone()))
        })
        .collect();
    assert_eq!(documented, contract_operations());
    // The process itself serves only its own routes.
    let audit = send(app.request(Method::GET, "alice", "/audit")).await;
    assert_problem(&audit, 404);
}

// ---------------------------------------------------------------------------------------
// Health, readiness, metrics
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_token() {
    let app = TestApp::spawn().await;
    let health = send(app.client.get(format!("{}/healthz", app.base))).await;
    assert_eq!(health.status, 200, "{}", health.text);
    app.wait_ready().await;
    let ready = send(app.client.get(format!("{}/readyz", app.base))).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_with_a_latency_histogram() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "counted"})).await;
    for _ in 0..3 {
        app.get_json("alice", "/tasks").await;
    }
    app.get_task("alice", &id_of(&task)).await.unwrap();
    assert_problem(&list(&app, "alice", "limit=0").await, 422);

    let text = eventually(Duration::from_secs(30), || async {
        let reply = send(app.client.get(format!("{}/metrics", app.base))).await;
        assert_eq!(reply.status, 200, "metrics need no token");
        let ok = sample(
            &reply.text,
            "todo_http_requests_total",
            &[
                "service=\"api\"",
                "route=\"/api/{user_id}/tasks\"",
                "method=\"GET\"",
                "status_class=\"2xx\"",
            ],
        )
        .is_some_and(|v| v >= 3.0);
        ok.then_some(reply.text)
    })
    .await
    .expect("todo_http_requests_total for GET /api/{user_id}/tasks within 30 s");

    assert!(
        sample(
            &text,
            "todo_http_requests_total",
            &[
                "route=\"/api/{user_id}/tasks\"",
                "method=\"POST\"",
                "status_class=\"2xx\""
            ]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        sample(
            &text,
            "todo_http_requests_total",
            &["route=\"/api/{user_id}/tasks\"", "status_class=\"4xx\""]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        sample(
            &text,
            "todo_http_requests_total",
            &["route=\"/api/{user_id}/tasks/{id}\"", "method=\"GET\""]
        )
        .is_some_and(|v| v >= 1.0)
    );
    assert!(
        !text.contains("/api/alice") && !text.contains(&id_of(&task)),
        "labels carry route templates, never raw paths"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("# TYPE todo_http_request_duration_seconds")
                && l.ends_with("histogram")
        ),
        "a latency histogram is exposed"
    );
    let count = sample(
        &text,
        "todo_http_request_duration_seconds_count",
        &["route=\"/api/{user_id}/tasks\"", "method=\"GET\""],
    )
    .expect("histogram count for GET /api/{user_id}/tasks");
    assert!(count >= 3.0);
    assert!(
        sample(
            &text,
            "todo_http_request_duration_seconds_bucket",
            &["route=\"/api/{user_id}/tasks\"", "le=\"+Inf\""]
        )
        .is_some()
    );
    assert!(
        sample(
            &text,
            "todo_http_request_duration_seconds_sum",
            &["route=\"/api/{user_id}/tasks\""]
        )
        .is_some()
    );
}

// ---------------------------------------------------------------------------------------
// Request ids and logs
// ---------------------------------------------------------------------------------------

/// Waits for a JSON log line whose `request_id` is `request_id` and that satisfies `also`.
async fn log_line_for(
    app: &TestApp,
    request_id: &str,
    also: impl Fn(&Value) -> bool,
) -> Option<Value> {
    eventually(Duration::from_secs(5), || {
        let found = app
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == request_id && also(v));
        async move { found }
    })
    .await
}

#[track_caller]
fn assert_log_shape(line: &Value, user: &str) {
    for key in [
        "timestamp",
        "level",
        "service",
        "message",
        "target",
        "request_id",
        "user_id",
        "trace_id",
        "span_id",
    ] {
        assert!(
            line[key].as_str().is_some_and(|s| !s.is_empty()),
            "log line lacks {key}: {line}"
        );
    }
    let ts = DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("timestamp is RFC 3339 ({e}): {line}"));
    assert_eq!(ts.offset().local_minus_utc(), 0, "timestamp is UTC: {line}");
    assert_eq!(line["user_id"], user);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        hex(line["trace_id"].as_str().unwrap(), 32),
        "W3C trace id: {line}"
    );
    assert!(
        hex(line["span_id"].as_str().unwrap(), 16),
        "W3C span id: {line}"
    );
}

#[tokio::test]
async fn an_incoming_x_request_id_is_echoed_and_carried_by_the_requests_log_lines() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "logged"})).await;
    let reply = send(
        app.request(Method::GET, "alice", &format!("/tasks/{}", id_of(&task)))
            .header("x-request-id", "req-7f3a9c01-test"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("req-7f3a9c01-test"));
    let line = log_line_for(&app, "req-7f3a9c01-test", |v| v["user_id"] == "alice")
        .await
        .expect("a log line for the request");
    assert_log_shape(&line, "alice");
    assert_eq!(line["task_id"], task["id"], "the task id is known here");

    // Errors are echoed and logged the same way.
    let reply = send(
        app.request(Method::GET, "alice", "/tasks?limit=0")
            .header("x-request-id", "req-for-a-422"),
    )
    .await;
    assert_problem(&reply, 422);
    assert_eq!(reply.header("x-request-id"), Some("req-for-a-422"));
    let line = log_line_for(&app, "req-for-a-422", |_| true)
        .await
        .expect("a log line for the failed request");
    assert_log_shape(&line, "alice");
}

/// Log lines are written to stdout in batches by a background thread: under a burst of
/// concurrent requests every line still arrives once and whole, through to the last line
/// of a graceful stop.
#[tokio::test]
async fn every_request_line_is_written_whole_before_a_graceful_exit() {
    let mut app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "logged"})).await;
    let path = format!("/tasks/{}", id_of(&task));
    let sends = (0..300).map(|i| {
        send(
            app.request(Method::GET, "alice", &path)
                .header("x-request-id", format!("burst-{i}")),
        )
    });
    for reply in futures_util::future::join_all(sends).await {
        assert_eq!(reply.status, 200);
    }
    let (_, clean) = app.terminate().await;
    assert!(clean);
    let lines = eventually(Duration::from_secs(5), || {
        let logs = app.logs();
        let done = logs.iter().any(|l| l.contains("\"message\":\"stopped\""));
        async move { done.then_some(logs) }
    })
    .await
    .expect("the final `stopped` line");
    let mut seen = std::collections::HashMap::new();
    for line in &lines {
        if line.starts_with("stderr:") {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).expect("every stdout line is one JSON object");
        if let Some(id) = value["request_id"]
            .as_str()
            .filter(|id| id.starts_with("burst-"))
        {
            *seen.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 300, "one line per request, none lost");
    assert!(seen.values().all(|&n| n == 1), "no line written twice");
}

#[tokio::test]
async fn a_missing_x_request_id_is_generated_returned_and_logged() {
    let app = TestApp::spawn().await;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let reply = send(
            app.request(Method::POST, "alice", "/tasks")
                .json(&json!({"title": "x"})),
        )
        .await;
        assert_eq!(reply.status, 201);
        let request_id = reply
            .header("x-request-id")
            .expect("a generated X-Request-Id")
            .to_owned();
        assert!(!request_id.is_empty());
        assert!(
            seen.insert(request_id.clone()),
            "ids are unique per request"
        );
        let line = log_line_for(&app, &request_id, |v| v["user_id"] == "alice")
            .await
            .unwrap_or_else(|| panic!("a log line with request_id {request_id}"));
        assert_log_shape(&line, "alice");
    }
    // Unauthenticated and unrouted requests get one too.
    for path in ["/healthz", "/nope"] {
        let reply = send(app.client.get(format!("{}{path}", app.base))).await;
        assert!(
            reply.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path} returns X-Request-Id"
        );
    }
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_responses_metrics_or_logs() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice");
    let expired = sign(&json!({"sub": "alice", "exp": now_secs() - 300}));
    let mut bodies = Vec::new();
    let task = app.create_task("alice", json!({"title": "secret?"})).await;
    for request in [
        app.client
            .get(app.url("alice", "/tasks"))
            .bearer_auth(&expired),
        app.client
            .get(app.url("alice", "/tasks"))
            .bearer_auth("garbage"),
        app.client.get(app.url("bob", "/tasks")).bearer_auth(&alice),
        app.client
            .get(format!("{}?access_token={alice}", app.url("bob", "/ws"))),
        app.request(Method::POST, "alice", "/tasks").body("{"),
        app.request(Method::POST, "alice", "/tasks")
            .json(&json!({"title": ""})),
        app.request(Method::GET, "alice", "/tasks?cursor=zzz"),
        app.request(Method::GET, "alice", &format!("/tasks/{}", id_of(&task))),
        app.client.get(format!("{}/metrics", app.base)),
        app.client.get(format!("{}/openapi.json", app.base)),
        app.client.get(format!("{}/healthz", app.base)),
        app.client.get(format!("{}/readyz", app.base)),
    ] {
        let reply = send(request).await;
        assert!(reply.status < 500);
        let headers = format!("{:?}", reply.headers);
        bodies.push(format!("{headers}\n{}", reply.text));
    }
    for text in &bodies {
        assert!(
            !text.contains(common::secret()),
            "the JWT secret leaked: {text}"
        );
        assert!(!text.contains(&alice), "a bearer token was echoed: {text}");
        assert!(
            !text.contains(&expired),
            "a bearer token was echoed: {text}"
        );
    }
    // Give the log pipe a moment, then check every line.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = app.logs();
    assert!(!logs.is_empty());
    for line in &logs {
        assert!(
            !line.contains(common::secret()),
            "the JWT secret was logged: {line}"
        );
        assert!(!line.contains(&alice), "a bearer token was logged: {line}");
        assert!(
            !line.contains(&expired),
            "a bearer token was logged: {line}"
        );
    }
}
