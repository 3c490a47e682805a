//! The HTTP surface: routes per service, merged into one router, plus the middleware every
//! request passes (request id and trace context, metrics, CORS for the configured origins,
//! body limit, problem+json for errors the router itself produces, panics turned into 500s).

pub mod auth;
pub mod cors;
#[cfg(feature = "dapr")]
pub mod dapr;
pub mod error;
pub mod extract;
pub mod faults;
pub mod lists;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod tasks;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;

use self::openapi::ApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Service, ServiceSet};
use crate::state::AppState;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The routes this process serves, and the OpenAPI description of the whole platform.
///
/// A client reads the document through the platform's front door, where every service's
/// routes are served (the split deployment routes each path to the process running its
/// service), so it describes the routes of all five services, not only this process's. Both
/// come from the same registrations, so the document cannot name a route that no service
/// serves, nor miss one that a service does.
pub fn api_routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, _) = registrations(&state.services).split_for_parts();
    let (_, doc) = registrations(&ServiceSet::all()).split_for_parts();
    (router, doc)
}

/// The routes of `services`, each with its OpenAPI operation.
fn registrations(services: &ServiceSet) -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    if services.contains(Service::Api) {
        router = router
            .routes(routes!(tasks::create_task, tasks::list_tasks))
            .routes(routes!(
                tasks::get_task,
                tasks::update_task,
                tasks::delete_task
            ))
            .routes(routes!(tasks::complete_task));
    }
    if services.contains(Service::Audit) {
        router = router.routes(routes!(lists::list_audit));
    }
    if services.contains(Service::Notification) {
        router = router
            .routes(routes!(lists::list_reminders))
            .routes(routes!(lists::list_notifications));
    }
    if services.contains(Service::Sync) {
        router = router.routes(routes!(ws::connect));
    }
    router = router
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics));
    if services.contains(Service::Api) {
        router = router.routes(routes!(ops::openapi));
    }
    router
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The complete application router, with `extra` routes (the bus's) that the OpenAPI
/// document does not describe, behind the same middleware.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let (router, doc) = api_routes(&state);
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    openapi::finish(&mut doc);
    let _ = state.openapi.set(doc);
    let mut router = router.merge(extra);
    if state.faults.enabled() {
        router = router.route(
            "/admin/faults",
            axum::routing::get(faults::show).put(faults::set),
        );
    }
    let mut router = router
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::deadline,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_bare_errors,
        ));
    // Layers wrap each route (and the fallback) after routing, so a preflight answered here
    // never meets the method router's 405 or the auth extractor, while `observe` (outside)
    // still counts and logs it under its route, and error answers (inside) get CORS headers.
    if let Some(cors) = cors::Cors::new(&state.cors_origins) {
        router = router.layer(axum::middleware::from_fn_with_state(cors, cors::apply));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .with_state(state)
}
