//! Timestamps: UTC, microsecond precision, RFC 3339 on the wire.
//!
//! Microseconds are what both SQLite (as an integer) and PostgreSQL (`timestamptz`) keep, so a
//! value read back equals the value written.

use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant.
pub type Timestamp = DateTime<Utc>;

/// Drops sub-microsecond precision so stored and in-memory values compare equal.
pub fn truncate(ts: Timestamp) -> Timestamp {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

/// The current instant, truncated to microseconds.
pub fn now() -> Timestamp {
    truncate(Utc::now())
}

/// Microseconds since the Unix epoch (the stores' integer form).
pub fn to_micros(ts: Timestamp) -> i64 {
    ts.timestamp_micros()
}

/// The inverse of [`to_micros`]; `None` outside chrono's range.
pub fn from_micros(micros: i64) -> Option<Timestamp> {
    DateTime::from_timestamp_micros(micros)
}

/// Parses RFC 3339 (any offset) into UTC.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| truncate(t.with_timezone(&Utc)))
}

/// Formats as RFC 3339 in UTC with a `Z`, showing fractions only when present.
pub fn format_rfc3339(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serde adapter writing [`format_rfc3339`] and reading any RFC 3339 offset.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes a timestamp.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(ts))
    }

    /// Deserializes a timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_rfc3339(&raw).ok_or_else(|| D::Error::custom("expected an RFC 3339 timestamp"))
    }

    /// The same for optional timestamps.
    pub mod option {
        use super::super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        /// Serializes an optional timestamp (`null` when absent).
        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => s.serialize_str(&super::super::format_rfc3339(ts)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(raw) => super::super::parse_rfc3339(&raw)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom("expected an RFC 3339 timestamp")),
            }
        }
    }
}
