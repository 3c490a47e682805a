//! `todo_store_*`: operation latency and errors; connection pools.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{fast_histogram, sanitize_seconds};

/// The `kind`s of `todo_store_errors_total` (the store's error kinds that are failures).
pub const ERROR_KINDS: [&str; 5] = [
    "unavailable",
    "database",
    "corrupt",
    "unsupported",
    "migrate",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    op: &'static str,
    kind: &'static str,
}

/// Storage operation metrics.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = StoreMetrics {
            duration: Family::new_with_constructor(fast_histogram),
            errors: Family::default(),
        };
        registry.register_with_unit(
            "store_operation_duration",
            "Store operation latency, by operation",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store operation errors, by operation and error kind",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Creates, at zero, the error series of every operation in `ops` and every kind, so
    /// error rates and alerts read 0 rather than nothing while all is well.
    pub fn init(&self, ops: &[&'static str]) {
        for op in ops {
            for kind in ERROR_KINDS {
                let _ = self.errors.get_or_create(&ErrorLabels { op, kind });
            }
        }
    }

    /// Observes how long store operation `op` took (successful or not).
    pub fn observe(&self, op: &'static str, seconds: f64) {
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.duration
                .get_or_create(&OpLabels { op })
                .observe(seconds);
        }
    }

    /// Store operation `op` failed with an error of `kind`.
    pub fn error(&self, op: &'static str, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { op, kind }).inc();
    }
}

/// One connection pool of the store, as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// `read` and `write` (SQLite), `postgres`.
    pub pool: &'static str,
    /// Connections open.
    pub size: i64,
    /// Connections open and not in use.
    pub idle: i64,
    /// Callers waiting for a connection (for SQLite's writer: writes queued for it).
    pub waiting: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

/// Reads the pools on each scrape, so the gauges are never stale.
pub(super) struct PoolCollector {
    pools: Box<dyn Fn() -> Vec<PoolStatus> + Send + Sync>,
}

impl PoolCollector {
    pub(super) fn new(pools: impl Fn() -> Vec<PoolStatus> + Send + Sync + 'static) -> Self {
        PoolCollector {
            pools: Box::new(pools),
        }
    }
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolCollector")
    }
}

/// One pool gauge: name, help, and the field it reports.
type Gauge = (&'static str, &'static str, fn(&PoolStatus) -> i64);

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = (self.pools)();
        let gauges: [Gauge; 3] = [
            (
                "store_pool_size",
                "Connections the store's pool holds open, by pool",
                |p| p.size,
            ),
            (
                "store_pool_idle",
                "Open connections not in use, by pool",
                |p| p.idle,
            ),
            (
                "store_pool_waiting",
                "Callers waiting for a connection, by pool (SQLite's write pool: writes queued for the writer)",
                |p| p.waiting,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for pool in &pools {
                let labels = PoolLabels { pool: pool.pool };
                ConstGauge::new(value(pool)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
