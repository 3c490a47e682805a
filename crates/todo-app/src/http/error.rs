//! One error type for every handler, written as `application/problem+json` (RFC 9457).
//!
//! Statuses are decided here, once. A 5xx body never says anything internal: the cause is
//! logged with the request id, and the client gets a generic detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use todo_domain::{FieldError, ValidationErrors};
use todo_store::StoreError;

/// The problem+json media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or the query string is not decodable.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or invalid token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403: the path names another user.
    #[error("the token's subject may not access this user's resources")]
    Forbidden,
    /// 403: a WebSocket handshake from a page whose origin is not in `TODO_CORS_ORIGINS`.
    #[error(
        "origin not allowed: this server does not accept WebSocket connections from pages of that origin"
    )]
    OriginNotAllowed,
    /// 404: no such resource (or someone else's).
    #[error("{0}")]
    NotFound(&'static str),
    /// 412: `If-Match` named another version.
    #[error("the task is at version {current}, not the one given in If-Match")]
    PreconditionFailed {
        /// The stored version.
        current: i64,
    },
    /// 413: body over the limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415: a body that is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: fields failed validation.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// 503: the request ran past `TODO_REQUEST_TIMEOUT_MS`.
    #[error("the request did not finish within {} ms; a write may or may not have been applied, so check before retrying it", .0.as_millis())]
    Timeout(std::time::Duration),
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an infrastructure failure; logged, never detailed to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A problem+json error body (RFC 9457), the one shape of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// A URN naming the problem kind: `urn:todo:problem:<slug>`.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^urn:todo:problem:[a-z-]+$")]
    pub kind: String,
    /// Short summary: the status's reason phrase.
    #[schema(value_type = String)]
    pub title: &'a str,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Every invalid field, on a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    pub errors: Option<&'a [FieldError]>,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::OriginNotAllowed => "origin-not-allowed",
            ApiError::NotFound(_) => "not-found",
            ApiError::PreconditionFailed { .. } => "version-mismatch",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Validation(_) => "validation-error",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal-error",
        }
    }
}

/// Builds a problem+json response for any status (also used for 404/405 from the router).
pub fn problem(
    status: StatusCode,
    slug: &str,
    detail: String,
    errors: Option<&[FieldError]>,
) -> Response {
    let body = Problem {
        kind: format!("urn:todo:problem:{slug}"),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (status, json).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                "an unexpected error occurred; it has been logged with this request's id".to_owned()
            }
            ApiError::Unavailable(why) => {
                tracing::warn!(reason = why.as_str(), "dependency unavailable");
                "the service is temporarily unavailable; retry shortly".to_owned()
            }
            ApiError::Validation(e) => format!("{} field(s) failed validation", e.0.len()),
            other => other.to_string(),
        };
        let errors = match &self {
            ApiError::Validation(e) => Some(e.0.as_slice()),
            _ => None,
        };
        let mut response = problem(status, self.slug(), detail, errors);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"todo\", error=\"invalid_token\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("no such task"),
            StoreError::VersionConflict { current } => ApiError::PreconditionFailed { current },
            e if e.is_unavailable() => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.into()),
        }
    }
}
