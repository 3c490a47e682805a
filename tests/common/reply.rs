//! Responses read in full, and the assertions every HTTP test makes on problem+json.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request sent");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap_or_default(),
    }
}

/// Asserts `reply` is an RFC 9457 problem with `status`; returns its body.
#[track_caller]
pub fn assert_problem(reply: &Reply, status: u16) -> Value {
    assert_eq!(
        reply.status, status,
        "unexpected status; body: {}",
        reply.text
    );
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "a {status} must be application/problem+json, got {content_type:?}: {}",
        reply.text
    );
    let body = reply.json();
    for key in ["type", "title", "detail"] {
        assert!(
            body[key].as_str().is_some_and(|s| !s.is_empty()),
            "problem field {key:?} must be a non-empty string: {body}"
        );
    }
    assert_eq!(
        body["status"],
        json!(status),
        "problem status field: {body}"
    );
    body
}

/// Field names of a 422 problem's `errors`, asserting each has a message.
#[track_caller]
pub fn error_fields(problem: &Value) -> Vec<String> {
    let errors = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a 422 must carry errors[]: {problem}"));
    assert!(!errors.is_empty(), "errors[] must not be empty: {problem}");
    errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "each error needs a message: {e}"
            );
            e["field"]
                .as_str()
                .unwrap_or_else(|| panic!("each error needs a field: {e}"))
                .to_owned()
        })
        .collect()
}

/// Asserts a 422 problem whose `errors` name `field`.
#[track_caller]
pub fn assert_invalid(reply: &Reply, field: &str) {
    let problem = assert_problem(reply, 422);
    let fields = error_fields(&problem);
    assert!(
        fields.iter().any(|f| f == field),
        "expected a field error naming {field:?}, got {fields:?}"
    );
}
