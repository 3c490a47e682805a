//! The API's edges, through the real binary: media types, control characters, the
//! timestamp range, `If-Match` syntax, and the OpenAPI document's shared parts.

mod common;

use common::TestApp;
use common::reply::{Reply, assert_problem, error_fields, send};
use reqwest::Method;
use serde_json::{Value, json};

/// Field names of a problem's `errors`.
fn fields(reply: &Reply) -> Vec<String> {
    error_fields(&reply.json())
}

#[tokio::test]
async fn a_body_not_declared_as_json_is_a_415_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "kept"})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let body = r#"{"title": "sneaky"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        for (method, path) in [
            (Method::POST, "/tasks".to_owned()),
            (Method::PUT, format!("/tasks/{id}")),
            (Method::PATCH, format!("/tasks/{id}/complete")),
        ] {
            let mut request = app.request(method.clone(), "alice", &path).body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let reply = send(request).await;
            assert_problem(&reply, 415);
            assert_eq!(
                reply.json()["type"],
                "urn:todo:problem:unsupported-media-type"
            );
        }
    }
    // Parameters are fine, and so is any case.
    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .header("content-type", "Application/JSON; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    // PATCH .../complete without a body needs no content type.
    let reply = send(app.request(Method::PATCH, "alice", &format!("/tasks/{id}/complete"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let titles: Vec<String> = app
        .list_all("alice", "")
        .await
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles.contains(&"kept".to_owned()) && titles.contains(&"sneaky".to_owned()));
}

#[tokio::test]
async fn control_characters_are_refused_in_stored_strings_and_whitespace_is_trimmed() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (json!({"title": "a\u{0}b"}), "title"),
        (json!({"title": "a\u{7}b"}), "title"),
        (json!({"title": "tab\tinside"}), "title"),
        (json!({"title": "c1\u{85}x"}), "title"),
        (
            json!({"title": "x", "description": "nul\u{0}"}),
            "description",
        ),
        (
            json!({"title": "x", "description": "esc\u{1b}[31m"}),
            "description",
        ),
        (json!({"title": "x", "tags": ["ok", "t\u{0}"]}), "tags[1]"),
    ] {
        let reply = send(app.request(Method::POST, "alice", "/tasks").json(&body)).await;
        assert_problem(&reply, 422);
        assert_eq!(fields(&reply), vec![field], "{body}");
    }
    let task = app
        .create_task(
            "alice",
            json!({"title": "\t Title \n", "description": "line one\r\n\tline two", "tags": [" \u{3000}Home\n"]}),
        )
        .await;
    assert_eq!(task["title"], "Title");
    assert_eq!(task["description"], "line one\r\n\tline two");
    assert_eq!(task["tags"], json!(["home"]));
    let id = task["id"].as_str().unwrap();
    let reply = send(
        app.request(Method::PUT, "alice", &format!("/tasks/{id}"))
            .json(&json!({"title": "bad\u{0}"})),
    )
    .await;
    assert_problem(&reply, 422);
    let reply = send(app.request(Method::GET, "alice", "/tasks?q=a%00b")).await;
    assert_problem(&reply, 422);
    assert_eq!(fields(&reply), vec!["q"]);
    assert_eq!(app.list_all("alice", "").await.len(), 1);
}

#[tokio::test]
async fn due_dates_are_bounded_to_years_1970_through_9999() {
    let app = TestApp::spawn().await;
    for due in [
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",
        "9999-12-31T23:00:00-01:00",
        "+10000-01-01T00:00:00Z",
        "2026-12-01 09:00:00Z",
        "2026-06-30T23:59:60Z",
    ] {
        let reply = send(
            app.request(Method::POST, "alice", "/tasks")
                .json(&json!({"title": "x", "due_at": due})),
        )
        .await;
        assert_problem(&reply, 422);
        assert_eq!(fields(&reply), vec!["due_at"], "{due}");
        let reply = send(app.request(
            Method::GET,
            "alice",
            &format!("/tasks?due_before={}", due.replace('+', "%2B")),
        ))
        .await;
        assert_problem(&reply, 422);
    }
    let first = app
        .create_task(
            "alice",
            json!({"title": "first", "due_at": "1970-01-01T00:00:00Z"}),
        )
        .await;
    let last = app
        .create_task(
            "alice",
            json!({"title": "last", "due_at": "9999-12-31T23:59:59.999999Z"}),
        )
        .await;
    assert_eq!(first["due_at"], "1970-01-01T00:00:00Z");
    assert_eq!(last["due_at"], "9999-12-31T23:59:59.999999Z");
}

