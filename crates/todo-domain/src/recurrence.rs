//! Recurrence rules and the arithmetic that finds the next due date.
//!
//! Calendar arithmetic is done in UTC, keeping the time of day. Months and years step by
//! calendar fields with the day clamped to the target month's length, remembering the
//! series' original day (the *anchor*), so a monthly task on the 31st falls on Feb 28 and
//! comes back to Mar 31 instead of drifting to the 28th for ever.
//!
//! A series ends when its next step would leave the years every stored timestamp keeps
//! (1970–9999, [`crate::time::in_range`]): there is then no next occurrence.

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::time::{Timestamp, in_range};

/// Largest allowed `interval`.
pub const MAX_INTERVAL: i64 = 365;

/// How often a task repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// Every `interval` days.
    Daily,
    /// Every `interval` weeks.
    Weekly,
    /// Every `interval` months, on the anchor day or the month's last day.
    Monthly,
    /// Every `interval` years, same month, anchor day clamped (Feb 29 → Feb 28).
    Yearly,
}

impl Frequency {
    /// Every value.
    pub const ALL: [Frequency; 4] = [
        Frequency::Daily,
        Frequency::Weekly,
        Frequency::Monthly,
        Frequency::Yearly,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
            Frequency::Yearly => "yearly",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A validated recurrence rule: `interval` is within 1..=365.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recurrence {
    /// The unit.
    pub frequency: Frequency,
    /// How many units between occurrences, 1–365.
    pub interval: u32,
}

impl Recurrence {
    /// Builds a rule, refusing an interval outside 1..=365.
    pub fn new(frequency: Frequency, interval: i64) -> Result<Self, String> {
        if (1..=MAX_INTERVAL).contains(&interval) {
            Ok(Self {
                frequency,
                interval: interval as u32,
            })
        } else {
            Err(format!("must be between 1 and {MAX_INTERVAL}"))
        }
    }

    /// The due date after `previous`, stepping from `previous` (not from when the task was
    /// completed). `anchor_day` is the series' original day of month (1–31); `None` uses
    /// `previous`'s day.
    ///
    /// Returns `None` when the step lands outside years 1970–9999 ([`in_range`]) or beyond
    /// what the calendar arithmetic can represent: the series has ended, so every date
    /// this returns can be stored and served as RFC 3339.
    pub fn next_due(&self, previous: Timestamp, anchor_day: Option<u32>) -> Option<Timestamp> {
        let interval = i64::from(self.interval);
        let next = match self.frequency {
            Frequency::Daily => previous.checked_add_signed(Duration::days(interval)),
            Frequency::Weekly => previous.checked_add_signed(Duration::weeks(interval)),
            Frequency::Monthly => step_months(previous, interval, anchor_day),
            Frequency::Yearly => step_months(previous, interval * 12, anchor_day),
        }?;
        in_range(&next).then_some(next)
    }
}

fn step_months(previous: Timestamp, months: i64, anchor_day: Option<u32>) -> Option<Timestamp> {
    let date = previous.date_naive();
    let index = i64::from(date.year()) * 12 + i64::from(date.month0()) + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    let wanted = anchor_day.unwrap_or(date.day()).clamp(1, 31);
    let day = wanted.min(days_in_month(year, month)?);
    let next = NaiveDate::from_ymd_opt(year, month, day)?.and_time(previous.time());
    Some(next.and_utc())
}

/// Number of days in `month` (1–12) of `year`.
pub fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next_first = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from((next_first - first).num_days()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MAX_YEAR, MIN_YEAR, format_rfc3339, parse_rfc3339};
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    fn rule(frequency: Frequency, interval: i64) -> Recurrence {
        Recurrence::new(frequency, interval).unwrap()
    }

    #[test]
    fn daily_and_weekly_step_whole_days_keeping_the_time() {
        let due = ts("2026-12-30T09:15:00Z");
        assert_eq!(
            rule(Frequency::Daily, 3).next_due(due, None),
            Some(ts("2027-01-02T09:15:00Z"))
        );
        assert_eq!(
            rule(Frequency::Weekly, 2).next_due(due, None),
            Some(ts("2027-01-13T09:15:00Z"))
        );
    }

    #[test]
    fn monthly_on_the_31st_lands_on_the_last_day_and_comes_back() {
        let monthly = rule(Frequency::Monthly, 1);
        let jan = ts("2027-01-31T08:00:00Z");
        let feb = monthly.next_due(jan, Some(31)).unwrap();
        assert_eq!(feb, ts("2027-02-28T08:00:00Z"));
        let mar = monthly.next_due(feb, Some(31)).unwrap();
        assert_eq!(mar, ts("2027-03-31T08:00:00Z"));
        let apr = monthly.next_due(mar, Some(31)).unwrap();
        assert_eq!(apr, ts("2027-04-30T08:00:00Z"));
    }

    #[test]
    fn monthly_in_a_leap_year_uses_february_29() {
        let monthly = rule(Frequency::Monthly, 1);
        assert_eq!(
            monthly.next_due(ts("2028-01-30T00:00:00Z"), None),
            Some(ts("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn monthly_interval_crosses_years() {
        assert_eq!(
            rule(Frequency::Monthly, 14).next_due(ts("2026-11-15T10:00:00Z"), None),
            Some(ts("2028-01-15T10:00:00Z"))
        );
    }

    #[test]
    fn yearly_on_february_29_clamps_to_the_28th_and_returns_in_leap_years() {
        let yearly = rule(Frequency::Yearly, 1);
        let leap = ts("2028-02-29T12:00:00Z");
        let next = yearly.next_due(leap, Some(29)).unwrap();
        assert_eq!(next, ts("2029-02-28T12:00:00Z"));
        let four_years = rule(Frequency::Yearly, 4).next_due(leap, Some(29)).unwrap();
        assert_eq!(four_years, ts("2032-02-29T12:00:00Z"));
    }

    #[test]
    fn interval_outside_1_to_365_is_refused() {
        assert!(Recurrence::new(Frequency::Daily, 0).is_err());
        assert!(Recurrence::new(Frequency::Daily, 366).is_err());
        assert!(Recurrence::new(Frequency::Daily, 365).is_ok());
    }

    #[test]
    fn far_future_overflow_gives_none_instead_of_panicking() {
        let end = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        assert_eq!(rule(Frequency::Yearly, 365).next_due(end, None), None);
        assert_eq!(rule(Frequency::Daily, 365).next_due(end, None), None);
    }

    #[test]
    fn a_step_past_the_year_9999_ends_the_series() {
        let last = ts("9999-12-31T23:59:59Z");
        for frequency in Frequency::ALL {
            for interval in [1, 365] {
                assert_eq!(
                    rule(frequency, interval).next_due(last, None),
                    None,
                    "{frequency:?} x{interval} from {last}"
                );
            }
        }
        // The bug report's series: due on the last second, yearly every 365 years.
        assert_eq!(rule(Frequency::Yearly, 365).next_due(last, Some(31)), None);
        // Steps that stay within 9999 still happen, up to the last day.
        assert_eq!(
            rule(Frequency::Daily, 1).next_due(ts("9999-12-30T23:59:59Z"), None),
            Some(last)
        );
        assert_eq!(
            rule(Frequency::Monthly, 1).next_due(ts("9999-11-30T23:59:59Z"), Some(31)),
            Some(last)
        );
        assert_eq!(
            rule(Frequency::Yearly, 1).next_due(ts("9998-12-31T23:59:59Z"), None),
            Some(last)
        );
        assert_eq!(
            rule(Frequency::Monthly, 1).next_due(ts("9999-12-01T00:00:00Z"), None),
            None
        );
    }

    /// Any instant the platform accepts: years 1970–9999, microsecond precision.
    fn any_stored_timestamp() -> impl Strategy<Value = Timestamp> {
        let first = ts("1970-01-01T00:00:00Z").timestamp_micros();
        let last = ts("9999-12-31T23:59:59.999999Z").timestamp_micros();
        (first..=last).prop_map(|us| chrono::DateTime::from_timestamp_micros(us).unwrap())
    }

    /// Instants in the last decades of the range, where series end.
    fn late_timestamp() -> impl Strategy<Value = Timestamp> {
        let first = ts("9600-01-01T00:00:00Z").timestamp_micros();
        let last = ts("9999-12-31T23:59:59.999999Z").timestamp_micros();
        (first..=last).prop_map(|us| chrono::DateTime::from_timestamp_micros(us).unwrap())
    }

    /// Whole years a step of `r` can span at most (a generous bound).
    fn most_years(r: Recurrence) -> i32 {
        let interval = r.interval as i32;
        match r.frequency {
            Frequency::Daily => interval / 365 + 1,
            Frequency::Weekly => interval * 7 / 365 + 1,
            Frequency::Monthly => interval / 12 + 1,
            Frequency::Yearly => interval,
        }
    }

    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        // 1970..2200, whole seconds.
        (0i64..7_258_118_400).prop_map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap())
    }

    fn any_rule() -> impl Strategy<Value = Recurrence> {
        (0usize..4, 1i64..=365).prop_map(|(f, i)| rule(Frequency::ALL[f], i))
    }

    proptest! {
        #[test]
        fn next_due_is_always_later_and_keeps_the_time_of_day(due in any_timestamp(), r in any_rule()) {
            let next = r.next_due(due, None).unwrap();
            prop_assert!(next > due);
            prop_assert_eq!(next.time(), due.time());
        }

        #[test]
        fn monthly_lands_on_the_anchor_or_the_last_day_of_the_month(
            due in any_timestamp(), interval in 1i64..=365, anchor in 1u32..=31
        ) {
            let next = rule(Frequency::Monthly, interval).next_due(due, Some(anchor)).unwrap();
            let last = days_in_month(next.year(), next.month()).unwrap();
            prop_assert_eq!(next.day(), anchor.min(last));
            let months = (next.year() - due.year()) * 12 + next.month() as i32 - due.month() as i32;
            prop_assert_eq!(i64::from(months), interval);
        }

        #[test]
        fn every_next_due_is_in_range_and_round_trips_as_rfc3339(
            due in prop_oneof![any_stored_timestamp(), late_timestamp()],
            r in any_rule(),
            anchor in proptest::option::of(1u32..=31),
        ) {
            match r.next_due(due, anchor) {
                Some(next) => {
                    prop_assert!(in_range(&next), "{next:?} out of range");
                    prop_assert!((MIN_YEAR..=MAX_YEAR).contains(&next.year()));
                    prop_assert!(next > due);
                    let text = format_rfc3339(&next);
                    prop_assert_eq!(parse_rfc3339(&text), Some(next), "{}", text);
                }
                // A series ends only when the step really leaves the range.
                None => prop_assert!(
                    due.year() + most_years(r) > MAX_YEAR,
                    "{:?} from {} ended early", r, due
                ),
            }
        }

        #[test]
        fn yearly_keeps_the_month(due in any_timestamp(), interval in 1i64..=50) {
            let next = rule(Frequency::Yearly, interval).next_due(due, None).unwrap();
            prop_assert_eq!(next.month(), due.month());
            prop_assert_eq!(i64::from(next.year() - due.year()), interval);
        }
    }
}
