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

/// The earliest instant the platform stores or serves: 1970-01-01T00:00:00Z.
pub const MIN_YEAR: i32 = 1970;
/// The latest year: four digits, so every timestamp served is RFC 3339.
pub const MAX_YEAR: i32 = 9999;

/// Whether `ts` lies in years [`MIN_YEAR`]–[`MAX_YEAR`] (UTC), the range every stored
/// timestamp keeps. A recurrence whose next step leaves it ends the series.
pub fn in_range(ts: &Timestamp) -> bool {
    use chrono::Datelike;
    (MIN_YEAR..=MAX_YEAR).contains(&ts.year())
}

/// Parses an RFC 3339 `date-time` (the grammar's production, so `T` or `t` between date and
/// time, no leap second) into UTC, refusing instants outside [`in_range`].
///
/// The written date must itself lie in years 1970–9999, and on the range's two edge days
/// the offset may not carry the instant out of it: `1970-01-01` takes no positive offset
/// and `9999-12-31` no negative one. That makes the accepted set exactly what the OpenAPI
/// document's `pattern` and `format: date-time` describe.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    use chrono::Timelike;
    let bytes = s.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't') {
        return None;
    }
    let written = DateTime::parse_from_rfc3339(s).ok()?;
    if written.nanosecond() >= 1_000_000_000 {
        return None; // a leap second: no store keeps one
    }
    let offset = written.offset().local_minus_utc();
    let date = &s[..10];
    let year: i32 = date[..4].parse().ok()?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&year)
        || (date == "1970-01-01" && offset > 0)
        || (date == "9999-12-31" && offset < 0)
    {
        return None;
    }
    let utc = truncate(written.with_timezone(&Utc));
    in_range(&utc).then_some(utc)
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
