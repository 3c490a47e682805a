//! Settings: the contract's environment variables, each with a matching flag, checked once
//! at start so a bad value stops the process with a message naming the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use todo_telemetry::LogFormat;

/// The five services one process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Task CRUD, search, auth; publishes task events.
    Api,
    /// Creates the next occurrence of completed recurring tasks.
    Recurring,
    /// Schedules and delivers reminders.
    Notification,
    /// Pushes events to WebSocket clients.
    Sync,
    /// Records every event.
    Audit,
}

impl Service {
    /// All five, in start order.
    pub const ALL: [Service; 5] = [
        Service::Api,
        Service::Recurring,
        Service::Notification,
        Service::Sync,
        Service::Audit,
    ];

    /// The name used in `TODO_SERVICES` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Api => "api",
            Service::Recurring => "recurring",
            Service::Notification => "notification",
            Service::Sync => "sync",
            Service::Audit => "audit",
        }
    }
}

/// A non-empty set of services (`api,audit`, or `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSet(Vec<Service>);

impl ServiceSet {
    /// Every service.
    pub fn all() -> Self {
        ServiceSet(Service::ALL.to_vec())
    }

    /// Whether `service` runs in this process.
    pub fn contains(&self, service: Service) -> bool {
        self.0.contains(&service)
    }

    /// The services, in start order.
    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for ServiceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for ServiceSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "all" {
            return Ok(Self::all());
        }
        let mut set = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let service = Service::ALL
                .into_iter()
                .find(|svc| svc.as_str() == name)
                .ok_or_else(|| format!("unknown service {name:?}; choose from api, recurring, notification, sync, audit (or all)"))?;
            if !set.contains(&service) {
                set.push(service);
            }
        }
        if set.is_empty() {
            return Err(
                "name at least one service: api, recurring, notification, sync, audit (or all)"
                    .into(),
            );
        }
        set.sort();
        Ok(ServiceSet(set))
    }
}

/// The origins a browser page may call the API from (`TODO_CORS_ORIGINS`): exact
/// `scheme://host[:port]` values, as browsers send them in the `Origin` header. Empty (the
/// default) allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

impl CorsOrigins {
    /// Whether no origin is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The allowed origins, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(String::as_str)
    }

    /// Whether `origin` (an `Origin` header's bytes) is one of the allowed origins, compared
    /// exactly, as browsers send it (lower-case scheme and host, no default port).
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0.iter().any(|allowed| allowed.as_bytes() == origin)
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl FromStr for CorsOrigins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut origins = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let origin = parse_origin(raw)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(CorsOrigins(origins))
    }
}

/// One exact origin: `http` or `https`, a host, an optional port; nothing else.
fn parse_origin(raw: &str) -> Result<String, String> {
    const SHAPE: &str = "expected scheme://host[:port], e.g. https://app.example.com";
    if raw.contains('*') {
        return Err(format!(
            "{raw:?} is not accepted: wildcards are refused because any web page could then call the API with a user's bearer token; list the exact origins"
        ));
    }
    let url =
        reqwest::Url::parse(raw).map_err(|e| format!("{raw:?} is not an origin ({e}); {SHAPE}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{raw:?}: the scheme must be http or https; {SHAPE}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host; {SHAPE}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{raw:?} must not carry a user name or password; {SHAPE}"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{raw:?} must not have a path, query or fragment; {SHAPE}"
        ));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != raw {
        // A trailing slash, upper case, or a default port: browsers would never send it so.
        return Err(format!(
            "{raw:?} is not written as browsers send it in the Origin header; write {canonical:?}"
        ));
    }
    Ok(canonical)
}

/// Which event bus carries events between services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BusKind {
    /// In-process and durable (the store's outbox): the embedded default.
    Memory,
    /// A Kafka-protocol broker.
    Kafka,
    /// Dapr pub/sub through the sidecar.
    Dapr,
}

/// Topic names on the broker, for the buses that have one (`kafka`, `dapr`).
#[derive(Debug, Clone, Args)]
pub struct TopicSettings {
    /// Topic of `task.*` events.
    #[arg(long, env = "TODO_TOPIC_TASK_EVENTS", default_value = "task-events")]
    pub topic_task_events: String,

    /// Topic of `reminder.*` events.
    #[arg(long, env = "TODO_TOPIC_REMINDERS", default_value = "reminders")]
    pub topic_reminders: String,

