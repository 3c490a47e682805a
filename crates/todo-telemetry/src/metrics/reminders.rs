//! `todo_reminders_*`, `todo_reminder_delivery_lag_seconds`, `todo_webhook_attempts_total`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{OutcomeLabels, REMINDER_BUCKETS, sanitize_seconds};

/// Reminder scheduler and webhook metrics.
#[derive(Debug, Clone)]
pub struct ReminderMetrics {
    scheduled: Counter,
    delivered: Counter,
    lag: Histogram,
    webhooks: Family<OutcomeLabels, Counter>,
}

impl ReminderMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = ReminderMetrics {
            scheduled: Counter::default(),
            delivered: Counter::default(),
            lag: Histogram::new(REMINDER_BUCKETS),
            webhooks: Family::default(),
        };
        registry.register(
            "reminders_scheduled",
            "Reminders scheduled or moved to a new time",
            metrics.scheduled.clone(),
        );
        registry.register(
            "reminders_delivered",
            "Reminders delivered",
            metrics.delivered.clone(),
        );
        registry.register_with_unit(
            "reminder_delivery_lag",
            "Time from a reminder's remind_at until it was delivered",
            Unit::Seconds,
            metrics.lag.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, retry, failed)",
            metrics.webhooks.clone(),
        );
        metrics
    }

    pub(super) fn init(&self) {
        for outcome in ["delivered", "retry", "failed"] {
            let _ = self.webhooks.get_or_create(&OutcomeLabels { outcome });
        }
    }

    /// A reminder was scheduled, or moved to another time.
    pub fn scheduled(&self) {
        self.scheduled.inc();
    }

    /// `n` reminders were delivered (the scheduler works in batches).
    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    /// Observes the time from `remind_at` to delivery.
    pub fn observe_lag(&self, seconds: f64) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.lag.observe(seconds);
        }
    }

    /// One webhook attempt ended with `outcome`: `delivered`, `retry` or `failed`.
    pub fn webhook(&self, outcome: &'static str) {
        self.webhooks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
