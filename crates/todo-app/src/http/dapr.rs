//! The routes the Dapr sidecar calls (`TODO_BUS=dapr`): `GET /dapr/subscribe` lists the
//! subscriptions of this process's consumers, and `POST /dapr/events/{topic}` takes one
//! message of a topic and answers Dapr's status (`SUCCESS`, `RETRY` or `DROP`) once the
//! consumers have dealt with it. They exist only in Dapr mode, and only for the topics the
//! consumers of this process read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use todo_bus::dapr::DaprBus;

use super::error::problem;
use crate::state::AppState;

/// Largest message accepted from the sidecar: events are small, but an envelope a little
/// over the API's request limit must not be refused (it would be redelivered for ever).
const MESSAGE_LIMIT: usize = 1024 * 1024;

/// The header the sidecar carries `APP_API_TOKEN` in.
const TOKEN_HEADER: &str = "dapr-api-token";

/// The subscription routes for `bus`'s consumers. A message is waited on for most of
/// `request_timeout`, so that the answer is `RETRY` rather than the timeout's 503 (which
/// the sidecar would retry as well, only less plainly). With `token`, a call without it is
/// refused.
pub fn routes(
    bus: Arc<DaprBus>,
    request_timeout: Duration,
    token: Option<SecretString>,
) -> Router<AppState> {
    let wait = request_timeout - request_timeout / 10;
    let subscriptions = bus.subscriptions();
    let listing: Vec<serde_json::Value> = subscriptions.iter().map(|s| s.to_json()).collect();
    let mut router = Router::new().route(
        "/dapr/subscribe",
        get(move || {
            let listing = listing.clone();
            async move { Json(listing) }
        }),
    );
    for subscription in subscriptions {
        let (bus, topic) = (bus.clone(), subscription.logical);
        router = router.route(
            &subscription.route,
            post(move |body: axum::body::Bytes| {
                let bus = bus.clone();
                async move {
                    let status = bus.deliver(topic, &body, wait).await;
                    Json(json!({ "status": status.as_str() }))
                }
            }),
        );
    }
    let router = router.layer(DefaultBodyLimit::max(MESSAGE_LIMIT));
    match token {
        Some(token) => router.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        )),
        None => router,
    }
}

/// Refuses a call that does not carry the sidecar's token. The sidecar retries a 401, so a
/// mismatched token delays messages rather than losing them.
async fn require_token(
    State(token): State<Arc<SecretString>>,
    request: Request,
    next: Next,
) -> Response {
    let sent = request
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(sent, token.expose_secret().as_bytes()) {
        return next.run(request).await;
    }
    tracing::warn!("a call to a Dapr route without the sidecar's token was refused");
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("the {TOKEN_HEADER} header does not carry APP_API_TOKEN"),
        None,
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