    /// Topic `sync` fans out from (every task and reminder event).
    #[arg(long, env = "TODO_TOPIC_TASK_UPDATES", default_value = "task-updates")]
    pub topic_task_updates: String,

    /// Topic of messages consumers gave up on (Kafka).
    #[arg(
        long,
        env = "TODO_TOPIC_DEAD_LETTERS",
        default_value = "todo-dead-letters"
    )]
    pub topic_dead_letters: String,
}

impl TopicSettings {
    /// The names, as the buses take them.
    pub fn names(&self) -> todo_bus::TopicNames {
        todo_bus::TopicNames {
            task_events: self.topic_task_events.clone(),
            reminders: self.topic_reminders.clone(),
            task_updates: self.topic_task_updates.clone(),
            dead_letters: self.topic_dead_letters.clone(),
        }
    }
}

/// The Dapr sidecar and pub/sub component (`TODO_BUS=dapr`); see docs/dapr.md.
#[derive(Debug, Clone, Args)]
pub struct DaprSettings {
    /// The sidecar's HTTP API, `http://host:port`; wins over `DAPR_HTTP_PORT`.
    #[arg(long, env = "DAPR_HTTP_ENDPOINT")]
    pub dapr_http_endpoint: Option<String>,

    /// The sidecar's HTTP port on 127.0.0.1, when `DAPR_HTTP_ENDPOINT` is unset.
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// The Dapr pub/sub component's name.
    #[arg(long, env = "TODO_DAPR_PUBSUB", default_value = "pubsub")]
    pub dapr_pubsub: String,

    /// Token the sidecar requires on calls to its API (Dapr's API token).
    #[arg(long, env = "DAPR_API_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub dapr_api_token: Option<SecretString>,

    /// Token the sidecar sends (`dapr-api-token`) on its calls to the app; when set, the
    /// subscription routes refuse calls without it.
    #[arg(long, env = "APP_API_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub app_api_token: Option<SecretString>,
}

#[cfg(feature = "dapr")]
impl DaprSettings {
    /// The bus configuration, with every setting checked.
    pub fn config(
        &self,
        topics: todo_bus::TopicNames,
    ) -> anyhow::Result<todo_bus::dapr::DaprConfig> {
        let endpoint = match &self.dapr_http_endpoint {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{}", self.dapr_http_port),
        };
        let mut config = todo_bus::dapr::DaprConfig::new(endpoint);
        config.pubsub = self.dapr_pubsub.clone();
        config.topics = topics;
        config.api_token = self
            .dapr_api_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        config.validate()?;
        Ok(config)
    }
}

