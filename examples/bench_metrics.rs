//! How long `/metrics` takes to render when every label combination of every family is
//! present: the worst case a long-running process can reach, since every label set is
//! bounded. Prints one machine-readable line for bench/telemetry.sh.
//!
//! `cargo run --release --example bench_metrics -- [ITERATIONS]`

use std::time::Instant;

use todo_telemetry::{Metrics, Outcome, PoolStatus, WsCloseReason};

/// Every route template the platform serves, plus the fallback label.
const ROUTES: [&str; 14] = [
    "/api/{user_id}/tasks",
    "/api/{user_id}/tasks/{id}",
    "/api/{user_id}/tasks/{id}/complete",
    "/api/{user_id}/audit",
    "/api/{user_id}/reminders",
    "/api/{user_id}/notifications",
    "/api/{user_id}/ws",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/dapr/subscribe",
    "/dapr/events/{topic}",
    "unmatched",
];
const SERVICES: [&str; 5] = ["api", "audit", "notification", "sync", "system"];
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW",
];
const STATUSES: [u16; 5] = [101, 200, 304, 404, 503];
const CONSUMERS: [&str; 4] = ["recurring", "notification", "sync", "audit"];
const TOPICS: [&str; 3] = ["task-events", "reminders", "task-updates"];
const TYPES: [&str; 7] = [
    "task.created",
    "task.updated",
    "task.completed",
    "task.deleted",
    "reminder.scheduled",
    "reminder.due",
    "other",
];
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn populate(metrics: &Metrics) {
    for service in SERVICES {
        for method in METHODS {
            for route in ROUTES {
                for status in STATUSES {
                    metrics
                        .http
                        .observe(service, method, route, status, 0.003, Some(TRACE));
                }
            }
        }
    }
    for consumer in CONSUMERS {
        let topics: Vec<(&str, &[&'static str])> =
            TOPICS.iter().map(|t| (*t, &TYPES[..])).collect();
        metrics.events.init_consumer(consumer, &topics);
        for topic in TOPICS {
            for event_type in TYPES {
                for outcome in Outcome::ALL {
                    metrics
                        .events
                        .consumed(consumer, topic, event_type, outcome);
                }
                metrics.events.published(topic, event_type, 1);
            }
            for partition in 0..12 {
                metrics.events.set_lag(consumer, topic, partition, 3);
            }
        }
        metrics.events.observe_latency(consumer, 0.02, Some(TRACE));
    }
    metrics.events.init_relay(&TOPICS);
    for reason in [
        WsCloseReason::Client,
        WsCloseReason::SlowConsumer,
        WsCloseReason::Shutdown,
        WsCloseReason::Error,
    ] {
        metrics.ws.closed(reason);
    }
    let ops: Vec<&'static str> = (0..28)
        .map(|i| &*Box::leak(format!("op_{i}").into_boxed_str()))
        .collect();
    metrics.store.init(&ops);
    for op in &ops {
        metrics.store.observe(op, 0.001);
    }
    metrics.reminders.observe_lag(0.4);
    metrics.report_pools(|| {
        ["read", "write", "postgres"]
            .into_iter()
            .map(|pool| PoolStatus {
                pool,
                size: 4,
                idle: 2,
                waiting: 0,
            })
            .collect()
    });
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("ITERATIONS is a number"))
        .unwrap_or(200);
    let metrics = Metrics::new();
    populate(&metrics);
    let text = metrics.encode();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            let out = metrics.encode();
            std::hint::black_box(out.len());
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "BENCH_METRICS series={series} bytes={} iterations={iterations} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        text.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
