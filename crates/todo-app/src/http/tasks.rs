//! Task routes.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use todo_domain::{CompleteRequest, NewTaskRequest, Task, TaskQuery, TaskUpdateRequest};
use todo_store::TaskJson;

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

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// A response whose JSON body is already rendered.
fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_static("application/json");
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn with_task(status: StatusCode, task: Task) -> Response {
    tagged(status, TaskJson::from_task(&task))
}

/// A task's JSON, with the `ETag` of its version.
fn tagged(status: StatusCode, task: TaskJson) -> Response {
    let mut response = json(status, task.json);
    response
        .headers_mut()
        .insert(header::ETAG, etag(task.version));
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
    request_body(content = NewTaskRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Task,
            headers(("Location" = String, description = "URL of the new task"), ("ETag" = String, description = "\"<version>\""))),
    )
)]
pub async fn create_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<NewTaskRequest>,
) -> Result<Response, ApiError> {
    let task = api::create(
        state.store.as_ref(),
        &user.user_id,
        &body,
        ctx.event_traceparent(),
    )
    .await
    .inspect_err(|e| {
        let status = e.status();
        if status.is_server_error() {
            // The one line an operator searches for when tasks cannot be created.
            tracing::error!(status = status.as_u16(), error = %e, "task creation failed");
        }
    })?;
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
        TaskQuery,
    ),
    responses(
        (status = 200, description = "A page", body = TaskPage),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    user: AuthUser,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let query = TaskQuery::parse(&pairs)?;
    let page = state.store.list_tasks_json(&user.user_id, &query).await?;
    let next_cursor = match &page.last {
        Some(last) => {
            let last: Task = serde_json::from_str(last).map_err(|e| {
                ApiError::from(todo_store::StoreError::Corrupt(format!(
                    "a stored task's JSON does not read back: {e}"
                )))
            })?;
            Some(query.cursor_after(&last).encode())
        }
        None => None,
    };
    let body = page.finish(next_cursor.as_deref());
    Ok(json(StatusCode::OK, body))
}

/// One task.
#[utoipa::path(
    get, path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(("user_id" = String, Path, description = "Must equal the token's `sub`"), ("id" = uuid::Uuid, Path, description = "Task id (any other string names no task: 404)")),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
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
        .get_task_json(&user.user_id, id)
        .await?
        .ok_or(ApiError::NotFound("no such task"))?;
    Ok(tagged(StatusCode::OK, task))
}

/// Updates a task: fields present are set, absent kept, `null` clears.
#[utoipa::path(
    put, path = "/api/{user_id}/tasks/{id}", tag = "tasks",
    params(
        ("user_id" = String, Path, description = "Must equal the token's `sub`"),
        ("id" = uuid::Uuid, Path, description = "Task id (any other string names no task: 404)"),
        IfMatch,
    ),
    request_body(content = TaskUpdateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
    )
)]
pub async fn update_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    Path((_, id)): Path<(String, String)>,
    if_match: IfMatch,
    JsonBody(body): JsonBody<TaskUpdateRequest>,
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
        ("id" = uuid::Uuid, Path, description = "Task id (any other string names no task: 404)"),
        IfMatch,
    ),
    request_body(content = CompleteRequest, content_type = "application/json", description = "Optional: without a body (or with `{}`) completion toggles"),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "\"<version>\""))),
    )
)]
pub async fn complete_task(
    State(state): State<AppState>,
    user: AuthUser,
    Extension(ctx): Extension<RequestContext>,
    Path((_, id)): Path<(String, String)>,
    if_match: IfMatch,
    OptionalJsonBody(body): OptionalJsonBody<CompleteRequest>,
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
        ("id" = uuid::Uuid, Path, description = "Task id (any other string names no task: 404)"),
        IfMatch,
    ),
    responses(
        (status = 204, description = "Deleted"),
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