/// Kafka security and tuning (`TODO_BUS=kafka`); see docs/configuration.md and,
/// per cloud, docs/kafka.md.
#[derive(Debug, Clone, Args)]
pub struct KafkaSettings {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext")]
    pub kafka_security_protocol: String,

    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*` protocol).
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SASL password (prefer `KAFKA_SASL_PASSWORD_FILE`).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub kafka_sasl_password: Option<SecretString>,

    /// A file holding the SASL password (a mounted secret); trailing newlines are ignored.
    #[arg(long, env = "KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// CA bundle (PEM) to verify the brokers' certificates; the system's when unset.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,

    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<String>,

    /// Client key (PEM), for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<String>,

    /// Consumer group ids are this prefix and the service name (`todo-audit`, ...).
    #[arg(long, env = "TODO_KAFKA_GROUP_PREFIX", default_value = "todo-")]
    pub kafka_group_prefix: String,

    /// Create missing topics at start (turn off where topics are made by the cloud's
    /// console, as on OCI Streaming).
    #[arg(long, env = "TODO_KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,

    /// Partitions of created topics.
    #[arg(long, env = "TODO_KAFKA_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,

    /// Replication factor of created topics.
    #[arg(long, env = "TODO_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub kafka_replication: i32,

    /// Consumer session timeout in milliseconds: how soon a dead member's partitions
    /// move to the others.
    #[arg(long, env = "TODO_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1000..=300_000))]
    pub kafka_session_timeout_ms: u32,

    /// Extra librdkafka properties, `key=value` separated by `;`, applied last.
    #[arg(
        long,
        env = "TODO_KAFKA_PROPERTIES",
        default_value = "",
        hide_default_value = true
    )]
    pub kafka_properties: String,
}

#[cfg(feature = "kafka")]
impl KafkaSettings {
    /// The bus configuration for `brokers`, with every setting checked.
    pub fn config(
        &self,
        brokers: &str,
        topics: todo_bus::TopicNames,
    ) -> anyhow::Result<todo_bus::kafka::KafkaConfig> {
        use todo_bus::kafka::{KafkaConfig, SaslCredentials, SaslMechanism, SecurityProtocol};
        let mut config = KafkaConfig::new(brokers);
        config.security = SecurityProtocol::parse(&self.kafka_security_protocol)?;
        let password = match (&self.kafka_sasl_password, &self.kafka_sasl_password_file) {
            (Some(_), Some(_)) => {
                bail!("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
            }
            (Some(p), None) => Some(p.expose_secret().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!("KAFKA_SASL_PASSWORD_FILE {} cannot be read", path.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        config.sasl = match (
            &self.kafka_sasl_mechanism,
            &self.kafka_sasl_username,
            password,
        ) {
            (None, None, None) => None,
            (Some(mechanism), Some(username), Some(password)) => Some(SaslCredentials {
                mechanism: SaslMechanism::parse(mechanism)?,
                username: username.clone(),
                password,
            }),
            _ => bail!(
                "SASL needs all of KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
            ),
        };
        config.ssl_ca_location = self.kafka_ssl_ca_location.clone();
        config.ssl_certificate_location = self.kafka_ssl_certificate_location.clone();
        config.ssl_key_location = self.kafka_ssl_key_location.clone();
        config.topics = topics;
        config.group_prefix = self.kafka_group_prefix.clone();
        config.create_topics = self.kafka_create_topics;
        config.partitions = self.kafka_partitions;
        config.replication = self.kafka_replication;
        config.session_timeout_ms = self.kafka_session_timeout_ms;
        config.extra = todo_bus::kafka::parse_properties(&self.kafka_properties)?;
        config.validate()?;
        Ok(config)
    }
}

/// Settings shared by every command that touches data or tokens.
#[derive(Debug, Clone, Args)]
pub struct CommonSettings {
    /// Where the embedded default keeps its files (SQLite database, generated JWT secret).
    #[arg(long, env = "TODO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// `sqlite://...` or `postgres://...`; default: a SQLite file under the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    pub database_url: Option<String>,

    /// HS256 secret (at least 32 bytes); generated on first run and kept in the data dir when
    /// neither it nor a JWKS URL is set. Never logged.
    #[arg(long, env = "TODO_JWT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub jwt_secret: Option<SecretString>,

    /// JWKS URL for RS256/ES256/EdDSA tokens.
    #[arg(long, env = "TODO_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Required `iss` claim, when set.
    #[arg(long, env = "TODO_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "TODO_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Log output: `json` (one object per line) or `pretty`.
    #[arg(long, env = "TODO_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// Settings of `todo serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// HTTP listen address (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "TODO_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Services this process runs: a comma-separated subset of api, recurring, notification,
    /// sync, audit, or `all`.
    #[arg(long, env = "TODO_SERVICES", default_value = "all")]
    pub services: ServiceSet,

    /// Event bus: `memory` (in-process, durable), `kafka` or `dapr`.
    #[arg(long, env = "TODO_BUS", value_enum, default_value = "memory")]
    pub bus: BusKind,

    /// Bootstrap servers for `TODO_BUS=kafka`.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub topics: TopicSettings,

    #[command(flatten)]
    pub dapr: DaprSettings,

    /// Attempts at a failing batch, and then at each of its events alone, before an event
    /// that keeps failing is dead-lettered. Failures because the store is unavailable do
    /// not count: those are retried until it is back.
    #[arg(long, env = "TODO_CONSUMER_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub consumer_max_attempts: u32,

    /// When set, every delivered reminder is also POSTed here, signed with HMAC-SHA256.
    #[arg(long, env = "TODO_NOTIFY_WEBHOOK_URL")]
    pub notify_webhook_url: Option<String>,

    /// Key for the webhook signature; required with `TODO_NOTIFY_WEBHOOK_URL`.
    #[arg(long, env = "TODO_NOTIFY_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub notify_webhook_secret: Option<SecretString>,

