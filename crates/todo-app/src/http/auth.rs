//! Bearer-token authentication and the `{user_id}` ownership check.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use todo_auth::AuthError;

use super::error::ApiError;
use crate::state::AppState;

/// The caller, authenticated, and allowed to act on the `{user_id}` in the path.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The token's `sub`, equal to the path's `{user_id}`.
    pub user_id: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `?access_token=` (RFC 6750 §2.3), accepted on the WebSocket route only, where browsers
/// cannot set headers.
fn query_token(parts: &Parts) -> Option<String> {
    if !parts.uri.path().ends_with("/ws") {
        return None;
    }
    let query = parts.uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = match bearer(&parts.headers) {
            Some(token) => token.to_owned(),
            None => query_token(parts).ok_or(ApiError::Unauthorized)?,
        };
        let claims = state.verifier.verify(&token).await.map_err(|e| {
            tracing::debug!(reason = e.kind(), "token rejected");
            match e {
                AuthError::JwksUnavailable(_) => {
                    ApiError::Unavailable("JWKS endpoint unreachable".into())
                }
                _ => ApiError::Unauthorized,
            }
        })?;
        // The subject becomes a stored user id: one no store can hold is not a usable token.
        if claims.sub.is_empty() || !claims.sub.chars().all(todo_domain::text::allowed_in_line) {
            tracing::debug!(reason = "subject", "token rejected");
            return Err(ApiError::Unauthorized);
        }
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such route"))?;
        let path_user = params
            .iter()
            .find(|(name, _)| *name == "user_id")
            .map(|(_, value)| value)
            .ok_or(ApiError::NotFound("no such route"))?;
        if path_user != claims.sub {
            tracing::Span::current().record("user_id", claims.sub.as_str());
            return Err(ApiError::Forbidden);
        }
        tracing::Span::current().record("user_id", claims.sub.as_str());
        Ok(AuthUser {
            user_id: claims.sub,
        })
    }
}
