//! Request pieces read our way: JSON bodies with problem+json errors, `If-Match`, query
//! pairs, task ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde_json::Value;
use uuid::Uuid;

use super::BODY_LIMIT;
use super::error::ApiError;

/// Bodies up to this size are read to the end even when over [`BODY_LIMIT`], so the client
/// finishes sending and reads its 413 on a connection that stays usable. A larger declared
/// or actual body is refused at once and the connection closed.
const DRAIN_LIMIT: usize = 1024 * 1024;

async fn body_bytes(request: Request) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let too_large = ApiError::PayloadTooLarge { limit: BODY_LIMIT };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large);
    }
    let mut stream = request.into_body().into_data_stream();
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(BODY_LIMIT));
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            return Err(too_large);
        }
        if total <= BODY_LIMIT {
            body.extend_from_slice(&chunk);
        }
    }
    if total > BODY_LIMIT {
        return Err(too_large);
    }
    Ok(Bytes::from(body))
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// A required JSON body of any shape (validation happens in the domain).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("a JSON body is required".into()));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// An optional JSON body: empty means `None`.
#[derive(Debug)]
pub struct OptionalJsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        parse_json(&bytes).map(|v| OptionalJsonBody(Some(v)))
    }
}

/// The `If-Match` precondition: `*`, or a list of versions (`3`, `"3"` or `W/"3"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: no precondition.
    Absent,
    /// `*`: the task must exist.
    Any,
    /// One of these versions. Unparsable entries never match.
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Reads the header.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let values: Vec<&str> = headers
            .get_all(header::IF_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return IfMatch::Absent;
        }
        let entries: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if entries.contains(&"*") {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            entries
                .iter()
                .filter_map(|e| e.trim_start_matches("W/").trim_matches('"').parse().ok())
                .collect(),
        )
    }

    /// Checks the precondition against the stored version.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            IfMatch::Versions(versions) if !versions.contains(&current) => {
                Err(ApiError::PreconditionFailed { current })
            }
            _ => Ok(()),
        }
    }

    /// Whether the client pinned a version (then a concurrent change is a 412, not a retry).
    pub fn is_pinned(&self) -> bool {
        matches!(self, IfMatch::Versions(_))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch::from_headers(&parts.headers))
    }
}

/// The query string as ordered pairs (repeated names kept), decoded leniently.
#[derive(Debug, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(query) = parts.uri.query() else {
            return Ok(QueryPairs::default());
        };
        serde_urlencoded::from_str(query)
            .map(QueryPairs)
            .map_err(|e| {
                ApiError::BadRequest(format!("the query string could not be decoded: {e}"))
            })
    }
}

/// Parses a task id from the path; anything that isn't a UUID names no task.
pub fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("no such task"))
}
