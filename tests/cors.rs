//! Browsers on other origins (`TODO_CORS_ORIGINS`): CORS preflights and headers on every
//! route for the allowed origins, nothing for the others, nothing at all when none is
//! configured; the WebSocket handshake's `Origin` check. (`tests/browser/` drives the same
//! against a real Chromium.)

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Options, TestApp, eventually, next_event};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ALLOWED: &str = "http://127.0.0.1:3000";
const ALSO_ALLOWED: &str = "https://app.example.com";

async fn spawn_with_origins() -> TestApp {
    TestApp::spawn_with(
        Options::default().env("TODO_CORS_ORIGINS", format!("{ALLOWED}, {ALSO_ALLOWED}")),
    )
    .await
}

/// A response read in full.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A comma-separated header (all its lines), lower-cased, as a set.
    fn list(&self, name: &str) -> BTreeSet<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }

    fn cors_headers(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request sent");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap_or_default(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_ascii_lowercase()).collect()
}

/// What a browser sends before a cross-origin `method` with these headers.
fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::RequestBuilder {
    app.client
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type,if-match,x-request-id,traceparent",
        )
}

/// Every kind of route: the task routes, the lists, the WebSocket, ops, and an unknown path.
fn paths(task_id: &str) -> Vec<(String, &'static str)> {
    vec![
        ("/api/alice/tasks".into(), "POST"),
        ("/api/alice/tasks".into(), "GET"),
        (format!("/api/alice/tasks/{task_id}"), "PUT"),
        (format!("/api/alice/tasks/{task_id}"), "DELETE"),
        (format!("/api/alice/tasks/{task_id}/complete"), "PATCH"),
        ("/api/alice/audit".into(), "GET"),
        ("/api/alice/reminders".into(), "GET"),
        ("/api/alice/notifications".into(), "GET"),
        ("/api/alice/ws".into(), "GET"),
        ("/healthz".into(), "GET"),
        ("/openapi.json".into(), "GET"),
        ("/api/alice/nope".into(), "GET"),
    ]
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_on_every_route_without_a_token() {
    let app = spawn_with_origins().await;
    let task = app.create_task("alice", json!({"title": "x"})).await;
    let id = task["id"].as_str().unwrap();
    for origin in [ALLOWED, ALSO_ALLOWED] {
        for (path, method) in paths(id) {
            // No Authorization: browsers never send credentials on a preflight.
            let reply = send(preflight(&app, &path, origin, method)).await;
            let what = format!("preflight {method} {path} from {origin}");
            assert!(
                (200..300).contains(&reply.status),
                "{what}: {} {}",
                reply.status,
                reply.text
            );
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some(origin),
                "{what}"
            );
            assert_eq!(
                reply.list("access-control-allow-methods"),
                set(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
                "{what}"
            );
            assert_eq!(
                reply.list("access-control-allow-headers"),
                set(&[
                    "authorization",
                    "content-type",
                    "if-match",
                    "x-request-id",
                    "traceparent"
                ]),
                "{what}"
            );
            assert_eq!(
                reply.header("access-control-max-age"),
                Some("600"),
                "{what}"
            );
            assert!(reply.list("vary").contains("origin"), "{what}");
            assert_eq!(
                reply.header("access-control-allow-credentials"),
                None,
                "{what}: no credentials mode"
            );
            assert!(reply.header("x-request-id").is_some(), "{what}");
        }
    }
    // A preflight changed nothing.
    assert_eq!(app.get_task("alice", id).await.unwrap(), task);
}

#[tokio::test]
async fn an_allowed_origin_can_read_location_etag_and_the_request_id_of_an_actual_request() {
    let app = spawn_with_origins().await;
    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .header("origin", ALLOWED)
            .header("x-request-id", "from-the-page")
            .json(&json!({"title": "from a page"})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.header("access-control-allow-origin"), Some(ALLOWED));
    assert!(reply.list("vary").contains("origin"));
    assert_eq!(
        reply.list("access-control-expose-headers"),
        set(&["location", "etag", "x-request-id"])
    );
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/alice/tasks/{id}").as_str())
    );
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert_eq!(reply.header("x-request-id"), Some("from-the-page"));
    assert_eq!(reply.header("access-control-allow-credentials"), None);

    // Error answers carry the CORS headers too, so the page can read the problem.
    for (request, status) in [
        (
            app.client
                .get(app.url("alice", "/tasks"))
                .header("origin", ALLOWED),
            401,
        ),
        (
            app.request(Method::GET, "alice", "/tasks?limit=0")
                .header("origin", ALLOWED),
            422,
        ),
        (
            app.request(Method::PUT, "alice", &format!("/tasks/{id}"))
                .header("origin", ALLOWED)
                .header("if-match", "\"7\"")
                .json(&json!({"title": "stale"})),
            412,
        ),
    ] {
        let reply = send(request).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(ALLOWED),
            "{status}"
        );
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/problem+json")),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_cors_headers_and_stays_a_405() {
    let app = spawn_with_origins().await;
    let task = app.create_task("alice", json!({"title": "x"})).await;
    let id = task["id"].as_str().unwrap();
    let others = [
        "http://127.0.0.1:3001",
        "https://127.0.0.1:3000",
        "http://localhost:3000",
        "http://127.0.0.1:3000/",
        "HTTP://127.0.0.1:3000",
        "https://evil.example.com",
        "https://app.example.com.evil.example",
        "null",
    ];
    for origin in others {
        for (path, method) in paths(id) {
            let what = format!("preflight {method} {path} from {origin}");
            let reply = send(preflight(&app, &path, origin, method)).await;
            assert!(
                reply.cors_headers().is_empty(),
                "{what}: {:?}",
                reply.headers
            );
            let expected = if path.ends_with("/nope") { 404 } else { 405 };
            assert_eq!(reply.status, expected, "{what}: {}", reply.text);
            if expected == 405 {
                assert!(reply.header("allow").is_some(), "{what}: Allow");
            }
            assert!(reply.list("vary").contains("origin"), "{what}");
        }
        // An actual request from that origin is served (a browser would hide the answer from
        // the page), but nothing allows the page to read it.
        let reply = send(
            app.request(Method::GET, "alice", "/tasks")
                .header("origin", origin),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.cors_headers().is_empty(),
            "{origin}: {:?}",
            reply.headers
        );
    }
    // Without an Origin, OPTIONS is what it always was.
    let reply = send(
        app.client
            .request(Method::OPTIONS, app.url("alice", "/tasks"))
            .header("access-control-request-method", "POST"),
    )
    .await;
    assert_eq!(reply.status, 405);
    assert!(reply.cors_headers().is_empty());
}

