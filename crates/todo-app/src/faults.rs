//! Fault injection, for failure drills and for proving that alerts fire: a consumer made
//! slow, a share of API requests answered 500. Off unless `TODO_FAULTS_ENABLED=true` at
//! start; then `PUT /admin/faults` sets the faults and `GET /admin/faults` shows them.
//! Without the switch those routes do not exist (404), so no request can turn a fault on.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Consumers a delay may be set for.
const CONSUMERS: [&str; 4] = ["audit", "notification", "recurring", "sync"];

/// The longest delay per event that may be set: enough to make any consumer fall behind.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The faults in force, as `PUT /admin/faults` takes them and `GET` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Extra time each consumer spends per event it handles, in milliseconds.
    #[serde(default)]
    pub consumer_delay_ms: BTreeMap<String, u64>,
    /// Percentage (0–100) of `/api/...` requests answered 500 before their handler runs.
    #[serde(default)]
    pub http_error_percent: u8,
}

impl FaultSettings {
    /// Checks names and ranges; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (consumer, ms) in &self.consumer_delay_ms {
            if !CONSUMERS.contains(&consumer.as_str()) {
                return Err(format!(
                    "consumer_delay_ms: unknown consumer `{consumer}`; expected one of {}",
                    CONSUMERS.join(", ")
                ));
            }
            if *ms > MAX_DELAY_MS {
                return Err(format!(
                    "consumer_delay_ms.{consumer}: {ms} is more than {MAX_DELAY_MS}"
                ));
            }
        }
        if self.http_error_percent > 100 {
            return Err(format!(
                "http_error_percent: {} is more than 100",
                self.http_error_percent
            ));
        }
        Ok(())
    }
}

/// The process's fault switch.
#[derive(Debug, Default)]
pub struct Faults {
    enabled: bool,
    settings: RwLock<FaultSettings>,
    requests: AtomicU64,
}

impl Faults {
    /// A switch that can be turned on (`enabled`) or never.
    pub fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            ..Faults::default()
        }
    }

    /// Whether faults may be set (`TODO_FAULTS_ENABLED`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The faults in force.
    pub fn settings(&self) -> FaultSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the faults in force; refused when the switch is off or `new` is invalid.
    pub fn set(&self, new: FaultSettings) -> Result<(), String> {
        if !self.enabled {
            return Err("fault injection is off: start with TODO_FAULTS_ENABLED=true".into());
        }
        new.validate()?;
        tracing::warn!(faults = ?new, "faults set");
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The extra time `consumer` is to spend on `events` events now.
    pub fn consumer_delay(&self, consumer: &str, events: usize) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        let ms = *settings.consumer_delay_ms.get(consumer)?;
        (ms > 0).then(|| Duration::from_millis(ms.saturating_mul(events as u64)))
    }

    /// Whether this API request is to fail: `http_error_percent` of them, spread evenly.
    pub fn fail_request(&self) -> bool {
        if !self.enabled {
            return false;
        }
        let percent = self
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .http_error_percent;
        percent > 0 && self.requests.fetch_add(1, Ordering::Relaxed) % 100 < u64::from(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(delays: &[(&str, u64)], percent: u8) -> FaultSettings {
        FaultSettings {
            consumer_delay_ms: delays.iter().map(|(c, ms)| (c.to_string(), *ms)).collect(),
            http_error_percent: percent,
        }
    }

    #[test]
    fn a_switch_that_is_off_refuses_every_fault_and_injects_none() {
        let faults = Faults::new(false);
        assert!(faults.set(settings(&[("audit", 10)], 50)).is_err());
        assert_eq!(faults.consumer_delay("audit", 3), None);
        assert!((0..200).all(|_| !faults.fail_request()));
    }

    #[test]
    fn delays_scale_with_the_batch_and_errors_hit_the_set_share() {
        let faults = Faults::new(true);
        faults.set(settings(&[("audit", 10)], 25)).expect("set");
        assert_eq!(
            faults.consumer_delay("audit", 3),
            Some(Duration::from_millis(30))
        );
        assert_eq!(faults.consumer_delay("sync", 3), None);
        let failed = (0..400).filter(|_| faults.fail_request()).count();
        assert_eq!(failed, 100);
        faults.set(FaultSettings::default()).expect("clear");
        assert!((0..100).all(|_| !faults.fail_request()));
    }

    #[test]
    fn unknown_consumers_and_out_of_range_values_are_refused() {
        let faults = Faults::new(true);
        let e = faults.set(settings(&[("billing", 10)], 0)).unwrap_err();
        assert!(e.contains("unknown consumer `billing`"), "{e}");
        let e = faults
            .set(settings(&[("audit", MAX_DELAY_MS + 1)], 0))
            .unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let e = faults.set(settings(&[], 101)).unwrap_err();
        assert!(e.contains("http_error_percent"), "{e}");
        assert_eq!(faults.settings(), FaultSettings::default());
    }
}
