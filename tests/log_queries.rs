//! The pre-defined log queries (`observability/loki/queries.json`) against what the binary
//! writes: the matcher of `common::logql` itself, the queries that follow one trace,
//! request or user over a real server's lines, and two checks that keep the queries, the
//! tests and `docs/metrics.md` together: every query is asserted by a test that provokes
//! its situation, and every `expect` is a stable message of the docs, at its level.
//!
//! The situation queries are asserted where a test already provokes the situation
//! (`tests/outage.rs`, `tests/events.rs`, `tests/dapr.rs`); `docs/log-queries.md` names
//! each test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::logql::{
    NAMESPACE, assert_query_finds, entry, parse, queries_file, query_lines, query_matches,
    substitute, with_field,
};
use common::reply::send;
use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// The matcher
// ---------------------------------------------------------------------------------------

/// A line as the binary writes it (leading keys, then fields in alphabetical order).
fn line(level: &str, service: &str, message: &str, fields: Value) -> String {
    let mut text = format!(
        r#"{{"timestamp":"2026-11-23T07:09:15.116588Z","level":"{level}","service":"{service}","message":"{message}","target":"todo_app::http::tasks""#
    );
    for (k, v) in fields.as_object().expect("fields are an object") {
        text.push_str(&format!(",{}:{v}", Value::String(k.clone())));
    }
    text.push('}');
    text
}

fn creation_failed(level: &str, service: &str, message: &str) -> String {
    line(
        level,
        service,
        message,
        json!({"error": "the database is unavailable", "request_id": "r-1",
               "status": 503, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
               "user_id": "alice"}),
    )
}

#[test]
fn every_query_of_the_file_parses_once_its_variables_are_given() {
    let file = queries_file();
    let queries = file["queries"].as_array().unwrap();
    assert!(queries.len() >= 14, "{} queries", queries.len());
    for q in queries {
        let text = substitute(
            q["query"].as_str().unwrap(),
            &[
                ("namespace", NAMESPACE),
                ("service", ".+"),
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("request_id", "r-1"),
                ("user_id", "alice"),
            ],
        );
        assert!(!text.contains('$'), "{text}");
        parse(&text).unwrap_or_else(|e| panic!("{}: {e}", q["id"]));
    }
}

#[test]
fn a_situation_query_finds_its_message_at_its_level_in_any_selected_service() {
    let emitted = creation_failed("ERROR", "todo", "task creation failed");
    assert!(query_matches("task-creation-failed", &[], &emitted));
    assert!(query_matches(
        "task-creation-failed",
        &[("service", "todo")],
        &emitted
    ));
    let split = creation_failed("ERROR", "api,audit", "task creation failed");
    assert!(query_matches(
        "task-creation-failed",
        &[("service", "(api,audit|sync)")],
        &split
    ));
    // Every other situation query passes over it.
    for q in queries_file()["queries"].as_array().unwrap() {
        let id = q["id"].as_str().unwrap();
        if q["expect"].is_string() && id != "task-creation-failed" {
            assert!(!query_matches(id, &[], &emitted), "{id} matched it");
        }
    }
}

#[test]
fn a_line_whose_message_only_contains_the_text_is_not_found() {
    // The line filter passes both; the exact `message` filter does not.
    for near in [
        creation_failed("ERROR", "todo", "task creation failed twice"),
        creation_failed("ERROR", "todo", "retrying after task creation failed"),
        line(
            "ERROR",
            "todo",
            "request failed",
            json!({"error": "task creation failed", "status": 500}),
        ),
    ] {
        assert!(near.contains("task creation failed"));
        assert!(!query_matches("task-creation-failed", &[], &near), "{near}");
    }
}

#[test]
fn the_same_message_at_another_level_is_not_found() {
    for level in ["WARN", "INFO", "DEBUG", "error", ""] {
        let other = creation_failed(level, "todo", "task creation failed");
        assert!(
            !query_matches("task-creation-failed", &[], &other),
            "{level}"
        );
    }
    let again = line(
        "INFO",
        "todo",
        "database available again",
        json!({"op": "get"}),
    );
    assert!(query_matches("database-available-again", &[], &again));
    assert!(!query_matches(
        "database-available-again",
        &[],
        &with_field(&serde_json::from_str(&again).unwrap(), "level", "ERROR")
    ));
}