#[tokio::test]
async fn preflights_are_counted_and_logged_under_their_route() {
    let app = spawn_with_origins().await;
    let reply =
        send(preflight(&app, "/api/alice/tasks", ALLOWED, "POST").header("x-request-id", "pre-1"))
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("pre-1"));
    let reply = send(
        preflight(&app, "/api/alice/tasks", "http://127.0.0.1:9", "POST")
            .header("x-request-id", "pre-2"),
    )
    .await;
    assert_eq!(reply.status, 405);

    let metrics = eventually(Duration::from_secs(30), || async {
        let text = send(app.client.get(format!("{}/metrics", app.base)))
            .await
            .text;
        let counted = |status: &str| {
            text.lines().any(|line| {
                line.starts_with("todo_http_requests_total{")
                    && line.contains("method=\"OPTIONS\"")
                    && line.contains("route=\"/api/{user_id}/tasks\"")
                    && line.contains(&format!("status_class=\"{status}\""))
            })
        };
        (counted("2xx") && counted("4xx")).then_some(())
    })
    .await;
    assert!(metrics.is_some(), "both preflights counted under the route");

    let logged = eventually(Duration::from_secs(5), || async {
        let logs = app.logs();
        let finished = |id: &str, status: u64| {
            logs.iter().filter_map(|l| common::log_fields(l)).any(|f| {
                f.get("message") == Some(&json!("request finished"))
                    && f.get("request_id") == Some(&json!(id))
                    && f.get("method") == Some(&json!("OPTIONS"))
                    && f.get("route") == Some(&json!("/api/{user_id}/tasks"))
                    && f.get("status") == Some(&json!(status))
            })
        };
        (finished("pre-1", 200) && finished("pre-2", 405)).then_some(())
    })
    .await;
    assert!(logged.is_some(), "access log lines: {:#?}", app.logs());
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors_and_options_is_a_405() {
    let app = TestApp::spawn().await;
    let reply = send(preflight(&app, "/api/alice/tasks", ALLOWED, "POST")).await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json"))
    );
    let allow = reply.list("allow");
    assert!(allow.contains("get") && allow.contains("post"), "{allow:?}");
    assert!(reply.cors_headers().is_empty(), "{:?}", reply.headers);
    assert!(reply.header("vary").is_none(), "{:?}", reply.headers);

    let reply = send(
        app.request(Method::POST, "alice", "/tasks")
            .header("origin", ALLOWED)
            .json(&json!({"title": "x"})),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert!(reply.cors_headers().is_empty(), "{:?}", reply.headers);
    assert!(reply.header("vary").is_none(), "{:?}", reply.headers);
}