#[tokio::test]
async fn a_malformed_if_match_is_a_400_and_a_foreign_entity_tag_a_412() {
    let app = TestApp::spawn().await;
    let task = app.create_task("alice", json!({"title": "v1"})).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    for bad in ["null", "\"1", "W/1", "1,", "abc", "\"1\" \"2\""] {
        let reply = send(
            app.request(Method::DELETE, "alice", &path)
                .header("if-match", bad),
        )
        .await;
        assert_problem(&reply, 400);
    }
    for foreign in ["\"a,b\"", "\"\"", "W/\"x\", \"7\""] {
        let reply = send(
            app.request(Method::DELETE, "alice", &path)
                .header("if-match", foreign),
        )
        .await;
        assert_problem(&reply, 412);
    }
    // A comma inside a quoted tag does not split it: the list still finds version 1.
    let reply = send(
        app.request(Method::PUT, "alice", &path)
            .header("if-match", "\"a,b\", \"1\"")
            .json(&json!({"title": "v2"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn a_token_whose_subject_holds_a_control_character_is_refused() {
    let app = TestApp::spawn().await;
    let reply = send(
        app.client
            .get(format!("{}/api/a%00b/tasks", app.base))
            .bearer_auth(common::token("a\u{0}b")),
    )
    .await;
    assert_problem(&reply, 401);
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            out.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    out
}

#[tokio::test]
async fn the_document_lists_every_problem_once_defined_with_security_headers_and_links() {
    let app = TestApp::spawn().await;
    let doc = send(app.client.get(format!("{}/openapi.json", app.base)))
        .await
        .json();
    assert_eq!(
        doc["components"]["schemas"]["Problem"]["required"],
        json!(["type", "title", "status", "detail"])
    );
    let schemas: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        schemas.iter().filter(|s| s.contains("Problem")).count(),
        1,
        "{schemas:?}"
    );
    for (path, method, operation) in operations(&doc) {
        let label = format!("{method} {path}");
        let secured = path.starts_with("/api/");
        let security = &operation["security"];
        if secured {
            assert_eq!(security, &json!([{"bearer": []}]), "{label}");
            for status in ["401", "403", "503"] {
                let response = &operation["responses"][status];
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{label} {status}"
                );
            }
        } else {
            assert_eq!(security, &json!([]), "{label} needs no token");
        }
        let responses = operation["responses"].as_object().unwrap();
        for (status, response) in responses {
            assert_eq!(
                response["headers"]["X-Request-Id"]["required"], true,
                "{label} {status} returns X-Request-Id"
            );
        }
        let sends_body = operation.get("requestBody").is_some();
        assert_eq!(responses.contains_key("415"), sends_body, "{label}");
        assert_eq!(responses.contains_key("413"), sends_body, "{label}");
        let params: Vec<&str> = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"X-Request-Id"), "{label}");
        if ["put", "delete", "patch"].contains(&method.as_str()) {
            assert!(params.contains(&"If-Match"), "{label}");
            assert!(
                responses.contains_key("412") && responses.contains_key("400"),
                "{label}"
            );
        }
    }
    let created = &doc["paths"]["/api/{user_id}/tasks"]["post"]["responses"]["201"];
    assert_eq!(created["headers"]["Location"]["required"], true);
    assert_eq!(created["headers"]["ETag"]["required"], true);
    let links = created["links"]
        .as_object()
        .expect("links from POST /tasks");
    let mut targets: Vec<&str> = links
        .values()
        .filter_map(|l| l["operationId"].as_str())
        .collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        vec!["complete_task", "delete_task", "get_task", "update_task"]
    );
    for link in links.values() {
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
    }
    // Request fields carry the contract's rules.
    let new = &doc["components"]["schemas"]["NewTaskRequest"];
    assert_eq!(new["required"], json!(["title"]));
    assert!(new["properties"]["title"]["pattern"].is_string());
    assert_eq!(new["properties"]["description"]["maxLength"], 2000);
    assert_eq!(new["properties"]["tags"]["maxItems"], 10);
    assert_eq!(new["properties"]["due_at"]["format"], "date-time");
    assert_eq!(new["properties"]["remind_before_minutes"]["minimum"], 0);
    assert_eq!(new["then"]["required"], json!(["due_at"]));
    let rule = &doc["components"]["schemas"]["RecurrenceRequest"];
    assert_eq!(rule["properties"]["interval"]["maximum"], 365);
    assert_eq!(rule["required"], json!(["frequency"]));
    let complete = &doc["paths"]["/api/{user_id}/tasks/{id}/complete"]["patch"]["requestBody"];
    assert_eq!(
        complete["required"], false,
        "the body of complete is optional"
    );
}

#[tokio::test]
async fn a_websocket_client_sending_a_huge_message_is_disconnected_and_others_go_on() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = TestApp::spawn().await;
    let mut flooder = app.connect_ws("alice").await;
    let mut bystander = app.connect_ws("alice").await;
    flooder
        .send(Message::text("x".repeat(200 * 1024)))
        .await
        .expect("the frame is sent");
    // The server closes the flooder (a close frame, an error or the end of the stream).
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match flooder.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "a 200 KiB message must end the connection");
    let task = app
        .create_task("alice", json!({"title": "still pushed"}))
        .await;
    let event = common::next_event(&mut bystander, std::time::Duration::from_secs(5))
        .await
        .expect("the other client still gets events");
    assert_eq!(event["subject"], task["id"]);
}