#[test]
fn regex_matchers_are_anchored_at_both_ends() {
    let split = creation_failed("ERROR", "api,audit", "task creation failed");
    // Unanchored, `api` would find `api,audit`, and `.+i` would too.
    for service in ["api", "audit", "pi,au", ".+i", "(api|sync)"] {
        assert!(
            !query_matches("task-creation-failed", &[("service", service)], &split),
            "service=~{service:?} matched api,audit"
        );
    }
    for service in ["api,audit", "api.*", ".+", "(sync|api,audit)"] {
        assert!(
            query_matches("task-creation-failed", &[("service", service)], &split),
            "service=~{service:?} missed api,audit"
        );
    }
    let emitted = creation_failed("ERROR", "todo", "task creation failed");
    for namespace in ["loc", "ocal", "prod|loc"] {
        assert!(!query_matches(
            "task-creation-failed",
            &[("namespace", namespace)],
            &emitted
        ));
    }
    assert!(query_matches(
        "task-creation-failed",
        &[("namespace", "prod|local")],
        &emitted
    ));
}

#[test]
fn the_follow_queries_compare_the_whole_value() {
    let traced = creation_failed("ERROR", "todo", "task creation failed");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert!(query_matches("trace", &[("trace_id", trace)], &traced));
    // A prefix passes the line filter but not the field filter.
    assert!(!query_matches(
        "trace",
        &[("trace_id", &trace[..16])],
        &traced
    ));
    assert!(query_matches("request", &[("request_id", "r-1")], &traced));
    assert!(!query_matches("request", &[("request_id", "r-")], &traced));
    assert!(query_matches("user", &[("user_id", "alice")], &traced));
    assert!(!query_matches("user", &[("user_id", "ali")], &traced));
    // The text occurs elsewhere in the line, not as the field.
    let elsewhere = line(
        "INFO",
        "todo",
        "request finished",
        json!({"route": "/api/{user_id}/tasks", "title": "alice", "user_id": "bob"}),
    );
    assert!(!query_matches("user", &[("user_id", "alice")], &elsewhere));
}

#[test]
fn every_line_at_error_is_an_error_of_its_service() {
    let err = line("ERROR", "todo", "event dead-lettered", json!({}));
    assert!(query_matches("service-errors", &[], &err));
    assert!(query_matches(
        "service-errors",
        &[("service", "todo")],
        &err
    ));
    assert!(!query_matches(
        "service-errors",
        &[("service", "api")],
        &err
    ));
    let warn = line("WARN", "todo", "event processing failed", json!({}));
    assert!(!query_matches("service-errors", &[], &warn));
}

#[test]
fn a_line_that_is_no_json_object_carries_no_stream_labels() {
    for raw in [
        "stderr: ERROR task creation failed",
        "ERROR task creation failed",
        r#"["ERROR","task creation failed"]"#,
        "",
    ] {
        for q in queries_file()["queries"].as_array().unwrap() {
            let id = q["id"].as_str().unwrap();
            assert!(
                !query_matches(
                    id,
                    &[("trace_id", "t"), ("request_id", "r"), ("user_id", "u")]
                        .into_iter()
                        .filter(|(k, _)| q["variables"].as_array().unwrap().iter().any(|v| v == k))
                        .collect::<Vec<_>>(),
                    raw
                ),
                "{id} matched {raw:?}"
            );
        }
    }
}

