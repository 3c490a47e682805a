//! A test double of the Dapr sidecar and the broker behind its pub/sub component. `daprd`
//! cannot be installed on the test machine, so this follows Dapr's documented HTTP
//! contract instead (docs.dapr.io, "Pub/sub API reference"), as far as the app relies on it:
//!
//! - `POST /v1.0/publish/{pubsub}/{topic}[?metadata.k=v]` takes a message and answers 204;
//!   what arrived (content type, metadata, `traceparent`, body) is recorded. A body whose
//!   content type is not `application/cloudevents+json` is refused with 400 here (the real
//!   sidecar would wrap it in an envelope of its own, which the app must never cause).
//!   While [`DaprDouble::fail_publishes`] is on, it answers 500 instead and keeps nothing
//!   (as the sidecar does when its broker refuses the message).
//! - `GET /v1.0/healthz/outbound` answers 204, or 500 after [`DaprDouble::set_healthy`].
//! - Like the sidecar at start, [`DaprDouble::attach`] reads an app's `GET /dapr/subscribe`
//!   (v1 programmatic subscriptions, `[{pubsubname, topic, route}]`) and then delivers every
//!   message of each subscribed topic, oldest first and one at a time, as
//!   `POST {route}` with `Content-Type: application/cloudevents+json`. A CloudEvent gets the
//!   `topic` and `pubsubname` attributes the sidecar adds. The answer decides what follows,
//!   as Dapr documents it: 2xx with `{"status":"SUCCESS"}` (or no status) moves on,
//!   `"DROP"` moves on and is recorded, `"RETRY"` or an unknown status is delivered again,
//!   404 is dropped, any other status or a connection error is delivered again; retries
//!   back off from 50 ms to 1 s and stop after [`MAX_ATTEMPTS`] (as a bounded resiliency
//!   policy would).
//!
//! Each attached app is its own consumer group: it gets every message, from the first.
//! Several apps may publish to and attach to one double, which then plays the broker too.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Deliveries of one message before the double gives up on it.
pub const MAX_ATTEMPTS: u32 = 40;

/// A publish request as the double received it.
#[derive(Debug, Clone)]
pub struct Published {
    pub pubsub: String,
    pub topic: String,
    pub content_type: String,
    /// The `metadata.*` query parameters, without the prefix.
    pub metadata: HashMap<String, String>,
    pub traceparent: Option<String>,
    pub body: String,
}

impl Published {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One delivery attempt and how the app answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub app: String,
    pub route: String,
    pub body: String,
    pub attempt: u32,
    /// `SUCCESS`, `DROP`, `RETRY`, another status, `http <code>`, or `error: ...`.
    pub outcome: String,
}

/// One entry of an app's `GET /dapr/subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub pubsubname: String,
    pub topic: String,
    pub route: String,
}

/// Every accepted message, per (pubsub, topic), in arrival order.
type Log = HashMap<(String, String), Vec<Arc<Vec<u8>>>>;

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    published: Mutex<Vec<Published>>,
    deliveries: Mutex<Vec<Delivery>>,
    unhealthy: AtomicBool,
    publish_fails: AtomicBool,
    appended: Notify,
}

impl Shared {
    fn append(&self, pubsub: &str, topic: &str, body: Vec<u8>) {
        self.log
            .lock()
            .unwrap()
            .entry((pubsub.to_owned(), topic.to_owned()))
            .or_default()
            .push(Arc::new(body));
        self.appended.notify_waiters();
    }

    fn message(&self, pubsub: &str, topic: &str, index: usize) -> Option<Arc<Vec<u8>>> {
        self.log
            .lock()
            .unwrap()
            .get(&(pubsub.to_owned(), topic.to_owned()))
            .and_then(|messages| messages.get(index).cloned())
    }
}

/// The running double; stops (server and deliveries) when dropped.
pub struct DaprDouble {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    client: reqwest::Client,
}

