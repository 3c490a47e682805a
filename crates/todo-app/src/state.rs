//! What handlers and services share.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use todo_auth::Verifier;
use todo_bus::EventBus;
use todo_store::Store;
use todo_telemetry::Metrics;

use crate::config::{CorsOrigins, ServiceSet};
use crate::services::sync::Hub;
use crate::shutdown::ShutdownSignal;

/// Shared state: one reference-counted pointer, so the several clones each request makes
/// (one per extractor and middleware) cost one atomic increment each.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What handlers and services share.
pub struct Shared {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Event transport between services.
    pub bus: Arc<dyn EventBus>,
    /// Checks bearer tokens.
    pub verifier: Verifier,
    /// Prometheus registry and families.
    pub metrics: Arc<Metrics>,
    /// WebSocket fan-out (used when `sync` runs here).
    pub hub: Arc<Hub>,
    /// Which consumers are up, for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// Stops WebSockets and consumers.
    pub shutdown: ShutdownSignal,
    /// Services this process runs.
    pub services: ServiceSet,
    /// WebSocket keep-alive interval.
    pub ws_ping: Duration,
    /// The most a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Origins whose browser pages may call the API and open the WebSocket.
    pub cors_origins: CorsOrigins,
    /// Fault injection (`TODO_FAULTS_ENABLED`), for drills and alert tests.
    pub faults: Arc<crate::faults::Faults>,
    /// The OpenAPI document, set once the router is built.
    pub openapi: Arc<std::sync::OnceLock<serde_json::Value>>,
}

/// Consumers register here and flag whether they are running.
#[derive(Debug, Default)]
pub struct Readiness {
    consumers: Mutex<BTreeMap<&'static str, Arc<AtomicBool>>>,
}

impl Readiness {
    /// Whether any consumer runs in this process.
    pub fn has_consumers(&self) -> bool {
        !self
            .consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// Registers a consumer (not yet running) and returns its flag.
    pub fn register(&self, name: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, flag.clone());
        flag
    }

    /// Names of registered consumers that are not running.
    pub fn stopped(&self) -> Vec<&'static str> {
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(_, running)| !running.load(Ordering::Acquire))
            .map(|(name, _)| *name)
            .collect()
    }
}
