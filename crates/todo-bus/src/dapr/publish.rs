//! Publishing through the sidecar: `POST /v1.0/publish/{pubsub}/{topic}`, one request per
//! event and topic.

use std::sync::Arc;

use async_trait::async_trait;
use todo_domain::CloudEvent;

use super::DaprBus;
use crate::{BusError, Publisher, Result};

/// The CloudEvents structured-mode content type: the sidecar passes such a body on as it
/// is instead of wrapping it in an envelope of its own.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// How much of an error answer goes into the error.
const ERROR_BODY_CHARS: usize = 300;

impl DaprBus {
    async fn publish_one(&self, topic: &str, event: &CloudEvent, payload: &str) -> Result<()> {
        let config = &self.config;
        let url = format!("{}/v1.0/publish/{}/{topic}", config.endpoint, config.pubsub);
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CLOUDEVENTS_JSON)
            .body(payload.to_owned());
        // The user id keys the message, so one user's events share a partition and keep
        // their order (Kafka, Event Hubs and most other components honour it).
        if let Some(key) = event.user_id() {
            request = request.query(&[("metadata.partitionKey", key)]);
        }
        if let Some(traceparent) = &event.traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(token) = &config.api_token {
            request = request.header("dapr-api-token", token);
        }
        let response = request.send().await.map_err(|e| {
            BusError::Unavailable(format!("publishing to {topic} through the sidecar: {e}"))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(ERROR_BODY_CHARS)
            .collect();
        Err(BusError::Unavailable(format!(
            "the sidecar refused a publish to {topic}: {status} {body}"
        )))
    }
}

#[async_trait]
impl Publisher for DaprBus {
    async fn publish(&self, events: &[Arc<CloudEvent>]) -> Result<Vec<(String, u64)>> {
        let names = &self.config.topics;
        let mut counts = crate::topics::Counts::default();
        for event in events {
            let out = names.outgoing(event)?;
            let [topic, fan_out] = out.topics;
            // Its two topics at once; events one after the other, so each topic keeps
            // their order.
            let (own, all) = tokio::join!(
                self.publish_one(topic, event, &out.payload),
                self.publish_one(fan_out, event, &out.payload),
            );
            own?;
            all?;
            counts.add(topic);
            counts.add(fan_out);
        }
        Ok(counts.into_vec())
    }
}
