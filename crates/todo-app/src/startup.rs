//! Building and running the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::SecretString;
use todo_bus::memory::MemoryBus;
use todo_bus::{EventBus, Publisher};
use todo_store::EventLog;
use todo_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::config::{BusKind, ServeSettings, Service};
use crate::http;
use crate::metered::{MeteredLog, MeteredStore, Outage};
use crate::services::consumer::{self, Handler};
use crate::services::webhook::WebhookConfig;
use crate::services::{audit, notification, recurring, relay, retention, sync, webhook};
use crate::shutdown::Shutdown;
use crate::state::{AppState, Readiness, Shared};

/// A built application: listener bound, store open and migrated, nothing running yet.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// The outbox as a log, for the log trimmer (the bus holds its own handle).
    log: Arc<dyn EventLog>,
    shutdown: Shutdown,
    webhook: Option<WebhookConfig>,
    shutdown_timeout: Duration,
    /// Event-log retention, when this process owns the whole embedded log.
    retention: Option<Duration>,
    /// The outbox, read in commit order (the relay's source).
    outbox: Arc<dyn EventBus>,
    /// Where the relay publishes, with a broker bus.
    publisher: Option<Arc<dyn Publisher>>,
    /// Attempts before a failing event is dead-lettered.
    max_attempts: u32,
    /// The broker's name of each topic (none on the in-process bus), for metric labels.
    broker_topics: Option<Vec<(todo_domain::Topic, String)>>,
    /// The Dapr bus, whose subscription routes this process serves.
    #[cfg(feature = "dapr")]
    dapr: Option<Arc<todo_bus::dapr::DaprBus>>,
    /// The token the sidecar must send on its calls to the subscription routes.
    #[cfg(feature = "dapr")]
    app_api_token: Option<SecretString>,
    started: Instant,
}

