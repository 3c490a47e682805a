//! Health, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{PROBLEM_JSON, problem};
use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// An error's short label.
trait Kind: std::fmt::Display {
    fn kind(&self) -> &'static str;
}

impl Kind for todo_store::StoreError {
    fn kind(&self) -> &'static str {
        todo_store::StoreError::kind(self)
    }
}

impl Kind for todo_bus::BusError {
    fn kind(&self) -> &'static str {
        todo_bus::BusError::kind(self)
    }
}

/// One dependency's state, as `/readyz` reports it.
async fn check<E: Kind>(
    probe: impl std::future::Future<Output = Result<(), E>>,
    what: &str,
) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, check = what, "readiness check failed");
            format!("failing: {}", e.kind())
        }
        Err(_) => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
    }
}

/// Readiness: the store answers reads and writes, and every consumer of this process runs.
/// The body names each check (`store`, `writer`, `consumers`) and its state.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: every check is `ok`", body = Object,
            example = json!({"status": "ready", "checks": {"store": "ok", "writer": "ok", "consumers": "ok"}})),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // The broker matters to a process that consumes from it; `api` alone keeps taking
    // writes into the outbox while the broker is down, so it stays ready.
    let broker = state
        .bus
        .check_name()
        .filter(|_| state.readiness.has_consumers());
    let (store, writer, bus) = tokio::join!(
        check(state.store.ping(), "store"),
        check(state.store.ping_writer(), "writer"),
        async {
            match broker {
                Some(name) => Some((name, check(state.bus.ping(), name).await)),
                None => None,
            }
        }
    );
    let stopped = state.readiness.stopped();
    let consumers = if stopped.is_empty() {
        "ok".to_owned()
    } else {
        format!("not running: {}", stopped.join(", "))
    };
    let mut checks = json!({"store": store, "writer": writer, "consumers": consumers});
    let mut names = vec!["store", "writer", "consumers"];
    if let Some((name, state)) = bus {
        checks[name] = state.into();
        names.push(name);
    }
    let failing: Vec<&str> = names
        .into_iter()
        .filter(|name| checks[*name] != "ok")
        .collect();
    if failing.is_empty() {
        return Json(json!({"status": "ready", "checks": checks})).into_response();
    }
    // A problem (RFC 9457) with the checks as an extension member beside the standard ones.
    let body = json!({
        "type": "urn:todo:problem:not-ready",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("not ready: {}", failing.join(", ")),
        "checks": checks,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, PROBLEM_JSON)],
        body.to_string(),
    )
        .into_response()
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
