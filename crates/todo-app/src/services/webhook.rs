//! Webhook delivery of reminders: each `reminder.due` is POSTed to
//! `TODO_NOTIFY_WEBHOOK_URL`, signed, and retried with exponential backoff.
//!
//! Deliveries are rows in the store, claimed with a lease and sent concurrently, so a slow or
//! failing receiver never holds up other reminders, and a crash mid-send only means the
//! delivery is tried again (receivers de-duplicate on the event id header).
//!
//! Signature: `X-Todo-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//! with `X-Todo-Timestamp: <unix seconds>`; receivers should reject stale timestamps.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use todo_store::{Store, WebhookDelivery, WebhookOutcome};
use todo_telemetry::Metrics;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument as _;

use crate::shutdown::ShutdownSignal;

/// Per-attempt HTTP timeout.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// Where and how to send.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Receiver URL.
    pub url: String,
    /// HMAC key.
    pub secret: SecretString,
    /// First retry delay; doubles per attempt, capped at one hour.
    pub retry_base: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &SecretString, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn retry_delay(config: &WebhookConfig, attempts_before: i64) -> Duration {
    let factor = 1u32 << attempts_before.clamp(0, 20);
    config
        .retry_base
        .saturating_mul(factor)
        .min(Duration::from_secs(3600))
}

/// The span of one attempt (`webhook send`): a client span in the trace of the
/// `reminder.due` event it carries. The URL is not recorded (it may hold a token), only
/// its host and port.
fn send_span(config: &WebhookConfig, delivery: &WebhookDelivery) -> tracing::Span {
    use todo_telemetry::trace::{self, KeyValue};
    let span = tracing::info_span!(
        "webhook send",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        event_id = %delivery.event_id,
        attempt = delivery.attempts + 1,
    );
    let traceparent = serde_json::from_str::<serde_json::Value>(&delivery.payload)
        .ok()
        .and_then(|event| event.get("traceparent")?.as_str().map(str::to_owned));
    trace::set_parent(&span, traceparent.as_deref());
    trace::set_attributes(&span, || {
        let url = reqwest::Url::parse(&config.url).ok();
        let mut attributes = vec![KeyValue::new("http.request.method", "POST")];
        if let Some(url) = &url {
            attributes.push(KeyValue::new(
                "server.address",
                url.host_str().unwrap_or_default().to_owned(),
            ));
            if let Some(port) = url.port_or_known_default() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        attributes
    });
    span
}

async fn attempt(
    client: &reqwest::Client,
    config: &WebhookConfig,
    delivery: &WebhookDelivery,
) -> Result<(), String> {
    let timestamp = chrono::Utc::now().timestamp();
    let span = tracing::Span::current();
    let mut request = client.post(&config.url);
    // The receiver can continue the trace from this attempt's span.
    if let Some(traceparent) = todo_telemetry::trace::traceparent(&span) {
        request = request.header(todo_telemetry::trace::TRACEPARENT, traceparent);
    }
    let response = request
        .header("content-type", "application/cloudevents+json")
        .header("x-todo-event-id", delivery.event_id.to_string())
        .header("x-todo-timestamp", timestamp.to_string())
        .header(
            "x-todo-signature",
            signature(&config.secret, timestamp, &delivery.payload),
        )
        .body(delivery.payload.clone())
        .send()
        .await
        .map_err(|e| {
            span.record("otel.status_code", "error");
            format!("request failed: {e}")
        })?;
    let status = response.status();
    todo_telemetry::trace::set_attributes(&span, || {
        [todo_telemetry::trace::KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        )]
    });
    if status.is_success() {
        Ok(())
    } else {
        span.record("otel.status_code", "error");
        Err(format!("receiver answered {status}"))
    }
}

/// Sends pending deliveries until shutdown.
pub async fn run(
    store: Arc<dyn Store>,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    mut shutdown: ShutdownSignal,
) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; webhooks disabled");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    tracing::info!("webhook sender started");
    loop {
        let now = todo_domain::time::now();
        let lease = now + chrono::Duration::from_std(TIMEOUT * 3).unwrap_or_default();
        let free = permits.available_permits() as i64;
        let claimed = if free > 0 {
            store.claim_webhooks(now, lease, free).await
        } else {
            Ok(Vec::new())
        };
        match claimed {
            Ok(claimed) => {
                for delivery in claimed {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let (store, config, metrics, client) = (
                        store.clone(),
                        config.clone(),
                        metrics.clone(),
                        client.clone(),
                    );
                    let wake = wake.clone();
                    let span = send_span(&config, &delivery);
                    tokio::spawn(async move {
                        let _permit = permit;
                        let outcome = match attempt(&client, &config, &delivery).await {
                            Ok(()) => WebhookOutcome::Delivered,
                            Err(error)
                                if delivery.attempts + 1 >= i64::from(config.max_attempts) =>
                            {
                                WebhookOutcome::GaveUp { error }
                            }
                            Err(error) => {
                                let delay = retry_delay(&config, delivery.attempts);
                                let at = todo_domain::time::now()
                                    + chrono::Duration::from_std(delay).unwrap_or_default();
                                WebhookOutcome::Retry { at, error }
                            }
                        };
                        let label = match &outcome {
                            WebhookOutcome::Delivered => "delivered",
                            WebhookOutcome::Retry { .. } => "retry",
                            WebhookOutcome::GaveUp { .. } => "failed",
                        };
                        metrics.reminders.webhook(label);
                        match &outcome {
                            WebhookOutcome::Delivered => {
                                tracing::info!(event_id = %delivery.event_id, "webhook delivered")
                            }
                            WebhookOutcome::Retry { error, at } => {
                                tracing::warn!(event_id = %delivery.event_id, error = error.as_str(), retry_at = %todo_domain::time::format_rfc3339(at), "webhook failed; will retry")
                            }
                            WebhookOutcome::GaveUp { error } => {
                                tracing::error!(event_id = %delivery.event_id, error = error.as_str(), "webhook failed for the last time")
                            }
                        }
                        if let Err(e) = store
                            .finish_webhook(delivery.id, &outcome, todo_domain::time::now())
                            .await
                        {
                            tracing::warn!(error = %e, "recording a webhook outcome failed; the lease will expire and it is retried");
                        }
                        // The sender sleeps until the earliest pending attempt, which was this
                        // delivery's lease; wake it so a retry runs at its own (earlier) time.
                        wake.notify_one();
                    }.instrument(span));
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming webhooks failed"),
        }
        let wait = match store.next_webhook_at().await {
            Ok(Some(at)) => (at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(20)),
            Ok(None) => Duration::from_secs(300),
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            () = shutdown.wait() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait.min(Duration::from_secs(300))) => {}
        }
    }
    tracing::info!("webhook sender stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Reference value computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'k3y'
        let sig = signature(&SecretString::from("k3y"), 1_700_000_000, "{\"a\":1}");
        assert_eq!(
            sig,
            "sha256=fd5a70e965043f7df6309c2c3b5ff5a8ffa99b1f5175e9a311459e73c4634d4a"
        );
        assert_ne!(
            sig,
            signature(&SecretString::from("k3y"), 1_700_000_001, "{\"a\":1}")
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let config = WebhookConfig {
            url: "http://127.0.0.1:1/".into(),
            secret: SecretString::from("s"),
            retry_base: Duration::from_secs(1),
            max_attempts: 10,
        };
        assert_eq!(retry_delay(&config, 0), Duration::from_secs(1));
        assert_eq!(retry_delay(&config, 3), Duration::from_secs(8));
        assert_eq!(retry_delay(&config, 30), Duration::from_secs(3600));
    }
}
