//! Secrets never reach the logs. A server on PostgreSQL runs at `RUST_LOG=trace` with known
//! secret values (the JWT secret, the webhook secret, a password in `DATABASE_URL`) and
//! goes through every path that handles them: requests with valid and refused tokens, in
//! the `Authorization` header and as `?access_token=` on the WebSocket, and webhook
//! deliveries that succeed, are retried and are given up. Then everything it wrote, stdout
//! and stderr, is searched for each secret, each token and each signature it sent. So is
//! the output of starts that fail on a database or Kafka setting holding a password.
//!
//! Every other test's server is checked too, for the secrets it was started with and the
//! tokens its test minted, when it is dropped (`common::TestApp`).

#![cfg(feature = "postgres")]

mod common;

#[path = "../crates/todo-store/tests/support/postgres.rs"]
mod pg;

#[cfg(feature = "kafka")]
#[path = "../crates/todo-bus/tests/support/broker.rs"]
mod broker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::reply::send;
use common::{Options, TestApp, eventually, leaks, secrets_in, signature_of};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const JWT_SECRET: &str = "jwt-secret-no-log-line-may-hold-7c1e9a0b4d";
const HOOK_SECRET: &str = "webhook-secret-no-log-line-may-hold-5d2b";
const DB_PASSWORD: &str = "dbpass-no-log-line-may-hold-91f3";
const SASL_PASSWORD: &str = "saslpass-no-log-line-may-hold-28aa";

/// A token for `user` signed with `secret`, valid for `ttl_secs` (negative: expired).
fn token(secret: &str, user: &str, ttl_secs: i64) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let now = Utc::now().timestamp();
    encode(
        &Header::default(),
        &json!({"sub": user, "iat": now, "exp": now + ttl_secs}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `DATABASE_URL` of `schema` with `password` for the user: the test server trusts local
/// connections, so the password is carried but never asked for.
fn with_password(url: &str, password: &str) -> String {
    let mut url = reqwest::Url::parse(url).expect("a database URL");
    url.set_password(Some(password)).expect("a URL with a host");
    url.to_string()
}

/// A webhook receiver: answers 500 to every request for a reminder titled `refused`, and
/// to the first request of every other event, then 200. Records each request's
/// `X-Todo-Signature`.
struct Receiver {
    url: String,
    signatures: Arc<Mutex<Vec<String>>>,
    answered: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let signatures: Arc<Mutex<Vec<String>>> = Arc::default();
        let answered: Arc<Mutex<Vec<u16>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sigs, codes) = (signatures.clone(), answered.clone());
        let handler = move |headers: axum::http::HeaderMap, body: String| {
            let (sigs, codes, seen) = (sigs.clone(), codes.clone(), seen.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                sigs.lock().unwrap().push(header("x-todo-signature"));
                let event: Value = serde_json::from_str(&body).unwrap_or_default();
                let id = header("x-todo-event-id");
                let first = {
                    let mut seen = seen.lock().unwrap();
                    let first = !seen.contains(&id);
                    seen.push(id);
                    first
                };
                let code = if event["data"]["title"] == "refused" || first {
                    500
                } else {
                    200
                };
                codes.lock().unwrap().push(code);
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            signatures,
            answered,
        }
    }
}

/// A body for a task whose reminder is due within about `secs` seconds.
fn reminding_in(title: &str, secs: i64) -> Value {
    let due = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 61 + secs, 0).unwrap();
    json!({"title": title, "due_at": due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
           "remind_before_minutes": 1})
}

