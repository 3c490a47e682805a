//! Browsers on other origins (`TODO_CORS_ORIGINS`): CORS for HTTP, an `Origin` check for the
//! WebSocket handshake.
//!
//! Requests whose `Origin` is one of the allowed origins pass through tower-http's
//! [`CorsLayer`], which answers their preflights and adds the CORS headers to their answers.
//! Every other request (no `Origin`, or one not in the list) bypasses it and is served
//! exactly as without CORS: an `OPTIONS` is still a 405 with `Allow`, and no
//! `Access-Control-*` header is sent. With no origins configured the middleware is not
//! installed at all.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::middleware::REQUEST_ID;
use crate::config::CorsOrigins;
use crate::state::AppState;

/// How long a browser may cache a preflight's answer.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// Methods a page may use.
pub const ALLOWED_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The CORS policy for the allowed origins: what [`apply`] runs them through.
#[derive(Clone)]
pub struct Cors {
    origins: CorsOrigins,
    layer: CorsLayer,
}

impl Cors {
    /// The policy for `origins`; `None` when there are none (then nothing changes).
    pub fn new(origins: &CorsOrigins) -> Option<Arc<Cors>> {
        if origins.is_empty() {
            return None;
        }
        // Each origin was checked at start (`config::parse_origin`), so it is a valid value.
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods(ALLOWED_METHODS)
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                REQUEST_ID.clone(),
                TRACEPARENT.clone(),
            ])
            .expose_headers([header::LOCATION, header::ETAG, REQUEST_ID.clone()])
            .max_age(MAX_AGE);
        // No `allow_credentials`: tokens travel in the Authorization header, not cookies.
        Some(Arc::new(Cors {
            origins: origins.clone(),
            layer,
        }))
    }
}

/// Sends requests from an allowed origin through the CORS layer (which answers preflights
/// itself, before routing and authentication), and every other request straight on.
pub async fn apply(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let allowed = request
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|origin| cors.origins.allows(origin.as_bytes()));
    if allowed {
        let service = cors.layer.layer(next);
        return match service.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let mut response = next.run(request).await;
    // The answer would have differed for an allowed origin: caches must key on it.
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Whether `origin` is the server's own (a page it served itself, or one behind the same
/// front): its host and port are the request's `Host`. Such a page needs no CORS, so it
/// needs no listing either.
fn same_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let authority = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    match (authority, host.and_then(|h| h.to_str().ok())) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// Refuses a request whose `Origin` header names an origin that is not allowed (and is
/// not the server's own). Requests
/// without one (non-browser clients) pass. Used on the WebSocket handshake, which browsers
/// open from any page without asking CORS.
#[derive(Debug, Clone, Copy)]
pub struct OriginAllowed;

impl FromRequestParts<AppState> for OriginAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::ORIGIN) {
            None => Ok(OriginAllowed),
            Some(origin) if state.cors_origins.allows(origin.as_bytes()) => Ok(OriginAllowed),
            Some(origin) if same_origin(origin, parts.headers.get(header::HOST)) => {
                Ok(OriginAllowed)
            }
            Some(origin) => {
                tracing::debug!(origin = ?origin, "WebSocket handshake from an origin that is not allowed");
                Err(ApiError::OriginNotAllowed)
            }
        }
    }
}