/// Opens `/api/alice/ws` with alice's token in the query (as a browser does) and `origin`.
async fn handshake(
    app: &TestApp,
    origin: Option<&str>,
    token: &str,
) -> Result<common::Ws, (u16, HeaderMap, String)> {
    use tokio_tungstenite::tungstenite::Error;
    let mut request = format!(
        "ws://{}/api/{}/ws?access_token={token}",
        app.addr,
        app.user("alice")
    )
    .into_client_request()
    .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(Error::Http(response)) => {
            let (parts, body) = response.into_parts();
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            Err((parts.status.as_u16(), parts.headers, body))
        }
        Err(other) => panic!("expected an upgrade or an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_websocket_handshake_from_an_origin_that_is_not_allowed_is_refused_with_403() {
    let app = spawn_with_origins().await;
    let token = app.token("alice");
    for origin in ["http://127.0.0.1:3001", "https://evil.example.com", "null"] {
        // A valid token and a bad one alike: the origin is checked first.
        for token in [token.as_str(), "garbage"] {
            let Err((status, headers, body)) = handshake(&app, Some(origin), token).await else {
                panic!("{origin} was upgraded");
            };
            assert_eq!(status, 403, "{origin}: {body}");
            assert!(
                headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("application/problem+json"))
            );
            let problem: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(problem["status"], 403);
            assert_eq!(problem["type"], "urn:todo:problem:origin-not-allowed");
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("origin not allowed")),
                "{problem}"
            );
        }
    }
}

#[tokio::test]
async fn a_websocket_handshake_from_an_allowed_origin_or_without_one_upgrades() {
    let app = spawn_with_origins().await;
    app.wait_ready().await;
    let token = app.token("alice");
    let mut from_page = handshake(&app, Some(ALLOWED), &token)
        .await
        .expect("an allowed origin upgrades");
    let mut from_tool = handshake(&app, None, &token)
        .await
        .expect("no Origin (not a browser) upgrades");
    // The origin check does not replace authentication.
    let Err((status, ..)) = handshake(&app, Some(ALLOWED), "garbage").await else {
        panic!("a bad token was upgraded");
    };
    assert_eq!(status, 401);

    let task = app.create_task("alice", json!({"title": "pushed"})).await;
    for ws in [&mut from_page, &mut from_tool] {
        let event = next_event(ws, Duration::from_secs(5))
            .await
            .expect("task.created on the socket");
        assert_eq!(event["type"], "task.created");
        assert_eq!(event["data"]["task"]["id"], task["id"]);
    }
}

#[tokio::test]
async fn without_configured_origins_a_websocket_from_a_browser_page_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.token("alice");
    let Err((status, ..)) = handshake(&app, Some(ALLOWED), &token).await else {
        panic!("a page's origin was upgraded though none is allowed");
    };
    assert_eq!(status, 403);
    handshake(&app, None, &token)
        .await
        .expect("no Origin upgrades as before");
    // A page the server's own origin served (same host and port) needs no listing.
    handshake(&app, Some(&format!("http://{}", app.addr)), &token)
        .await
        .expect("the server's own origin upgrades");
}

#[tokio::test]
async fn a_bad_origin_setting_stops_the_start_with_a_message_naming_it() {
    let cases = [
        ("*", "wildcards are refused"),
        ("https://app.example.com,*", "wildcards are refused"),
        ("https://app.example.com/app", "must not have a path"),
        (
            "https://app.example.com/",
            "write \"https://app.example.com\"",
        ),
        ("ftp://files.example.com", "scheme must be http or https"),
        ("app.example.com", "is not an origin"),
    ];
    for (value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(common::binary())
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("TODO_LISTEN_ADDR", "127.0.0.1:0")
                .env("TODO_DATA_DIR", dir.path())
                .env("TODO_JWT_SECRET", common::secret())
                .env("TODO_CORS_ORIGINS", value)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the binary kept running on a bad TODO_CORS_ORIGINS")
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--cors-origins"), "{value}: {stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
    }
}