#[test]
fn after_json_a_stream_label_still_reads_the_stream_and_fields_compare_as_text() {
    let emitted = creation_failed("ERROR", "todo", "task creation failed");
    let q = |text: &str| parse(text).unwrap_or_else(|e| panic!("{e}"));
    // `level` after `| json` is the stream label (the line's copy is `level_extracted`).
    assert!(q(r#"{namespace="local"} | json | level="ERROR""#).matches(NAMESPACE, &emitted));
    assert!(
        q(r#"{namespace="local"} | json | level_extracted="ERROR""#).matches(NAMESPACE, &emitted)
    );
    // A number field is compared as its text.
    assert!(q(r#"{namespace="local"} | json | status="503""#).matches(NAMESPACE, &emitted));
    assert!(q(r#"{namespace="local"} | json | status=~"5..""#).matches(NAMESPACE, &emitted));
    // An absent field is the empty string.
    assert!(q(r#"{namespace="local"} | json | missing="""#).matches(NAMESPACE, &emitted));
    assert!(!q(r#"{namespace="local"} | json | missing=~".+""#).matches(NAMESPACE, &emitted));
    // The namespace is the shipper's, not the line's.
    assert!(!q(r#"{namespace="prod"} | json"#).matches(NAMESPACE, &emitted));
    // Escapes in strings.
    let quoted = line("WARN", "todo", r#"say \"hi\""#, json!({}));
    assert!(
        q(r#"{namespace="local"} |= "\\\"hi\\\"" | json | message="say \"hi\"""#)
            .matches(NAMESPACE, &quoted)
    );
}

#[test]
fn queries_outside_the_subset_are_refused() {
    for text in [
        r#"{namespace="local"}"#,
        r#"{namespace="local"} |= "x""#,
        r#"{namespace!="local"} | json"#,
        r#"{namespace=~"local", level!~"INFO"} | json"#,
        r#"{namespace="local"} |~ "x" | json"#,
        r#"{namespace="local"} != "x" | json"#,
        r#"{namespace="local"} | logfmt"#,
        r#"{namespace="local"} | json | json"#,
        r#"{namespace="local"} | json |= "x""#,
        r#"{namespace="local"} | json | line_format "{{.message}}""#,
        r#"{namespace="local"} | json | status > 500"#,
        r#"{job="todo"} | json"#,
        r#"{namespace="local"} | json | message="unterminated"#,
        r#"{namespace=~"(unbalanced"} | json"#,
        r#"rate({namespace="local"} | json [5m])"#,
        r#"{namespace="local"} | json | message="a" or message="b""#,
    ] {
        assert!(parse(text).is_err(), "accepted {text}");
    }
}

#[test]
#[should_panic(expected = "no value for $trace_id")]
fn a_variable_without_a_value_is_refused() {
    substitute(
        entry("trace")["query"].as_str().unwrap(),
        &[("namespace", NAMESPACE)],
    );
}

#[test]
#[should_panic(expected = "query task-creation-failed found nothing")]
fn a_query_that_finds_nothing_fails_showing_the_query_and_the_candidates() {
    let logs = vec![creation_failed("WARN", "todo", "task creation failed")];
    assert_query_finds(&logs, "task-creation-failed", &[]);
}

// ---------------------------------------------------------------------------------------
// The follow queries, over a real server's lines
// ---------------------------------------------------------------------------------------

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// A recurring task completed under a trace and a request id of the client's: the trace
/// query finds the request's lines and the `recurring` consumer's line about its event;
/// the request query the request's lines only; the user query that user's lines only.
/// Near misses (a request id and a user name that extend the ones looked for) are real
/// lines of the same server, which the line filters let through and the field filters
/// do not.
#[tokio::test]
async fn the_trace_request_and_user_queries_find_the_lines_of_one_trace_request_and_user() {
    let app = TestApp::spawn_with(Options::default()).await;
    app.wait_ready().await;
    let task = app
        .create_task(
            "carol",
            json!({"title": "weekly", "due_at": "2031-03-10T09:00:00Z",
                   "recurrence": {"frequency": "weekly"}}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let reply = send(
        app.request(Method::PATCH, "carol", &format!("/tasks/{id}/complete"))
            .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
            .header("x-request-id", "req-follow-1"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = send(
        app.request(Method::GET, "carolyn", "/tasks")
            .header("x-request-id", "req-follow-10"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let next_created = eventually(Duration::from_secs(10), || async {
        let logs = app.logs();
        let next = logs
            .iter()
            .any(|l| l.contains("\"message\":\"next occurrence created\"") && l.contains(TRACE));
        let near_miss = logs
            .iter()
            .any(|l| l.contains("\"request_id\":\"req-follow-10\""));
        (next && near_miss).then_some(())
    })
    .await;
    assert!(
        next_created.is_some(),
        "recurring logged the next occurrence under the trace, and the other request its \
         line:\n{}",
        app.logs().join("\n")
    );
    let logs = app.logs();

    // trace: the request and the consumer that handled its event.
    assert_query_finds(&logs, "trace", &[("trace_id", TRACE)]);
    let traced = query_lines(&logs, "trace", &[("trace_id", TRACE)]);
    assert!(traced.iter().all(|l| l["trace_id"] == TRACE));
    let messages: BTreeSet<&str> = traced
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages.contains("request finished") && messages.contains("next occurrence created"),
        "{traced:#?}"
    );
    assert!(
        traced.iter().any(|l| l["consumer"] == "recurring"),
        "{traced:#?}"
    );

    // request: only that request's lines.
    let found = assert_query_finds(&logs, "request", &[("request_id", "req-follow-1")]);
    assert_eq!(found["user_id"], "carol", "{found}");
    let requested = query_lines(&logs, "request", &[("request_id", "req-follow-1")]);
    assert!(requested.iter().all(|l| l["request_id"] == "req-follow-1"));
    assert!(
        requested.iter().all(|l| l["trace_id"] == TRACE),
        "{requested:#?}"
    );

    // user: carol's lines, not carolyn's; the embedded stream is `todo`.
    let found = assert_query_finds(&logs, "user", &[("user_id", "carol"), ("service", "todo")]);
    assert_eq!(found["user_id"], "carol");
    let users: BTreeMap<String, usize> = query_lines(&logs, "user", &[("user_id", "carol")])
        .iter()
        .fold(BTreeMap::new(), |mut m, l| {
            *m.entry(l["user_id"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
            m
        });
    assert_eq!(users.keys().collect::<Vec<_>>(), ["carol"], "{users:?}");
    assert!(logs.iter().any(|l| l.contains("\"user_id\":\"carolyn\"")));
    assert!(
        query_lines(
            &logs,
            "user",
            &[("user_id", "carol"), ("service", "(api|sync)")]
        )
        .is_empty(),
        "the embedded deployment's one stream is service=todo"
    );
}

// ---------------------------------------------------------------------------------------
// Coverage and the stable messages
// ---------------------------------------------------------------------------------------

/// Every `query_finds(…, "<id>"` / `assert_query_finds(…, "<id>"` call of `tests/*.rs`:
/// `(id, file)`.
fn asserted_queries() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let call = regex::Regex::new(r#"query_finds\(\s*[^;"]*?"([a-z0-9-]+)""#).unwrap();
    let mut found = BTreeSet::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for c in call.captures_iter(&source) {
            found.insert((c[1].to_owned(), name.clone()));
        }
    }
    found
}

#[test]
fn every_query_is_asserted_by_a_test_against_the_binary() {
    let asserted = asserted_queries();
    let ids: BTreeSet<&str> = asserted.iter().map(|(id, _)| id.as_str()).collect();
    let file = queries_file();
    let mut missing = Vec::new();
    for q in file["queries"].as_array().unwrap() {
        let id = q["id"].as_str().unwrap();
        if !ids.contains(id) {
            missing.push(id);
        }
    }
    assert!(
        missing.is_empty(),
        "queries of observability/loki/queries.json no test asserts with \
         query_finds/assert_query_finds: {missing:?} (asserted: {asserted:?})"
    );
    // And no test asserts a query the file does not have.
    for (id, file_name) in &asserted {
        entry(id);
        assert!(!file_name.is_empty());
    }
}

/// `(message, level)` of each row of docs/metrics.md's "Stable messages" table.
fn stable_messages() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("### Stable messages")
        .nth(1)
        .expect("docs/metrics.md has a Stable messages section");
    let section = section.split("\n#").next().unwrap();
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        rows.first().map(|r| r[1].as_str()),
        Some("`message`"),
        "the table's second column is the message"
    );
    rows.iter()
        .skip(2) // the header and the separator
        .map(|r| {
            let message = r[1].trim_matches('`').to_owned();
            assert!(!message.contains('`'), "one message per row: {r:?}");
            (message, r[2].clone())
        })
        .collect()
}

#[test]
fn each_expected_message_is_a_stable_message_of_the_docs_at_its_level() {
    let stable = stable_messages();
    assert!(stable.len() >= 10, "{stable:?}");
    let expected: Vec<(String, String)> = queries_file()["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| {
            Some((
                q["expect"].as_str()?.to_owned(),
                q["level"]
                    .as_str()
                    .expect("a level with an expect")
                    .to_owned(),
            ))
        })
        .collect();
    let stable_set: BTreeSet<&(String, String)> = stable.iter().collect();
    let expected_set: BTreeSet<&(String, String)> = expected.iter().collect();
    assert_eq!(
        expected_set, stable_set,
        "queries.json's (expect, level) pairs and docs/metrics.md's stable messages differ"
    );
    assert_eq!(
        expected.len(),
        expected_set.len(),
        "an expect appears twice"
    );
}
