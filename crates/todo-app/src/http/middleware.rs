//! Middleware: request context, metrics and access log; uniform problem+json errors.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use todo_telemetry::trace::{self, KeyValue};
use tracing::Instrument;

use super::error::{PROBLEM_JSON, problem};
use crate::state::AppState;

/// The request id header, honoured when valid and always returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Per-request identity, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The `X-Request-Id`.
    pub request_id: String,
    /// This request's span, in the caller's trace (or a new trace).
    pub span: tracing::Span,
}

impl RequestContext {
    /// The `traceparent` to stamp on events this request causes: the request's span is
    /// their parent.
    pub fn event_traceparent(&self) -> Option<String> {
        trace::traceparent(&self.span)
    }
}

fn valid_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        });
    ok.then(|| s.to_owned())
}

/// Assigns request id and trace context, opens the request span, records metrics and
/// writes the access log line.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(valid_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let matched = request.extensions().get::<MatchedPath>().is_some();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    // The exported span: named and described per the OpenTelemetry HTTP conventions. The
    // query string is never recorded (a WebSocket may carry its token there).
    // A valid incoming `traceparent` decides the sample (parent-based samplers) as the
    // span is created; without one the sampler decides for a new trace.
    let upcoming = trace::upcoming_parent(
        request
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        method = %method,
        route = %route,
        request_id = %request_id,
        user_id = tracing::field::Empty,
        task_id = tracing::field::Empty,
    );
    drop(upcoming);
    // A valid incoming `traceparent` makes this request part of the caller's trace.
    trace::set_parent(
        &span,
        request
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    trace::set_name(&span, || match matched {
        true => format!("{method} {route}"),
        false => method.to_string(),
    });
    trace::set_attributes(&span, || {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", request.uri().path().to_owned()),
            KeyValue::new("url.scheme", "http"),
        ];
        if matched {
            attributes.push(KeyValue::new("http.route", route.clone()));
        }
        attributes
    });
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        span: span.clone(),
    });
    let mut finish = Finish {
        state: state.clone(),
        service: service_of(&route),
        method,
        route,
        started,
        span: span.clone(),
        done: false,
    };
    state.metrics.http.in_flight_inc();
    let mut response = if finish.route.starts_with("/api/") && state.faults.fail_request() {
        let _enter = span.enter();
        tracing::warn!("fault injected: answering 500");
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fault-injected",
            "a fault was injected (TODO_FAULTS_ENABLED, PUT /admin/faults)".into(),
            None,
        )
        .into_response()
    } else {
        next.run(request).instrument(span).await
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    finish.record(response.status());
    response
}

/// The `service` label of a route template: the service owning it, or `system` for the
/// routes every process serves (`/healthz`, `/readyz`, `/metrics`, the bus's `/dapr/...`)
/// and for requests matching no route.
pub fn service_of(route: &str) -> &'static str {
    let Some(rest) = route.strip_prefix("/api/{user_id}/") else {
        return if route == "/openapi.json" {
            "api"
        } else {
            "system"
        };
    };
    match rest.split('/').next() {
        Some("audit") => "audit",
        Some("reminders" | "notifications") => "notification",
        Some("ws") => "sync",
        _ => "api",
    }
}

/// Records a request's end: in-flight gauge, counters, histogram and the access log. Done on
/// drop as well, so a request whose client went away (its handler is then cancelled) is
/// still counted, as status 499.
struct Finish {
    state: AppState,
    service: &'static str,
    method: axum::http::Method,
    route: String,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Finish {
    fn record(&mut self, status: StatusCode) {
        self.done = true;
        self.state.metrics.http.in_flight_dec();
        let seconds = self.started.elapsed().as_secs_f64();
        let code = status.as_u16();
        trace::set_attributes(&self.span, || {
            [KeyValue::new("http.response.status_code", i64::from(code))]
        });
        if status.is_server_error() {
            self.span.record("otel.status_code", "error");
        }
        self.state.metrics.http.observe(
            self.service,
            self.method.as_str(),
            &self.route,
            code,
            seconds,
            trace::sampled_trace_id(&self.span).as_deref(),
        );
        let _enter = self.span.enter();
        let latency_ms = seconds * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = code, latency_ms, "request finished");
        } else if self.route.starts_with("/api/") || status.is_client_error() {
            tracing::info!(status = code, latency_ms, "request finished");
        } else {
            tracing::debug!(status = code, latency_ms, "request finished");
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            // 499: the client closed the connection before the answer (nginx's convention).
            let cancelled = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            self.record(cancelled);
        }
    }
}

/// Rewrites error responses made outside our handlers (the router's 405, a body-limit
/// 413, an extractor's 400) into problem+json, keeping headers such as `Allow`.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let (slug, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this route does not support that method; the Allow header lists those it does"
                .to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            format!(
                "the request body is larger than {} bytes",
                super::BODY_LIMIT
            ),
        ),
        _ => (
            "http-error",
            String::from_utf8_lossy(&text).trim().to_owned(),
        ),
    };
    let rebuilt = problem(status, slug, detail, None);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let (_, body) = rebuilt.into_parts();
    Response::from_parts(parts, body)
}

/// Bounds every request by `TODO_REQUEST_TIMEOUT_MS`: one that runs out is answered 503
/// problem+json (its handler is dropped), never left hanging.
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = state.request_timeout.as_millis() as u64,
                "request timed out"
            );
            super::error::ApiError::Timeout(state.request_timeout).into_response()
        }
    }
}

/// Unknown routes.
pub async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "no route matches this path".into(),
        None,
    )
}

/// A panic in a handler becomes a plain 500 problem; the panic itself is logged.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "handler panicked");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal-error",
        "an unexpected error occurred; it has been logged".into(),
        None,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn routes_belong_to_the_service_serving_them() {
        for (route, service) in [
            ("/api/{user_id}/tasks", "api"),
            ("/api/{user_id}/tasks/{id}/complete", "api"),
            ("/openapi.json", "api"),
            ("/api/{user_id}/audit", "audit"),
            ("/api/{user_id}/reminders", "notification"),
            ("/api/{user_id}/notifications", "notification"),
            ("/api/{user_id}/ws", "sync"),
            ("/healthz", "system"),
            ("/readyz", "system"),
            ("/metrics", "system"),
            ("/dapr/subscribe", "system"),
            ("unmatched", "system"),
        ] {
            assert_eq!(service_of(route), service, "{route}");
        }
    }
}
