//! Request pieces read our way: JSON bodies with problem+json errors, `If-Match`, query
//! pairs, task ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use todo_domain::ValidationErrors;
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

/// Whether the request declares a JSON body: `application/json`, with any parameters.
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn unsupported(headers: &HeaderMap) -> ApiError {
    let sent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "no Content-Type".to_owned(),
            |v| format!("Content-Type {v:?}"),
        );
    ApiError::UnsupportedMediaType(format!(
        "the body must be JSON sent as Content-Type: application/json, not {sent}"
    ))
}

/// Reads a JSON body into `T`: malformed JSON is a 400, JSON that does not fit `T` (which
/// for our request types means a body that is not an object) a 422 on the field `""`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_object = || {
        ApiError::Validation(ValidationErrors::single(
            "",
            "the body must be a JSON object",
        ))
    };
    // serde reads a struct from an array too (fields in order): only an object will do.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(not_object()),
            Err(e) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON: {e}"
            ))),
        };
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        // Every field reads any value, so only a repeated key makes an object not fit.
        serde_json::error::Category::Data => ApiError::Validation(ValidationErrors::single(
            "",
            format!("the body is ambiguous: {e}"),
        )),
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
    })
}

/// A required JSON body, read as `T` (validation happens in the domain).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let json = declares_json(request.headers());
        let refusal = (!json).then(|| unsupported(request.headers()));
        let bytes = body_bytes(request).await?;
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("a JSON body is required".into()));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// An optional JSON body: none (and no Content-Type needed) means `None`.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let json = declares_json(request.headers());
        let refusal = (!json).then(|| unsupported(request.headers()));
        let bytes = body_bytes(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
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
    /// Reads the header: `*`, or a comma-separated list of entity-tags (RFC 9110: `"3"`,
    /// `W/"3"`, any `"opaque"` tag) and bare versions (`3`). Anything else is a 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
        if values.peek().is_none() {
            return Ok(IfMatch::Absent);
        }
        let bad = || {
            ApiError::BadRequest(
                "If-Match must be *, or a comma-separated list of entity-tags such as \"3\" \
                 or W/\"3\", or of bare versions such as 3"
                    .into(),
            )
        };
        let mut versions = Vec::new();
        let mut any = false;
        for value in values {
            let value = value.to_str().map_err(|_| bad())?;
            for entry in entries(value).ok_or_else(bad)? {
                match entry {
                    // A tag that is not one of our versions is valid but never matches.
                    Some(opaque) => versions.extend(opaque.parse::<i64>().ok()),
                    None => any = true,
                }
            }
        }
        Ok(if any {
            IfMatch::Any
        } else {
            IfMatch::Versions(versions)
        })
    }

    /// The schema pattern of what [`IfMatch::from_headers`] accepts.
    pub const PATTERN: &'static str = r#"^[ \t]*(?:\*|(?:W/)?"[\x21\x23-\x7e]*"|[0-9]+)(?:[ \t]*,[ \t]*(?:\*|(?:W/)?"[\x21\x23-\x7e]*"|[0-9]+))*[ \t]*$"#;

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

/// Splits an `If-Match` value into its entries: `None` for `*`, else the tag's opaque part
/// (a bare version is its own). Commas may stand inside a quoted tag. `None` overall when
/// the value is not such a list.
fn entries(value: &str) -> Option<Vec<Option<&str>>> {
    let ows = |s: &str| s.trim_start_matches([' ', '\t']).len();
    let mut rest = value;
    let mut out = Vec::new();
    loop {
        rest = &rest[rest.len() - ows(rest)..];
        let (entry, after) = if let Some(after) = rest.strip_prefix('*') {
            (None, after)
        } else if let Some(quoted) = rest.strip_prefix("W/\"").or_else(|| rest.strip_prefix('"')) {
            let end = quoted.find('"')?;
            let opaque = &quoted[..end];
            if !opaque
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
            {
                return None;
            }
            (Some(opaque), &quoted[end + 1..])
        } else {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            (Some(&rest[..digits]), &rest[digits..])
        };
        out.push(entry);
        let after = &after[after.len() - ows(after)..];
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => return Some(out),
            None => return None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        IfMatch::from_headers(&parts.headers)
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

impl utoipa::IntoParams for IfMatch {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        vec![
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Write only if the task is at this version: `*` (it exists), or entity-tags \
                     (`\"3\"`, `W/\"3\"`, as in `ETag`) or bare versions (`3`), comma-separated. \
                     A tag that names no current version is a 412; a malformed header a 400.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(IfMatch::PATTERN)),
                ))
                .build(),
        ]
    }
}
