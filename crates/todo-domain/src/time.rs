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

/// With `format: date-time`, the JSON Schema pattern of what [`parse_rfc3339`] accepts: a
/// written year 1970–9999, no leap second, and no offset that carries an edge day's instant
/// out of the range.
pub const RANGE_PATTERN: &str = concat!(
    r"^(?![0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:60)",
    r"(?!1970-01-01[Tt][^+]*\+(?!00:00))",
    r"(?!9999-12-31[Tt].*-(?!00:00)[0-9]{2}:[0-9]{2}$)",
    r"(?:19[7-9][0-9]|[2-9][0-9]{3})-"
);

/// What [`RANGE_PATTERN`] means, for the OpenAPI document.
pub const RANGE_DESCRIPTION: &str = "An RFC 3339 date-time (any offset; stored in UTC with \
    microsecond precision) from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z. The date as \
    written must fall in years 1970-9999, a leap second (:60) is refused, and on the two edge days \
    the offset may not leave the range: 1970-01-01 takes no positive offset, 9999-12-31 no \
    negative one.";

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
    Rfc3339::new(ts).as_str().to_owned()
}

/// A timestamp formatted as [`format_rfc3339`] does, on the stack: a page of tasks formats
/// hundreds of them, and chrono's general formatter (with a `String` each) was a visible
/// part of a list's cost.
pub struct Rfc3339 {
    buf: [u8; 40],
    len: usize,
}

impl Rfc3339 {
    /// Formats `ts`: `YYYY-MM-DDTHH:MM:SS`, then 3, 6 or 9 fraction digits when the
    /// sub-second part needs them (chrono's `SecondsFormat::AutoSi`), then `Z`.
    pub fn new(ts: &Timestamp) -> Self {
        use chrono::{Datelike, Timelike};
        let mut out = Rfc3339 {
            buf: [0; 40],
            len: 0,
        };
        // One conversion: each accessor of a `DateTime` converts it to its naive form anew.
        let ts = ts.naive_utc();
        let year = ts.year();
        if !(0..=9999).contains(&year) {
            // Never stored or served (see `in_range`); formatted the general way.
            let text = ts.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true);
            let n = text.len().min(out.buf.len());
            out.buf[..n].copy_from_slice(&text.as_bytes()[..n]);
            out.len = n;
            return out;
        }
        let nanos = ts.nanosecond();
        out.digits(year as u32, 4);
        out.push(b'-');
        out.digits(ts.month(), 2);
        out.push(b'-');
        out.digits(ts.day(), 2);
        out.push(b'T');
        out.digits(ts.hour(), 2);
        out.push(b':');
        out.digits(ts.minute(), 2);
        out.push(b':');
        out.digits(ts.second(), 2);
        if nanos != 0 {
            out.push(b'.');
            if nanos.is_multiple_of(1_000_000) {
                out.digits(nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                out.digits(nanos / 1_000, 6);
            } else {
                out.digits(nanos, 9);
            }
        }
        out.push(b'Z');
        out
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded.
    fn digits(&mut self, mut value: u32, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written, or a chrono string's bytes.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Serde adapter writing [`format_rfc3339`] and reading any RFC 3339 offset.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes a timestamp.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::Rfc3339::new(ts).as_str())
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
                Some(ts) => s.serialize_str(super::super::Rfc3339::new(ts).as_str()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 3339's `date-time` production, with field ranges checked by chrono: what a JSON
    /// Schema validator accepts as `format: date-time`.
    fn is_date_time(s: &str) -> bool {
        let grammar = regex::Regex::new(
            r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
        )
        .unwrap();
        grammar.is_match(s) && DateTime::parse_from_rfc3339(s).is_ok()
    }

    fn written() -> impl Strategy<Value = String> {
        let year = prop_oneof![
            Just(1969),
            Just(1970),
            Just(1971),
            Just(9998),
            Just(9999),
            0i32..=9999
        ];
        let day = prop_oneof![Just((1u32, 1u32)), Just((12, 31)), (1u32..=12, 1u32..=28)];
        let time = (
            0u32..=23,
            0u32..=59,
            prop_oneof![Just(59u32), Just(60), 0u32..=59],
        );
        let offset = prop_oneof![
            Just("Z".to_owned()),
            Just("z".to_owned()),
            Just("+00:00".to_owned()),
            Just("-00:00".to_owned()),
            (any::<bool>(), 0u32..=23, 0u32..=59)
                .prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
        ];
        let sep = prop_oneof![Just('T'), Just('t'), Just(' ')];
        (year, day, time, offset, sep).prop_map(|(y, (mo, d), (h, mi, s), off, sep)| {
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{off}")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn the_documented_pattern_and_format_accept_exactly_what_parse_accepts(s in written()) {
            let pattern = fancy_regex::Regex::new(RANGE_PATTERN).unwrap();
            let documented = is_date_time(&s) && pattern.is_match(&s).unwrap();
            let parsed = parse_rfc3339(&s);
            prop_assert_eq!(documented, parsed.is_some(), "{}", s);
            if let Some(ts) = parsed {
                prop_assert!(in_range(&ts));
                let served = format_rfc3339(&ts);
                prop_assert!(is_date_time(&served) && pattern.is_match(&served).unwrap(), "{}", served);
            }
        }
    }

    proptest! {
        #[test]
        fn the_stack_formatter_writes_what_chrono_writes(
            secs in -62_135_596_800i64..=253_402_300_799,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
        ) {
            let ts = DateTime::from_timestamp(secs, nanos).unwrap();
            let formatted = Rfc3339::new(&ts);
            prop_assert_eq!(
                formatted.as_str(),
                ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }

    #[test]
    fn the_stack_formatter_falls_back_to_chrono_outside_four_digit_years() {
        let ts = DateTime::from_timestamp(253_402_300_800, 5_000).unwrap();
        assert_eq!(Rfc3339::new(&ts).as_str(), "+10000-01-01T00:00:00.000005Z");
        assert_eq!(format_rfc3339(&ts), "+10000-01-01T00:00:00.000005Z");
    }

    #[test]
    fn the_range_ends_are_accepted_and_one_step_beyond_is_not() {
        for ok in [
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00-01:00",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:59+05:00",
            "2026-12-01t09:00:00z",
        ] {
            assert!(parse_rfc3339(ok).is_some(), "{ok}");
        }
        for bad in [
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "9999-12-31T23:00:00-01:00",
            "+10000-01-01T00:00:00Z",
            "2026-12-01 09:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-12-01",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
