//! `GET`/`PUT /admin/faults`: the fault switch ([`crate::faults`]), routed only when
//! `TODO_FAULTS_ENABLED=true`. Never enable it in production: anyone who can reach the port
//! can slow the consumers or fail requests.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::JsonBody;
use crate::faults::FaultSettings;
use crate::state::AppState;

/// The faults in force.
pub async fn show(State(state): State<AppState>) -> Response {
    Json(state.faults.settings()).into_response()
}

/// Replaces the faults in force; answers with them.
pub async fn set(
    State(state): State<AppState>,
    JsonBody(settings): JsonBody<FaultSettings>,
) -> Result<Response, ApiError> {
    state.faults.set(settings).map_err(ApiError::BadRequest)?;
    Ok(Json(state.faults.settings()).into_response())
}
