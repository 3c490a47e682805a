//! Task routes.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use todo_domain::{Task, TaskQuery};

use super::auth::AuthUser;
use super::error::ApiError;
use super::extract::{IfMatch, JsonBody, OptionalJsonBody, QueryPairs, task_id};
use super::middleware::RequestContext;
use crate::services::api;
use crate::state::AppState;

/// A page of tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    /// The tasks, in the requested order.
    pub items: Vec<Task>,
    /// Pass as `cursor=` for the next page; `null` exactly when nothing is left.
    pub next_cursor: Option<String>,
}

/// A problem+json error body (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary (the status reason).
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Field errors, for 422.
    pub errors: Option<Vec<todo_domain::FieldError>>,
}

/// Body of `POST /api/{user_id}/tasks`. Only `title` is required.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewTaskBody {
    /// 1–200 characters after trimming.
    pub title: String,
    /// Up to 2000 characters.
    pub description: Option<String>,
    /// `high`, `medium` (default) or `low`.
    pub priority: Option<todo_domain::Priority>,
    /// Up to 10 tags of 1–32 characters; stored lower-case and unique.
    pub tags: Option<Vec<String>>,
    /// RFC 3339 timestamp; required with `recurrence`.
    pub due_at: Option<String>,
    /// Minutes before `due_at` to remind (0–525600); default 15 with a due date; `null` disables.
    pub remind_before_minutes: Option<i64>,
    /// Repeat rule; `interval` 1–365 (default 1).
    pub recurrence: Option<todo_domain::Recurrence>,
}

/// Body of `PUT`: fields present are set, absent kept, `null` clears.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskUpdateBody {
    /// New title (cannot be `null`).
    pub title: Option<String>,
    /// New description or `null`.
    pub description: Option<String>,
    /// New priority; `null` resets to `medium`.
    pub priority: Option<todo_domain::Priority>,
    /// New tags; `null` clears.
    pub tags: Option<Vec<String>>,
    /// New due date or `null`.
    pub due_at: Option<String>,
    /// New reminder offset or `null`.
    pub remind_before_minutes: Option<i64>,
    /// New recurrence or `null`.
    pub recurrence: Option<todo_domain::Recurrence>,
    /// Completion, as `PATCH .../complete` with a body would set it.
    pub completed: Option<bool>,
}

/// Body of `PATCH .../complete`; without a body the state toggles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompleteBody {
    /// The state to set.
    pub completed: bool,
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn with_task(status: StatusCode, task: Task) -> Response {
    let version = task.version;
    let mut response = (status, axum::Json(task)).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// Percent-encodes one path segment.
fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Creates a task.
#[utoipa::path(
    post, path = "/api/{user_id}/tasks", tag = "tasks",
    params(("user_id" = String, Path, description = "Must equal the token's `sub`")),
    request_body(content = NewTaskBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Task,
            headers(("Location" = String, description = "URL of the new task"), ("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let task = api::create(
        state.store.as_ref(),
        &user.user_id,
        &body,
        ctx.event_traceparent(),
    )
    .await?;
    tracing::Span::current().record("task_id", tracing::field::display(task.id));
    let location = format!("/api/{}/tasks/{}", segment(&user.user_id), task.id);
    let mut response = with_task(StatusCode::CREATED, task);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Lists, filters, searches and sorts tasks, a page at a time.
#[utoipa::path(
    get, path = "/api/{user_id}/tasks", tag = "tasks",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("status" = Option<String>, Query, description = "all (default) | pending | completed"),
        ("priority" = Option<String>, Query, description = "high | medium | low"),
        ("tag" = Option<Vec<String>>, Query, description = "Repeatable; every tag must match"),
        ("q" = Option<String>, Query, description = "Case-insensitive search in title and description"),
        ("due_before" = Option<String>, Query, description = "RFC 3339; tasks due strictly before"),
        ("due_after" = Option<String>, Query, description = "RFC 3339; tasks due strictly after"),
        ("sort" = Option<String>, Query, description = "created_at (default) | due_at | priority | title"),
        ("order" = Option<String>, Query, description = "asc | desc; default desc for created_at and priority, asc for due_at and title"),
        ("limit" = Option<i64>, Query, description = "1..200, default 50"),
        ("cursor" = Option<String>, Query, description = "Opaque, from `next_cursor`"),
    ),
    responses(
        (status = 200, description = "A page", body = TaskPage),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    user: AuthUser,
    QueryPairs(pairs): QueryPairs,
) -> Result<axum::Json<TaskPage>, ApiError> {
    let query = TaskQuery::parse(&pairs)?;
    let mut items = state.store.list_tasks(&user.user_id, &query).await?;
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| query.cursor_after(last).encode())
    } else {
        None
    };
    Ok(axum::Json(TaskPage { items, next_cursor }))
}

/// One task.
#[utoipa::path(
    get, path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(("user_id" = String, Path, description = "Must equal the token's `sub`"), ("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Absent or another user's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    user: AuthUser,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    tracing::Span::current().record("task_id", tracing::field::display(id));
    let task = state
        .store
        .get_task(&user.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("no such task"))?;
    Ok(with_task(StatusCode::OK, task))
}

/// Updates a task: fields present are set, absent kept, `null` clears.
#[utoipa::path(
    put, path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("id" = String, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, description = "Expected version (`3` or `\"3\"`); 412 if it differs"),
    ),
    request_body(content = TaskUpdateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Absent or another user's", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Version mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    Path((_, id)): Path<(String, String)>,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    tracing::Span::current().record("task_id", tracing::field::display(id));
    let task = api::update(
        state.store.as_ref(),
        &user.user_id,
        id,
        &body,
        &if_match,
        ctx.event_traceparent(),
    )
    .await?;
    Ok(with_task(StatusCode::OK, task))
}

/// Toggles completion, or sets it with `{"completed": bool}`.
#[utoipa::path(
    patch, path = "/api/{user_id}/tasks/{id}/complete", tag = "tasks",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("id" = String, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, description = "Expected version; 412 if it differs"),
    ),
    request_body(content = Option<CompleteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Absent or another user's", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Version mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    Path((_, id)): Path<(String, String)>,
    if_match: IfMatch,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    tracing::Span::current().record("task_id", tracing::field::display(id));
    let task = api::set_completed(
        state.store.as_ref(),
        &user.user_id,
        id,
        body.as_ref(),
        &if_match,
        ctx.event_traceparent(),
    )
    .await?;
    Ok(with_task(StatusCode::OK, task))
}

/// Deletes a task.
#[utoipa::path(
    delete, path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("id" = String, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, description = "Expected version; 412 if it differs"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Absent or another user's", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Version mismatch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    Path((_, id)): Path<(String, String)>,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    let id = task_id(&id)?;
    tracing::Span::current().record("task_id", tracing::field::display(id));
    api::delete(
        state.store.as_ref(),
        &user.user_id,
        id,
        &if_match,
        ctx.event_traceparent(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
