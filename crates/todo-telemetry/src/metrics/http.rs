//! `todo_http_*`: requests by service, method, route template and status class.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{FAST_BUCKETS, TraceExemplar, sanitize_seconds};

/// Labels of `todo_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    method: &'static str,
    route: String,
    status_class: &'static str,
}

/// Labels of `todo_http_request_duration_seconds`: no status, to keep the histogram's
/// series count down.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: &'static str,
    method: &'static str,
    route: String,
}

type Latency = HistogramWithExemplars<TraceExemplar>;

fn latency_histogram() -> Latency {
    HistogramWithExemplars::new(FAST_BUCKETS.into_iter())
}

/// The `method` label: the standard methods as they are, anything else `other`, so a
/// client inventing methods cannot create series.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The `status_class` label: `2xx`, `4xx`, ... (`499`, a client gone, is `4xx`).
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// HTTP request metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Latency, fn() -> Latency>,
    in_flight: Gauge,
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by service, method, route template and status class",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency, by service, method and route template",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled now",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// Records one finished request: counts it and observes its latency, with the
    /// request's trace as the exemplar. `service` is the route's owner (`api`, `audit`,
    /// `notification`, `sync`, or `system` for the shared and unmatched routes); `route`
    /// must be the route template, not the request path.
    pub fn observe(
        &self,
        service: &'static str,
        method: &str,
        route: &str,
        status: u16,
        seconds: f64,
        trace_id: Option<&str>,
    ) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                service,
                method,
                route: route.to_owned(),
                status_class: status_class(status),
            })
            .inc();
        if let Some(seconds) = sanitize_seconds(seconds) {
            self.duration
                .get_or_create(&RouteLabels {
                    service,
                    method,
                    route: route.to_owned(),
                })
                .observe(seconds, TraceExemplar::new(trace_id), None);
        }
    }

    /// A request started; pair with [`HttpMetrics::in_flight_dec`].
    pub fn in_flight_inc(&self) {
        self.in_flight.inc();
    }

    /// A request finished (whatever its outcome).
    pub fn in_flight_dec(&self) {
        self.in_flight.dec();
    }
}