/// Opens `/api/{user}/ws` with `token` as `?access_token=` or in the header; the status of
/// the handshake, and the socket when it upgraded.
async fn ws(app: &TestApp, user: &str, token: &str, in_query: bool) -> (u16, Option<common::Ws>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let base = format!("ws://{}/api/{user}/ws", app.addr);
    let mut request = if in_query {
        format!("{base}?access_token={token}")
    } else {
        base
    }
    .into_client_request()
    .unwrap();
    if !in_query {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => (response.status().as_u16(), Some(socket)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

#[tokio::test]
async fn no_secret_token_or_signature_reaches_the_output_of_a_server_at_trace() {
    let schema = pg::Schema::create().await;
    let database_url = with_password(&schema.url(), DB_PASSWORD);
    let receiver = Receiver::start().await;
    let mut app = TestApp::spawn_with(
        Options::default()
            .env("DATABASE_URL", database_url.clone())
            .env("TODO_JWT_SECRET", JWT_SECRET)
            .env("TODO_NOTIFY_WEBHOOK_URL", receiver.url.clone())
            .env("TODO_NOTIFY_WEBHOOK_SECRET", HOOK_SECRET)
            .env("TODO_NOTIFY_WEBHOOK_RETRY_MS", "100")
            .env("TODO_NOTIFY_WEBHOOK_MAX_ATTEMPTS", "2")
            // Every level, dependencies included (hyper, h2, tungstenite, tokio-postgres).
            .env("RUST_LOG", "trace"),
    )
    .await;
    app.wait_ready().await;
    let url = |user: &str, path: &str| format!("{}/api/{user}{path}", app.base);

    let alice = token(JWT_SECRET, "alice", 3600);
    let bob = token(JWT_SECRET, "bob", 3600);
    let expired = token(JWT_SECRET, "alice", -600);
    let foreign = token(common::SECRET, "alice", 3600);
    let tokens = [&alice, &bob, &expired, &foreign];

    // The WebSocket, both ways of carrying the token, accepted and refused.
    let (status, socket) = ws(&app, "alice", &alice, true).await;
    assert_eq!(status, 101);
    let mut by_query = socket.unwrap();
    let (status, socket) = ws(&app, "alice", &alice, false).await;
    assert_eq!(status, 101);
    let mut by_header = socket.unwrap();
    for (user, token, in_query, expected) in [
        ("alice", &expired, true, 401),
        ("alice", &foreign, true, 401),
        ("alice", &foreign, false, 401),
        ("bob", &alice, true, 403),
    ] {
        let (status, _) = ws(&app, user, token, in_query).await;
        assert_eq!(status, expected, "{user} query={in_query}");
    }
    let (status, _) = ws(&app, "alice", "not-a-jwt", true).await;
    assert_eq!(status, 401);

    // Requests: a task's whole life, then refused tokens on every kind of route.
    let created = send(
        app.client
            .post(url("alice", "/tasks"))
            .bearer_auth(&alice)
            .json(&json!({"title": "plain"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    for (method, path, body, expected) in [
        (Method::GET, format!("/tasks/{id}"), None, 200),
        (Method::GET, "/tasks?q=plain".to_owned(), None, 200),
        (
            Method::PUT,
            format!("/tasks/{id}"),
            Some(json!({"title": "plainer"})),
            200,
        ),
        (Method::PATCH, format!("/tasks/{id}/complete"), None, 200),
        (Method::GET, "/audit".to_owned(), None, 200),
        (Method::DELETE, format!("/tasks/{id}"), None, 204),
    ] {
        let mut request = app
            .client
            .request(method.clone(), url("alice", &path))
            .bearer_auth(&alice);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = send(request).await;
        assert_eq!(reply.status, expected, "{method} {path}: {}", reply.text);
    }
    for (user, auth, expected) in [
        ("alice", format!("Bearer {expired}"), 401),
        ("alice", format!("Bearer {foreign}"), 401),
        ("alice", "Bearer not-a-jwt".to_owned(), 401),
        ("alice", format!("bearer {foreign}"), 401),
        ("alice", format!("Basic {foreign}"), 401),
        ("alice", format!("Bearer {alice}x"), 401),
        ("bob", format!("Bearer {alice}"), 403),
    ] {
        for path in ["/tasks", "/reminders", "/notifications", "/audit"] {
            let reply = send(
                app.client
                    .get(url(user, path))
                    .header("authorization", auth.clone()),
            )
            .await;
            assert_eq!(
                reply.status, expected,
                "{user}{path} {auth}: {}",
                reply.text
            );
        }
    }
    // A token in the query string of a route that does not take one there.
    let reply = send(
        app.client
            .get(format!("{}?access_token={alice}", url("alice", "/tasks"))),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);

    // Webhooks: one retried and delivered, one given up; both also reach the sockets.
    for (title, secs) in [("delivered", 1), ("refused", 2)] {
        let reply = send(
            app.client
                .post(url("bob", "/tasks"))
                .bearer_auth(&bob)
                .json(&reminding_in(title, secs)),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let reply = send(
        app.client
            .post(url("alice", "/tasks"))
            .bearer_auth(&alice)
            .json(&reminding_in("for the sockets", 1)),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    for socket in [&mut by_query, &mut by_header] {
        let mut types = Vec::new();
        while !types.iter().any(|t| t == "reminder.due") {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("reminder.due on the socket within 10 s")
                .expect("the socket is open")
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap();
                types.push(event["type"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let settled = eventually(Duration::from_secs(15), || async {
        let logs = app.logs().join("\n");
        (logs.contains("\"message\":\"webhook delivered\"")
            && logs.contains("\"message\":\"webhook failed for the last time\"")
            && logs.contains("\"message\":\"webhook failed; will retry\""))
        .then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "webhooks delivered, retried and given up within 15 s; answered {:?}; logs:\n{}",
        receiver.answered.lock().unwrap(),
        app.logs().join("\n")
    );
    let signatures = receiver.signatures.lock().unwrap().clone();
    assert!(signatures.len() >= 4, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("sha256=")));
    drop((by_query, by_header));

    // Everything written until a clean exit.
    let (_, clean) = app.terminate().await;
    assert!(clean, "clean exit");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = app.logs();
    let joined = logs.join("\n");
    for seen in [
        "\"level\":\"DEBUG\"",
        "\"message\":\"token rejected\"",
        "\"message\":\"WebSocket connected\"",
        "\"route\":\"/api/{user_id}/ws\"",
        "\"message\":\"webhook delivered\"",
        "\"message\":\"stopped\"",
    ] {
        assert!(
            joined.contains(seen),
            "the paths ran: no {seen} in\n{joined}"
        );
    }
    let mut needles: Vec<(String, String)> = vec![
        (JWT_SECRET.into(), "the JWT secret".into()),
        (HOOK_SECRET.into(), "the webhook secret".into()),
        (DB_PASSWORD.into(), "the database password".into()),
        (
            database_url.clone(),
            "the database URL with its password".into(),
        ),
    ];
    for t in tokens {
        needles.push((t.clone(), format!("the token {t}")));
        needles.push((signature_of(t).to_owned(), format!("the signature of {t}")));
    }
    for s in &signatures {
        needles.push((s.clone(), format!("the webhook signature {s}")));
        let hex = s.trim_start_matches("sha256=");
        needles.push((hex.to_owned(), format!("the webhook signature {s}")));
    }
    let found = leaks(&logs, &needles);
    assert!(
        found.is_empty(),
        "secrets in the output ({} lines):\n{}",
        logs.len(),
        found
            .iter()
            .map(|(what, line)| format!("{what}: {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs `todo <args>` at `RUST_LOG=debug` with the JWT secret and `env` until it exits (at
/// most 20 s); its exit code, and its stdout and stderr.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut all = vec![("TODO_JWT_SECRET", JWT_SECRET), ("RUST_LOG", "debug")];
    all.extend_from_slice(env);
    let out = common::run_to_exit(args, &all, Duration::from_secs(20)).await;
    (
        out.status.code(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn starts_that_fail_on_a_setting_holding_a_password_do_not_print_it() {
    let unreachable = format!("postgres://todo:{DB_PASSWORD}@127.0.0.1:1/todo");
    let malformed = format!("postgres://todo:{DB_PASSWORD}@127.0.0.1:99999999/todo");
    // The machine's PostgreSQL answers, and refuses a role it does not know.
    let refused = {
        let mut url = reqwest::Url::parse(&pg::server_url()).unwrap();
        url.set_username("todo_no_such_role").unwrap();
        url.set_password(Some(DB_PASSWORD)).unwrap();
        url.to_string()
    };
    let kafka = |database: &str| {
        vec![
            ("DATABASE_URL", database.to_owned()),
            ("TODO_BUS", "kafka".to_owned()),
            ("KAFKA_BROKERS", "127.0.0.1:1".to_owned()),
            ("KAFKA_SASL_USERNAME", "todo".to_owned()),
            ("KAFKA_SASL_PASSWORD", SASL_PASSWORD.to_owned()),
        ]
    };
    let mut sasl_complete = kafka(&unreachable);
    sasl_complete.push(("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext".to_owned()));
    sasl_complete.push(("KAFKA_SASL_MECHANISM", "PLAIN".to_owned()));
    // (what, subcommand, settings, what the output names as the reason)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "the database is unreachable",
            "serve",
            vec![("DATABASE_URL", unreachable.clone())],
            "error connecting to server",
        ),
        (
            "the database is unreachable",
            "migrate",
            vec![("DATABASE_URL", unreachable.clone())],
            "error connecting to server",
        ),
        (
            "the database URL is malformed",
            "serve",
            vec![("DATABASE_URL", malformed)],
            "not a valid PostgreSQL URL",
        ),
        (
            "the database refuses the login",
            "serve",
            vec![("DATABASE_URL", refused)],
            "todo_no_such_role",
        ),
        (
            "SASL without a mechanism",
            "serve",
            kafka(&unreachable),
            "KAFKA_SASL_MECHANISM",
        ),
        (
            "SASL settings complete, the database unreachable",
            "serve",
            sasl_complete,
            "error connecting to server",
        ),
    ];
    for (what, command, env, reason) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, output) = run(&[command], &env).await;
        assert_eq!(
            code,
            Some(1),
            "{command}, {what}: it should not start:\n{output}"
        );
        assert!(
            output.contains(reason),
            "{command}, {what}: the output names why ({reason}):\n{output}"
        );
        for (secret, name) in [
            (DB_PASSWORD, "the database password"),
            (SASL_PASSWORD, "the SASL password"),
            (JWT_SECRET, "the JWT secret"),
        ] {
            assert!(
                !output.contains(secret),
                "{command}, {what}: {name} in the output:\n{output}"
            );
        }
    }
}

/// A server on Kafka logging in with SASL PLAIN (noida-db takes any credentials): the
/// clients authenticate and events flow, and none of what they log at `debug`,
/// librdkafka's own lines about the login included, holds the password.
#[cfg(feature = "kafka")]
#[tokio::test]
async fn a_kafka_client_logging_in_with_sasl_does_not_log_the_password() {
    let schema = pg::Schema::create().await;
    let broker = broker::Broker::start(broker::Kind::Noida);
    let app = TestApp::spawn_with(
        Options::default()
            .env("DATABASE_URL", with_password(&schema.url(), DB_PASSWORD))
            .env("TODO_BUS", "kafka")
            .env("KAFKA_BROKERS", broker.addr())
            .env("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
            .env("KAFKA_SASL_MECHANISM", "PLAIN")
            .env("KAFKA_SASL_USERNAME", "todo")
            .env("KAFKA_SASL_PASSWORD", SASL_PASSWORD)
            // librdkafka's own debug lines about the login.
            .env("TODO_KAFKA_PROPERTIES", "debug=security")
            .env("RUST_LOG", "debug"),
    )
    .await;
    app.wait_ready_within(Duration::from_secs(30)).await;
    let id = app.create_titled("alice", "over SASL").await;
    common::audited_once(&app, &[], "alice", &[id].into(), Duration::from_secs(30)).await;
    let logs = app.logs();
    assert!(
        logs.iter().any(|l| l.contains("\"target\":\"librdkafka\"")
            && l.contains("Sending SASL PLAIN (builtin) authentication token")),
        "librdkafka logged the login"
    );
    let found = leaks(
        &logs,
        &[
            (SASL_PASSWORD.into(), "the SASL password".into()),
            (DB_PASSWORD.into(), "the database password".into()),
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

/// The harness's own check, end to end: a server whose output holds a token its test
/// minted fails the test when it is dropped. (The server logs a client's request id as
/// it comes, so a token's signature sent as one lands in its output.)
#[tokio::test]
#[should_panic(expected = "the server's output holds secrets")]
async fn a_server_whose_output_holds_a_minted_token_fails_its_test_when_dropped() {
    let app = TestApp::spawn_with(Options::default()).await;
    let minted = app.token("alice");
    let reply = send(
        app.request(Method::GET, "alice", "/tasks")
            .header("x-request-id", signature_of(&minted)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let logged = eventually(Duration::from_secs(5), || async {
        (!app.lines_with_secrets().is_empty()).then_some(())
    })
    .await;
    assert!(logged.is_some(), "the request id was logged");
    drop(app);
}

#[test]
fn the_harness_knows_which_settings_are_secrets_and_finds_them_in_lines() {
    let env: Vec<(String, String)> = [
        ("TODO_JWT_SECRET", JWT_SECRET),
        ("TODO_NOTIFY_WEBHOOK_SECRET", HOOK_SECRET),
        ("KAFKA_SASL_PASSWORD", SASL_PASSWORD),
        (
            "DATABASE_URL",
            "postgres://todo:dbpass-no-log-line-may-hold-91f3@db/todo",
        ),
        ("TODO_NOTIFY_WEBHOOK_URL", "http://hooks.example/abc"),
        ("TODO_JWT_ISSUER", "https://issuer.example"),
        ("TODO_NOTIFY_WEBHOOK_SECRET", "short"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut expected = vec![JWT_SECRET, HOOK_SECRET, SASL_PASSWORD, DB_PASSWORD];
    expected.sort();
    assert_eq!(secrets_in(&env), expected);
    let t = token(JWT_SECRET, "alice", 60);
    let lines = vec![
        r#"{"message":"fine"}"#.to_owned(),
        format!(r#"{{"message":"oops","token":"{}"}}"#, signature_of(&t)),
        format!(r#"{{"message":"oops","secret":"{HOOK_SECRET}"}}"#),
    ];
    let needles = vec![
        (signature_of(&t).to_owned(), "the token".to_owned()),
        (HOOK_SECRET.to_owned(), "the webhook secret".to_owned()),
    ];
    let found = leaks(&lines, &needles);
    assert_eq!(
        found.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        ["the token", "the webhook secret"]
    );
    assert!(leaks(&lines[..1], &needles).is_empty());
}