impl DaprDouble {
    /// Starts the double on a free loopback port.
    pub async fn start() -> DaprDouble {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1.0/publish/{pubsub}/{topic}", post(publish))
            .route("/v1.0/healthz/outbound", get(healthz))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        DaprDouble {
            addr,
            shared,
            tasks: Mutex::new(vec![server]),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// The port, for the app's `DAPR_HTTP_PORT`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Makes `GET /v1.0/healthz/outbound` fail (500) or succeed again.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Makes `POST /v1.0/publish/...` answer 500 without keeping the message, or take
    /// messages again.
    pub fn fail_publishes(&self, failing: bool) {
        self.shared.publish_fails.store(failing, Ordering::SeqCst);
    }

    /// Every publish request received so far.
    pub fn published(&self) -> Vec<Published> {
        self.shared.published.lock().unwrap().clone()
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    /// The deliveries the app answered `DROP`.
    pub fn drops(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.outcome == "DROP")
            .collect()
    }

    /// Puts `body` on `topic` as another publisher would have (bypassing the publish API's
    /// checks: this is how a message that is no CloudEvent reaches the broker).
    pub fn inject(&self, pubsub: &str, topic: &str, body: &[u8]) {
        self.shared.append(pubsub, topic, body.to_vec());
    }

    /// Reads the app's subscriptions at `{base}/dapr/subscribe` (waiting up to 10 s for it to
    /// answer 200), as the sidecar does once the app listens, and starts delivering.
    pub async fn attach(&self, base: &str) -> Vec<Subscription> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listing: Vec<Value> = loop {
            match self
                .client
                .get(format!("{base}/dapr/subscribe"))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => break r.json().await.expect("a JSON array"),
                other => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "GET {base}/dapr/subscribe did not answer 200: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let subscriptions: Vec<Subscription> = listing
            .iter()
            .map(|s| Subscription {
                pubsubname: s["pubsubname"].as_str().expect("pubsubname").to_owned(),
                topic: s["topic"].as_str().expect("topic").to_owned(),
                route: s["route"].as_str().expect("route").to_owned(),
            })
            .collect();
        let mut tasks = self.tasks.lock().unwrap();
        for subscription in &subscriptions {
            tasks.push(tokio::spawn(deliver_all(
                self.shared.clone(),
                self.client.clone(),
                base.to_owned(),
                subscription.clone(),
            )));
        }
        subscriptions
    }
}

impl Drop for DaprDouble {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let metadata = query
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("metadata.").map(|k| (k.to_owned(), v)))
        .collect();
    shared.published.lock().unwrap().push(Published {
        pubsub: pubsub.clone(),
        topic: topic.clone(),
        content_type: content_type.clone(),
        metadata,
        traceparent: header("traceparent"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if content_type != "application/cloudevents+json" {
        return StatusCode::BAD_REQUEST;
    }
    if shared.publish_fails.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    shared.append(&pubsub, &topic, body.to_vec());
    StatusCode::NO_CONTENT
}

async fn healthz(State(shared): State<Arc<Shared>>) -> StatusCode {
    if shared.unhealthy.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// The body the app receives: a CloudEvent gets the attributes the sidecar adds to it.
fn as_delivered(raw: &[u8], subscription: &Subscription) -> Vec<u8> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(mut event)) if event.contains_key("specversion") => {
            event.insert("topic".into(), subscription.topic.clone().into());
            event.insert("pubsubname".into(), subscription.pubsubname.clone().into());
            serde_json::to_vec(&event).unwrap()
        }
        _ => raw.to_vec(),
    }
}

/// Delivers `subscription`'s topic to the app, one message at a time, for ever.
async fn deliver_all(
    shared: Arc<Shared>,
    client: reqwest::Client,
    base: String,
    subscription: Subscription,
) {
    let mut next = 0;
    loop {
        let appended = shared.appended.notified();
        let Some(raw) = shared.message(&subscription.pubsubname, &subscription.topic, next) else {
            // Woken by the next append, or after a while in case it came in between.
            let _ = tokio::time::timeout(Duration::from_millis(200), appended).await;
            continue;
        };
        next += 1;
        let body = as_delivered(&raw, &subscription);
        let mut backoff = Duration::from_millis(50);
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = match client
                .post(format!("{base}{}", subscription.route))
                .header("content-type", "application/cloudevents+json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    let text = r.text().await.unwrap_or_default();
                    match serde_json::from_str::<Value>(&text) {
                        Ok(v) => v["status"].as_str().unwrap_or("SUCCESS").to_owned(),
                        Err(_) => "SUCCESS".to_owned(),
                    }
                }
                Ok(r) => format!("http {}", r.status().as_u16()),
                Err(e) => format!("error: {e}"),
            };
            let done = matches!(outcome.as_str(), "SUCCESS" | "DROP" | "http 404");
            shared.deliveries.lock().unwrap().push(Delivery {
                app: base.clone(),
                route: subscription.route.clone(),
                body: String::from_utf8_lossy(&raw).into_owned(),
                attempt,
                outcome,
            });
            if done {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