    /// First webhook retry delay in milliseconds; doubles on each failure.
    #[arg(long, env = "TODO_NOTIFY_WEBHOOK_RETRY_MS", default_value_t = 1000)]
    pub notify_webhook_retry_ms: u64,

    /// Webhook attempts before giving up.
    #[arg(long, env = "TODO_NOTIFY_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notify_webhook_max_attempts: u32,

    /// Messages a WebSocket client may fall behind before it is disconnected.
    #[arg(long, env = "TODO_WS_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub ws_queue: u32,

    /// Routes `GET`/`PUT /admin/faults`, which slow a consumer or fail a share of API
    /// requests on demand (failure drills, alert tests). Never in production.
    #[arg(long, env = "TODO_FAULTS_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub faults_enabled: bool,

    /// Seconds between WebSocket pings; a client that leaves two pings unanswered is
    /// dropped at the next one.
    #[arg(long, env = "TODO_WS_PING_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_ping_secs: u64,

    /// Hours to keep consumed events in the embedded event log (`TODO_BUS=memory` with all
    /// consumers in this process); 0 keeps them for ever.
    #[arg(long, env = "TODO_EVENT_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(0..=87_600))]
    pub event_retention_hours: u64,

    /// Origins (`scheme://host[:port]`, comma-separated) whose web pages may call the API
    /// and open the WebSocket; none by default. `*` is refused.
    #[arg(
        long,
        env = "TODO_CORS_ORIGINS",
        default_value = "",
        hide_default_value = true
    )]
    pub cors_origins: CorsOrigins,

    /// Milliseconds a request may take (reading its body included) before it is answered
    /// 503; the WebSocket stream itself is not bounded, only its handshake.
    #[arg(long, env = "TODO_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub request_timeout_ms: u64,

    /// Seconds allowed for a graceful shutdown.
    #[arg(long, env = "TODO_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub shutdown_timeout_secs: u64,

    #[command(flatten)]
    pub common: CommonSettings,
}

impl CommonSettings {
    /// The database URL: the configured one, or `sqlite://<data_dir>/todo.db`.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        ensure_data_dir(&self.data_dir)?;
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("todo.db").display()
        ))
    }

    /// The HS256 secret: configured, or read from (or first generated into) the data dir.
    /// `None` when only a JWKS URL is configured.
    pub fn jwt_secret(&self) -> anyhow::Result<Option<SecretString>> {
        if let Some(secret) = &self.jwt_secret {
            if secret.expose_secret().len() < 32 {
                bail!("TODO_JWT_SECRET (--jwt-secret) must be at least 32 bytes long");
            }
            return Ok(Some(secret.clone()));
        }
        if self.jwt_jwks_url.is_some() {
            return Ok(None);
        }
        load_or_create_secret(&self.data_dir).map(Some)
    }

    /// The token verifier these settings describe.
    pub fn verifier(&self) -> anyhow::Result<todo_auth::Verifier> {
        let config = todo_auth::AuthConfig {
            hs256_secret: self.jwt_secret()?,
            jwks_url: self.jwt_jwks_url.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: todo_auth::DEFAULT_LEEWAY_SECS,
        };
        todo_auth::Verifier::new(config).context("invalid JWT settings (TODO_JWT_*)")
    }
}

