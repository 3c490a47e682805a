//! Kafka settings: brokers, security, topic names and client tuning, turned into
//! librdkafka properties. Nothing here talks to a broker.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;

use crate::{BusError, Result, TopicNames};

/// How the client authenticates and encrypts (`KAFKA_SECURITY_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (a local broker).
    #[default]
    Plaintext,
    /// TLS only (optionally with a client certificate).
    Ssl,
    /// SASL without TLS (only on a trusted network).
    SaslPlaintext,
    /// SASL over TLS: OCI Streaming, Azure Event Hubs, Redpanda Cloud, Confluent Cloud.
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (any case).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            other => Err(BusError::Unsupported(format!(
                "KAFKA_SECURITY_PROTOCOL must be plaintext, ssl, sasl_plaintext or sasl_ssl (got {other:?})"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The SASL mechanisms supported (`KAFKA_SASL_MECHANISM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN: Event Hubs (`$ConnectionString`) and OCI Streaming (auth token).
    Plain,
    /// SCRAM-SHA-256: Redpanda and most self-hosted brokers.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Parses `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (any case).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            other => Err(BusError::Unsupported(format!(
                "KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got {other:?})"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials. The password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name (`$ConnectionString` on Event Hubs; `tenancy/user/pool-ocid` on OCI).
    pub username: String,
    /// Password (the connection string on Event Hubs; an auth token on OCI).
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything the Kafka bus is configured with.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]` (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Transport security.
    pub security: SecurityProtocol,
    /// SASL credentials, required with the `sasl_*` protocols.
    pub sasl: Option<SaslCredentials>,
    /// CA bundle (PEM) to verify the brokers with; the system's store when unset.
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// The client certificate's key.
    pub ssl_key_location: Option<String>,
    /// Topic names.
    pub topics: TopicNames,
    /// Prefix of consumer group ids: group `audit` is `<prefix>audit`.
    pub group_prefix: String,
    /// Create missing topics at start.
    pub create_topics: bool,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication: i32,
    /// Consumer session timeout: how soon a dead member's partitions move on.
    pub session_timeout_ms: u32,
    /// Extra librdkafka properties, applied last.
    pub extra: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Settings for a plaintext broker at `brokers`, with the defaults.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            security: SecurityProtocol::Plaintext,
            sasl: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            topics: TopicNames::default(),
            group_prefix: "todo-".to_owned(),
            create_topics: true,
            partitions: 3,
            replication: 1,
            session_timeout_ms: 10_000,
            extra: BTreeMap::new(),
        }
    }

    /// Checks the settings that only make sense together.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return Err(BusError::Unsupported(
                "KAFKA_BROKERS is required when TODO_BUS=kafka".into(),
            ));
        }
        if self.security.uses_sasl() && self.sasl.is_none() {
            return Err(BusError::Unsupported(format!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)",
                self.security.as_str()
            )));
        }
        if !self.security.uses_sasl() && self.sasl.is_some() {
            return Err(BusError::Unsupported(
                "SASL credentials are set but KAFKA_SECURITY_PROTOCOL is not sasl_ssl or sasl_plaintext".into(),
            ));
        }
        if self.partitions < 1 || self.replication < 1 {
            return Err(BusError::Unsupported(
                "TODO_KAFKA_PARTITIONS and TODO_KAFKA_REPLICATION must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Properties every client (producer, consumer, admin) gets.
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            p.insert(k.to_owned(), v.to_owned());
        };
        set("bootstrap.servers", &self.brokers);
        set("security.protocol", self.security.as_str());
        if let Some(sasl) = &self.sasl {
            set("sasl.mechanism", sasl.mechanism.as_str());
            set("sasl.username", &sasl.username);
            set("sasl.password", &sasl.password);
        }
        if let Some(ca) = &self.ssl_ca_location {
            set("ssl.ca.location", ca);
        }
        if let Some(cert) = &self.ssl_certificate_location {
            set("ssl.certificate.location", cert);
        }
        if let Some(key) = &self.ssl_key_location {
            set("ssl.key.location", key);
        }
        for (k, v) in &self.extra {
            p.insert(k.clone(), v.clone());
        }
        p
    }

    /// A librdkafka configuration with [`Self::properties`] and then `overrides`.
    pub fn client(&self, overrides: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in self.properties() {
            config.set(k, v);
        }
        for (k, v) in overrides {
            // Extra properties from the operator win over the built-in tuning.
            if !self.extra.contains_key(*k) {
                config.set(*k, *v);
            }
        }
        config
    }

    /// The group id of consumer `group`.
    pub fn group_id(&self, group: &str) -> String {
        format!("{}{group}", self.group_prefix)
    }
}

/// Parses `key=value` pairs separated by `;` or newlines (`TODO_KAFKA_PROPERTIES`).
pub fn parse_properties(raw: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in raw
        .split([';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(BusError::Unsupported(format!(
                "TODO_KAFKA_PROPERTIES: {:?} is not key=value",
                pair.chars().take(40).collect::<String>()
            )));
        };
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_ssl_sets_the_properties_the_clouds_need() {
        let mut config = KafkaConfig::new("cell-1.streaming.example:9092");
        config.security = SecurityProtocol::parse("SASL_SSL").unwrap();
        config.sasl = Some(SaslCredentials {
            mechanism: SaslMechanism::parse("plain").unwrap(),
            username: "tenancy/user/ocid1.streampool".into(),
            password: "token".into(),
        });
        config.validate().unwrap();
        let p = config.properties();
        assert_eq!(p["security.protocol"], "sasl_ssl");
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        assert_eq!(p["sasl.username"], "tenancy/user/ocid1.streampool");
        assert_eq!(p["sasl.password"], "token");
        assert!(!format!("{config:?}").contains("token"), "password printed");
    }

    #[test]
    fn inconsistent_security_settings_are_refused_with_the_setting_named() {
        let mut config = KafkaConfig::new("b:9092");
        config.security = SecurityProtocol::SaslSsl;
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("KAFKA_SASL_MECHANISM"), "{e}");
        assert!(SecurityProtocol::parse("tls").is_err());
        assert!(SaslMechanism::parse("GSSAPI").is_err());
        assert!(KafkaConfig::new(" ").validate().is_err());
    }

    #[test]
    fn extra_properties_parse_and_win_over_tuning() {
        let extra = parse_properties("linger.ms=20; client.id = todo\nacks=all").unwrap();
        assert_eq!(extra["client.id"], "todo");
        let mut config = KafkaConfig::new("b:9092");
        config.extra = extra;
        let client = config.client(&[("linger.ms", "5"), ("fetch.wait.max.ms", "10")]);
        assert_eq!(client.get("linger.ms"), Some("20"));
        assert_eq!(client.get("fetch.wait.max.ms"), Some("10"));
        assert!(parse_properties("novalue").is_err());
    }
}
