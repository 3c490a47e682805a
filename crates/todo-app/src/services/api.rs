//! The `api` service's task operations: validate, write the task and its event together.
//!
//! Writes are optimistic: read, compute the new task in the domain, then write guarded by
//! the version read. A concurrent change makes the guard miss; without `If-Match` the
//! operation simply runs again on the fresh task, with `If-Match` it is a 412.

use todo_domain::input::{complete, parse_complete_body};
use todo_domain::{
    CloudEvent, CompleteRequest, CreateTask, EventType, NewTaskRequest, Task, TaskPatch,
    TaskUpdateRequest, time,
};
use todo_store::{Store, StoreError};
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::extract::IfMatch;

const SERVICE: &str = "api";
/// Optimistic retries before giving up on a hot task.
const RETRIES: usize = 5;

/// Creates a task from a request body.
pub async fn create(
    store: &dyn Store,
    user_id: &str,
    body: &NewTaskRequest,
    traceparent: Option<String>,
) -> Result<Task, ApiError> {
    let now = time::now();
    let task = CreateTask::parse(body)?.into_task(Uuid::now_v7(), user_id, now);
    let event = CloudEvent::task(EventType::TaskCreated, SERVICE, &task, now, traceparent);
    store.insert_task(&task, &event).await?;
    Ok(task)
}

async fn current(store: &dyn Store, user_id: &str, id: Uuid) -> Result<Task, ApiError> {
    store
        .get_task(user_id, id)
        .await?
        .ok_or(ApiError::NotFound("no such task"))
}

/// Runs `change` on the current task and writes the result, retrying on a concurrent write
/// unless the client pinned a version.
async fn modify(
    store: &dyn Store,
    user_id: &str,
    id: Uuid,
    if_match: &IfMatch,
    traceparent: Option<String>,
    change: impl Fn(&Task) -> Result<Option<Task>, ApiError>,
) -> Result<Task, ApiError> {
    for _ in 0..RETRIES {
        let task = current(store, user_id, id).await?;
        if_match.check(task.version)?;
        let Some(next) = change(&task)? else {
            return Ok(task); // nothing changed: no new version, no event
        };
        let kind = if next.completed && !task.completed {
            EventType::TaskCompleted
        } else {
            EventType::TaskUpdated
        };
        let event = CloudEvent::task(kind, SERVICE, &next, next.updated_at, traceparent.clone());
        match store.update_task(&next, task.version, &event).await {
            Ok(()) => return Ok(next),
            Err(StoreError::VersionConflict { current }) if if_match.is_pinned() => {
                return Err(ApiError::PreconditionFailed { current });
            }
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(
        "the task is changing too fast; retry".into(),
    ))
}

/// `PUT`: applies a patch body.
pub async fn update(
    store: &dyn Store,
    user_id: &str,
    id: Uuid,
    body: &TaskUpdateRequest,
    if_match: &IfMatch,
    traceparent: Option<String>,
) -> Result<Task, ApiError> {
    let patch = TaskPatch::parse(body)?;
    modify(store, user_id, id, if_match, traceparent, |task| {
        Ok(patch.apply(task, time::now())?)
    })
    .await
}

/// `PATCH .../complete`: toggles, or sets `{"completed": bool}`.
pub async fn set_completed(
    store: &dyn Store,
    user_id: &str,
    id: Uuid,
    body: Option<&CompleteRequest>,
    if_match: &IfMatch,
    traceparent: Option<String>,
) -> Result<Task, ApiError> {
    let wanted = parse_complete_body(body)?;
    modify(store, user_id, id, if_match, traceparent, |task| {
        Ok(complete(task, wanted, time::now()))
    })
    .await
}

/// `DELETE`.
pub async fn delete(
    store: &dyn Store,
    user_id: &str,
    id: Uuid,
    if_match: &IfMatch,
    traceparent: Option<String>,
) -> Result<(), ApiError> {
    for _ in 0..RETRIES {
        let task = current(store, user_id, id).await?;
        if_match.check(task.version)?;
        let event = CloudEvent::task(
            EventType::TaskDeleted,
            SERVICE,
            &task,
            time::now(),
            traceparent.clone(),
        );
        match store.delete_task(user_id, id, task.version, &event).await {
            Ok(()) => return Ok(()),
            Err(StoreError::VersionConflict { current }) if if_match.is_pinned() => {
                return Err(ApiError::PreconditionFailed { current });
            }
            Err(StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable(
        "the task is changing too fast; retry".into(),
    ))
}