impl ServeSettings {
    /// Cross-field checks clap can't express.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.bus {
            BusKind::Memory => {}
            BusKind::Kafka if self.kafka_brokers.is_none() => {
                bail!("KAFKA_BROKERS (--kafka-brokers) is required when TODO_BUS=kafka")
            }
            #[cfg(feature = "kafka")]
            BusKind::Kafka => {
                self.kafka.config(
                    self.kafka_brokers.as_deref().unwrap_or_default(),
                    self.topics.names(),
                )?;
            }
            #[cfg(not(feature = "kafka"))]
            BusKind::Kafka => bail!(
                "TODO_BUS=kafka is not built into this binary (cargo feature `kafka`); use TODO_BUS=memory"
            ),
            #[cfg(feature = "dapr")]
            BusKind::Dapr => {
                self.dapr.config(self.topics.names())?;
            }
            #[cfg(not(feature = "dapr"))]
            BusKind::Dapr => bail!(
                "TODO_BUS=dapr is not built into this binary (cargo feature `dapr`); use TODO_BUS=memory"
            ),
        }
        if let Some(url) = &self.notify_webhook_url {
            // The URL itself is not echoed: it may carry credentials.
            let parsed = reqwest::Url::parse(url)
                .context("TODO_NOTIFY_WEBHOOK_URL (--notify-webhook-url) is not a valid URL")?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!(
                    "TODO_NOTIFY_WEBHOOK_URL (--notify-webhook-url) must be an http:// or https:// URL"
                );
            }
            if self.notify_webhook_secret.is_none() {
                bail!(
                    "TODO_NOTIFY_WEBHOOK_SECRET (--notify-webhook-secret) is required when TODO_NOTIFY_WEBHOOK_URL is set"
                );
            }
        }
        if self.bus == BusKind::Memory
            && self.services != ServiceSet::all()
            && self.common.database_url.is_none()
        {
            // A subset on the in-process bus is fine for trying things out, but the other
            // services' events then wait in the outbox until a process running them starts.
            tracing::warn!(services = %self.services, "running a subset of services on the in-process bus");
        }
        Ok(())
    }
}

/// Refuses an empty `DATABASE_URL` rather than taking it for unset: a secret that came out
/// empty would otherwise start a production process on a fresh SQLite file.
fn parse_database_url(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err(
            "it is empty: unset DATABASE_URL for the embedded SQLite file under \
                    TODO_DATA_DIR, or give a sqlite:// or postgres:// URL"
                .into(),
        );
    }
    Ok(raw.to_owned())
}

fn parse_secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw))
}

fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "TODO_DATA_DIR (--data-dir) {} cannot be created",
            dir.display()
        )
    })
}

/// File holding the generated HS256 secret.
pub const SECRET_FILE: &str = "jwt-secret";

fn load_or_create_secret(dir: &Path) -> anyhow::Result<SecretString> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    ensure_data_dir(dir)?;
    let path = dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(secret) => {
            let secret = secret.trim().to_owned();
            if secret.len() < 32 {
                bail!(
                    "{} holds a secret shorter than 32 bytes; delete it to generate a new one",
                    path.display()
                );
            }
            return Ok(SecretString::from(secret));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    // create_new: if two processes race, one wins and the other reads the winner's file.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(SecretString::from(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(dir),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_sets_parse_subsets_and_refuse_unknown_names() {
        let set: ServiceSet = "audit, api".parse().unwrap();
        assert_eq!(set.to_string(), "api,audit");
        assert_eq!("all".parse::<ServiceSet>().unwrap(), ServiceSet::all());
        let err = "api,billing".parse::<ServiceSet>().unwrap_err();
        assert!(err.contains("billing"), "{err}");
        assert!("".parse::<ServiceSet>().is_err());
    }

    #[test]
    fn cors_origins_are_exact_http_origins() {
        let origins: CorsOrigins =
            " https://app.example.com, http://127.0.0.1:3000,,https://app.example.com"
                .parse()
                .unwrap();
        assert_eq!(
            origins.iter().collect::<Vec<_>>(),
            ["https://app.example.com", "http://127.0.0.1:3000"]
        );
        assert!(origins.allows(b"http://127.0.0.1:3000"));
        assert!(!origins.allows(b"http://127.0.0.1:3001"));
        assert!(!origins.allows(b"https://APP.example.com"));
        assert!("".parse::<CorsOrigins>().unwrap().is_empty());
        assert!(" , ".parse::<CorsOrigins>().unwrap().is_empty());
        assert!("http://[::1]:8080".parse::<CorsOrigins>().is_ok());
        for (bad, says) in [
            ("*", "wildcards are refused"),
            ("https://*.example.com", "wildcards are refused"),
            ("app.example.com", "not an origin"),
            ("ftp://example.com", "scheme must be http or https"),
            ("file:///tmp", "scheme must be http or https"),
            ("https://example.com/app", "path, query or fragment"),
            ("https://example.com?x=1", "path, query or fragment"),
            ("https://u:p@example.com", "user name or password"),
            ("https://example.com/", "write \"https://example.com\""),
            ("https://Example.com", "write \"https://example.com\""),
            ("https://example.com:443", "write \"https://example.com\""),
            ("null", "not an origin"),
        ] {
            let err = bad.parse::<CorsOrigins>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_generated_secret_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let second = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 64);
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