impl Application {
    /// Opens the store, builds the bus and binds the listener.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        let started = Instant::now();
        settings.validate()?;
        let database_url = settings.common.database_url()?;
        let metrics = Metrics::new();
        let backend = todo_store::connect(&database_url)
            .await
            .context("cannot open the store named by DATABASE_URL")?;
        let outage = Outage::default();
        metrics.store.init(&crate::metered::STORE_OPS);
        let store: Arc<dyn todo_store::Store> = Arc::new(MeteredStore::new(
            backend.store,
            metrics.clone(),
            outage.clone(),
        ));
        let log: Arc<dyn EventLog> =
            Arc::new(MeteredLog::new(backend.log, metrics.clone(), outage));
        // Weak: the store's wrapper holds the metrics, which would otherwise hold the store.
        let pools = Arc::downgrade(&store);
        metrics.report_pools(move || {
            pools
                .upgrade()
                .map(|store| store.pools())
                .unwrap_or_default()
                .into_iter()
                .map(|p| todo_telemetry::PoolStatus {
                    pool: p.pool,
                    size: p.size,
                    idle: p.idle,
                    waiting: p.waiting,
                })
                .collect()
        });
        let outbox: Arc<dyn EventBus> = Arc::new(MemoryBus::new(log.clone()));
        #[cfg(feature = "dapr")]
        let mut dapr = None;
        #[allow(unused_mut)] // set only by the broker buses, which are features
        let mut broker_topics = None;
        let (bus, publisher): (Arc<dyn EventBus>, Option<Arc<dyn Publisher>>) = match settings.bus {
            BusKind::Memory => (outbox.clone(), None),
            #[cfg(feature = "kafka")]
            BusKind::Kafka => {
                broker_topics = Some(topic_names(&settings.topics.names()));
                let config = settings.kafka.config(
                    settings.kafka_brokers.as_deref().unwrap_or_default(),
                    settings.topics.names(),
                )?;
                let kafka = Arc::new(todo_bus::kafka::KafkaBus::new(config)?);
                (kafka.clone(), Some(kafka))
            }
            #[cfg(feature = "dapr")]
            BusKind::Dapr => {
                broker_topics = Some(topic_names(&settings.topics.names()));
                let config = settings.dapr.config(settings.topics.names())?;
                let bus = Arc::new(todo_bus::dapr::DaprBus::new(config)?);
                dapr = Some(bus.clone());
                (bus.clone(), Some(bus))
            }
            #[cfg(not(all(feature = "kafka", feature = "dapr")))]
            other => anyhow::bail!("TODO_BUS={other:?} is not available in this build"),
        };
        consumer::set_messaging_system(match settings.bus {
            BusKind::Memory => "todo_outbox",
            BusKind::Kafka => "kafka",
            BusKind::Dapr => "dapr",
        });
        let verifier = settings.common.verifier()?;
        let hub = Arc::new(sync::Hub::new(settings.ws_queue as usize, metrics.clone()));
        let (shutdown, signal) = Shutdown::new();
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| {
                format!("cannot listen on TODO_LISTEN_ADDR {}", settings.listen_addr)
            })?;
        let webhook = match (
            &settings.notify_webhook_url,
            &settings.notify_webhook_secret,
        ) {
            (Some(url), Some(secret)) => Some(WebhookConfig {
                url: url.clone(),
                secret: SecretString::from(secrecy::ExposeSecret::expose_secret(secret).to_owned()),
                retry_base: Duration::from_millis(settings.notify_webhook_retry_ms),
                max_attempts: settings.notify_webhook_max_attempts,
            }),
            _ => None,
        };
        let state = AppState::new(Shared {
            store,
            bus,
            verifier,
            metrics,
            hub,
            readiness: Arc::new(Readiness::default()),
            shutdown: signal,
            services: settings.services.clone(),
            ws_ping: Duration::from_secs(settings.ws_ping_secs),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            cors_origins: settings.cors_origins.clone(),
            faults: Arc::new(crate::faults::Faults::new(settings.faults_enabled)),
            openapi: Arc::default(),
        });
        Ok(Application {
            listener,
            state,
            log,
            shutdown,
            webhook,
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs),
            retention: (settings.bus == BusKind::Memory
                && settings.services == crate::config::ServiceSet::all()
                && settings.event_retention_hours > 0)
                .then(|| Duration::from_secs(settings.event_retention_hours.saturating_mul(3600))),
            outbox,
            publisher,
            max_attempts: settings.consumer_max_attempts,
            broker_topics,
            #[cfg(feature = "dapr")]
            dapr,
            #[cfg(feature = "dapr")]
            app_api_token: settings.dapr.app_api_token.clone(),
            started,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The name a delivery from `topic` carries: the broker's topic name, or the logical one.
    fn topic_label(&self, topic: todo_domain::Topic) -> String {
        self.broker_topics
            .as_ref()
            .and_then(|names| names.iter().find(|(t, _)| *t == topic))
            .map_or_else(|| topic.as_str().to_owned(), |(_, name)| name.clone())
    }

    /// The topics a consumer of `topics` gets deliveries from, as labelled, with the event
    /// types each carries. The in-process bus delivers the fan-out topic's events under
    /// their own topics.
    fn consumed_topics(&self, topics: &[todo_domain::Topic]) -> Vec<(String, Vec<&'static str>)> {
        use todo_domain::{EventType, Topic};
        let topics = match self.broker_topics {
            Some(_) => topics.to_vec(),
            None => Topic::in_outbox(topics),
        };
        topics
            .into_iter()
            .map(|topic| {
                let types = EventType::ALL
                    .into_iter()
                    .filter(|t| topic == Topic::TaskUpdates || t.topic() == topic)
                    .map(EventType::as_str)
                    .collect();
                (self.topic_label(topic), types)
            })
            .collect()
    }

    fn spawn_services(&self, tasks: &mut JoinSet<()>) {
        let state = &self.state;
        let mut handlers: Vec<Arc<dyn Handler>> = Vec::new();
        let schedule_changed = Arc::new(Notify::new());
        for service in state.services.iter() {
            match service {
                Service::Api => {}
                Service::Recurring => handlers.push(Arc::new(recurring::Recurring::new(
                    state.store.clone(),
                    state.metrics.clone(),
                ))),
                Service::Notification => {
                    handlers.push(Arc::new(notification::Planner::new(
                        state.store.clone(),
                        schedule_changed.clone(),
                    )));
                    let webhook_wake = self.webhook.as_ref().map(|_| Arc::new(Notify::new()));
                    tasks.spawn(notification::run_scheduler(
                        state.store.clone(),
                        state.metrics.clone(),
                        schedule_changed.clone(),
                        webhook_wake.clone(),
                        state.shutdown.clone(),
                    ));
                    if let (Some(config), Some(wake)) = (self.webhook.clone(), webhook_wake) {
                        tasks.spawn(webhook::run(
                            state.store.clone(),
                            config,
                            state.metrics.clone(),
                            wake,
                            state.shutdown.clone(),
                        ));
                    }
                }
                Service::Sync => handlers.push(Arc::new(sync::Sync::new(state.hub.clone()))),
                Service::Audit => handlers.push(Arc::new(audit::Audit::new(state.store.clone()))),
            }
        }
        // The relay runs beside `api`, which writes most events (the outbox keeps the
        // others, next occurrences and reminders, until it relays them); with several `api`
        // replicas one of them holds the lead and relays.
        if let Some(publisher) = &self.publisher
            && state.services.contains(Service::Api)
        {
            let topics: Vec<String> = todo_domain::Topic::ALL
                .into_iter()
                .map(|t| self.topic_label(t))
                .collect();
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            state.metrics.events.init_relay(&topics);
            let in_flight = Arc::new(relay::InFlight::default());
            tasks.spawn(relay::run(
                state.store.clone(),
                self.outbox.clone(),
                publisher.clone(),
                state.metrics.clone(),
                in_flight.clone(),
                state.shutdown.clone(),
            ));
            tasks.spawn(relay::report_backlog(
                self.outbox.clone(),
                state.metrics.clone(),
                in_flight,
                state.shutdown.clone(),
            ));
        }
        // The sidecar asks for the subscriptions once, as soon as the app listens.
        #[cfg(feature = "dapr")]
        if let Some(dapr) = &self.dapr {
            for handler in &handlers {
                dapr.declare(handler.name(), handler.topics());
            }
        }
        let lag_targets = handlers.iter().map(|h| (h.name(), h.topics())).collect();
        if let Some(retention) = self.retention {
            let consumers = handlers.iter().map(|h| h.name()).collect();
            tasks.spawn(retention::run(
                self.log.clone(),
                consumers,
                retention,
                state.shutdown.clone(),
            ));
        }
        for handler in &handlers {
            // Every series of the consumer at zero, under the topic names deliveries carry.
            let topics = self.consumed_topics(handler.topics());
            let topics: Vec<(&str, &[&'static str])> = topics
                .iter()
                .map(|(topic, types)| (topic.as_str(), types.as_slice()))
                .collect();
            state.metrics.events.init_consumer(handler.name(), &topics);
        }
        for handler in handlers {
            let running = state.readiness.register(handler.name());
            tasks.spawn(consumer::run(
                state.bus.clone(),
                handler,
                state.store.clone(),
                state.metrics.clone(),
                running,
                self.max_attempts,
                state.faults.clone(),
                state.shutdown.clone(),
            ));
        }
        tasks.spawn(consumer::report_lag(
            state.bus.clone(),
            lag_targets,
            state.metrics.clone(),
            state.shutdown.clone(),
        ));
    }

    /// Routes the bus needs served: the Dapr subscription routes, in Dapr mode.
    fn bus_routes(&self) -> axum::Router<AppState> {
        #[cfg(feature = "dapr")]
        if let Some(dapr) = &self.dapr {
            return http::dapr::routes(
                dapr.clone(),
                self.state.request_timeout,
                self.app_api_token.clone(),
            );
        }
        axum::Router::new()
    }

    /// Serves until `stop` resolves, then shuts down gracefully: stop accepting, drain
    /// requests, close WebSockets with 1001, let consumers finish their batch. Whatever is
    /// still running after the shutdown timeout is abandoned (events are redelivered).
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let mut tasks = JoinSet::new();
        self.spawn_services(&mut tasks);
        let router = http::router_with(self.state.clone(), self.bus_routes());
        // When the signal came: one deadline for the whole shutdown is counted from it.
        let stopped_at: Arc<std::sync::OnceLock<tokio::time::Instant>> = Arc::default();
        let graceful = {
            let (stopped_at, shutdown, hub) = (
                stopped_at.clone(),
                self.shutdown.clone(),
                self.state.hub.clone(),
            );
            async move {
                stop.await;
                let _ = stopped_at.set(tokio::time::Instant::now());
                shutdown.trigger();
                hub.close_all();
            }
        };
        if !self.state.cors_origins.is_empty() {
            tracing::info!(origins = %self.state.cors_origins, "browser origins allowed (CORS)");
        }
        tracing::info!(
            addr = %addr,
            services = %self.state.services,
            startup_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "listening"
        );
        let server = axum::serve(self.listener, router)
            .with_graceful_shutdown(graceful)
            .into_future();
        let timeout = self.shutdown_timeout;
        let until = {
            let stopped_at = stopped_at.clone();
            move || {
                stopped_at
                    .get()
                    .copied()
                    .unwrap_or_else(tokio::time::Instant::now)
                    + timeout
            }
        };
        let mut signal = self.state.shutdown.clone();
        let deadline = async {
            signal.wait().await;
            tokio::time::sleep_until(until()).await;
        };
        tokio::select! {
            result = server => result.context("the HTTP server failed")?,
            () = deadline => {
                tracing::warn!("requests still running at the shutdown deadline; abandoning them");
                return Ok(());
            }
        }
        let until = until();
        let drained =
            tokio::time::timeout_at(until, async { while tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!("background work still running at the shutdown deadline; abandoning it");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Each topic's broker name.
#[cfg(any(feature = "kafka", feature = "dapr"))]
fn topic_names(names: &todo_bus::TopicNames) -> Vec<(todo_domain::Topic, String)> {
    todo_domain::Topic::ALL
        .into_iter()
        .map(|t| (t, names.name(t).to_owned()))
        .collect()
}
