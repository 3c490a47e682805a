//! Health, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::problem;
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and every consumer of this process is running.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready", content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    let stopped = state.readiness.stopped();
    match store {
        Ok(Ok(())) if stopped.is_empty() => Json(json!({"status": "ready"})).into_response(),
        Ok(Ok(())) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("consumers not running: {}", stopped.join(", ")),
            None,
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "the store is unreachable".into(),
                None,
            )
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the store did not answer within 2 s".into(),
            None,
        ),
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, todo_telemetry::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    match state.openapi.get() {
        Some(doc) => Json(doc.clone()).into_response(),
        None => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the document is not built yet".into(),
            None,
        ),
    }
}
