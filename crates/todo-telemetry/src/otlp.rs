//! OTLP trace export, configured by the standard OpenTelemetry environment variables.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set (and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it
//! off). Every variable is checked at start: a value that cannot be used stops the process
//! with a message naming the variable, instead of being ignored. Spans are batched and sent
//! from a background thread; a receiver that cannot be reached costs one WARN line (and an
//! INFO line once it answers again), never a failed request.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};

use crate::TelemetryError;

/// The wire protocol of the exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`), usually port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, the default), usually port 4318.
    HttpProtobuf,
}

impl Protocol {
    /// The variable's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which spans are kept (`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`); the
/// default is the standard one, `parentbased_always_on`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SamplerSetting {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with the ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with the ratio.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerSetting {
    /// The names `OTEL_TRACES_SAMPLER` accepts.
    pub const NAMES: [&'static str; 6] = [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ];

    /// Whether a new span is sampled, given its remote parent's sampled flag and trace id
    /// (`None`: a root, whose trace id is drawn afterwards). A ratio decides by the trace
    /// id when there is one, as OpenTelemetry's `TraceIdRatioBased` does, so every service
    /// decides alike for one trace; for a root it draws at random, the same odds.
    pub(crate) fn decide(self, parent: Option<(bool, opentelemetry::trace::TraceId)>) -> bool {
        let ratio = |r: f64| {
            let draw = match parent {
                Some((_, trace_id)) => {
                    let bytes = trace_id.to_bytes();
                    let low = u64::from_be_bytes(bytes[8..].try_into().unwrap_or_default());
                    (low >> 11) as f64 / (1u64 << 53) as f64
                }
                None => rand_unit(),
            };
            r >= 1.0 || (r > 0.0 && draw < r)
        };
        let parent = parent.map(|(sampled, _)| sampled);
        match (self, parent) {
            (SamplerSetting::AlwaysOn, _) => true,
            (SamplerSetting::AlwaysOff, _) => false,
            (SamplerSetting::TraceIdRatio(r), _) => ratio(r),
            (
                SamplerSetting::ParentBasedAlwaysOn
                | SamplerSetting::ParentBasedAlwaysOff
                | SamplerSetting::ParentBasedTraceIdRatio(_),
                Some(sampled),
            ) => sampled,
            (SamplerSetting::ParentBasedAlwaysOn, None) => true,
            (SamplerSetting::ParentBasedAlwaysOff, None) => false,
            (SamplerSetting::ParentBasedTraceIdRatio(r), None) => ratio(r),
        }
    }
}

impl fmt::Display for SamplerSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplerSetting::AlwaysOn => f.write_str("always_on"),
            SamplerSetting::AlwaysOff => f.write_str("always_off"),
            SamplerSetting::TraceIdRatio(r) => write!(f, "traceidratio({r})"),
            SamplerSetting::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            SamplerSetting::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            SamplerSetting::ParentBasedTraceIdRatio(r) => {
                write!(f, "parentbased_traceidratio({r})")
            }
        }
    }
}

/// Trace export settings, read from the environment by [`ExportSettings::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The URL spans are sent to (for HTTP, `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`).
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: Protocol,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The sampler.
    pub sampler: SamplerSetting,
    /// How long the batch processor waits before sending what it has (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay: Duration,
    /// Spans kept while waiting; more are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue_size: usize,
    /// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_export_batch_size: usize,
    /// Per export request (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Duration,
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> TelemetryError {
    TelemetryError::InvalidSetting {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl ExportSettings {
    /// Reads the `OTEL_*` variables; `None` when export is off (no endpoint set, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`). `default_service_name` is
    /// the `service.name` when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` names one.
    ///
    /// # Errors
    ///
    /// [`TelemetryError::InvalidSetting`] naming the first variable whose value cannot be used.
    pub fn from_env(default_service_name: &str) -> Result<Option<Self>, TelemetryError> {
        Self::from_lookup(|name| std::env::var(name).ok(), default_service_name)
    }

    /// [`ExportSettings::from_env`] over any source of variables (for tests).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        default_service_name: &str,
    ) -> Result<Option<Self>, TelemetryError> {
        // An empty value counts as unset, as the OpenTelemetry specification asks.
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        };
        if let Some((name, value)) = get("OTEL_SDK_DISABLED") {
            match value.to_ascii_lowercase().as_str() {
                "true" => return Ok(None),
                "false" => {}
                _ => return Err(invalid(name, &value, "expected `true` or `false`")),
            }
        }
        if let Some((name, value)) = get("OTEL_TRACES_EXPORTER") {
            match value.as_str() {
                "otlp" => {}
                "none" => return Ok(None),
                _ => {
                    return Err(invalid(
                        name,
                        &value,
                        "expected `otlp` or `none` (the only exporters built in)",
                    ));
                }
            }
        }
        let protocol = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            None => Protocol::HttpProtobuf,
            Some((_, v)) if v == "grpc" => Protocol::Grpc,
            Some((_, v)) if v == "http/protobuf" => Protocol::HttpProtobuf,
            Some((name, v)) => {
                return Err(invalid(
                    name,
                    &v,
                    "expected `grpc` or `http/protobuf` (`http/json` is not built in)",
                ));
            }
        };
        let endpoint = match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some((name, url)) => {
                check_endpoint(name, &url, protocol)?;
                url
            }
            None => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                None => return Ok(None),
                Some((name, base)) => {
                    check_endpoint(name, &base, protocol)?;
                    match protocol {
                        Protocol::HttpProtobuf => {
                            format!("{}/v1/traces", base.trim_end_matches('/'))
                        }
                        Protocol::Grpc => base,
                    }
                }
            },
        };

        let timeout = millis(
            get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT").or_else(|| get("OTEL_EXPORTER_OTLP_TIMEOUT")),
            10_000,
            false,
        )?;
        let schedule_delay = millis(get("OTEL_BSP_SCHEDULE_DELAY"), 5_000, true)?;
        let max_queue_size = count(get("OTEL_BSP_MAX_QUEUE_SIZE"), 2048)?;
        let max_export_batch_size = count(get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512)?;

        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some((name, value)) = get(name) {
                check_headers(name, &value)?;
            }
        }
        let resource_service_name = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some((name, value)) => resource_service_name(name, &value)?,
            None => None,
        };
        let service_name = get("OTEL_SERVICE_NAME")
            .map(|(_, v)| v)
            .or(resource_service_name)
            .unwrap_or_else(|| default_service_name.to_owned());

        let sampler = sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?;
        Ok(Some(ExportSettings {
            endpoint,
            protocol,
            service_name,
            sampler,
            schedule_delay,
            max_queue_size,
            max_export_batch_size,
            timeout,
        }))
    }

    /// The endpoint without user info, query or fragment: safe to log.
    pub fn endpoint_for_log(&self) -> String {
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri) => format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority()
                    .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
                uri.path()
            ),
            Err(_) => String::new(),
        }
    }
}

fn check_endpoint(name: &'static str, url: &str, protocol: Protocol) -> Result<(), TelemetryError> {
    let expected =
        "expected an http:// or https:// URL with a host, e.g. http://otel-collector:4318";
    let uri: http::Uri = url.parse().map_err(|_| invalid(name, url, expected))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !matches!(scheme, "http" | "https") || uri.host().is_none() {
        return Err(invalid(name, url, expected));
    }
    if scheme == "https" && protocol == Protocol::Grpc {
        return Err(invalid(
            name,
            url,
            "gRPC over TLS is not built in: use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for an https endpoint",
        ));
    }
    Ok(())
}

fn millis(
    pair: Option<(&'static str, String)>,
    default: u64,
    zero_ok: bool,
) -> Result<Duration, TelemetryError> {
    let Some((name, value)) = pair else {
        return Ok(Duration::from_millis(default));
    };
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 || zero_ok => Ok(Duration::from_millis(ms)),
        _ => Err(invalid(
            name,
            &value,
            if zero_ok {
                "expected a whole number of milliseconds"
            } else {
                "expected a whole number of milliseconds above 0"
            },
        )),
    }
}

fn count(pair: Option<(&'static str, String)>, default: usize) -> Result<usize, TelemetryError> {
    let Some((name, value)) = pair else {
        return Ok(default);
    };
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(name, &value, "expected a whole number above 0")),
    }
}

/// Checks `key=value,...` of a headers variable without repeating its value in the error:
/// headers carry API keys.
fn check_headers(name: &'static str, value: &str) -> Result<(), TelemetryError> {
    for (i, entry) in value.split(',').map(str::trim).enumerate() {
        let ok = entry
            .split_once('=')
            .is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty());
        if !entry.is_empty() && !ok {
            return Err(invalid(
                name,
                "(not shown: it may hold credentials)",
                format!(
                    "entry {} is not key=value (entries are separated by commas)",
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Checks `key=value,...` and returns the `service.name` it sets, if any.
fn resource_service_name(
    name: &'static str,
    value: &str,
) -> Result<Option<String>, TelemetryError> {
    let mut service = None;
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            Some((key, v)) if !key.trim().is_empty() => {
                if key.trim() == "service.name" && !v.trim().is_empty() {
                    service = Some(v.trim().to_owned());
                }
            }
            _ => {
                return Err(invalid(
                    name,
                    value,
                    format!("`{entry}` is not key=value (entries are separated by commas)"),
                ));
            }
        }
    }
    Ok(service)
}

fn sampler(
    name: Option<(&'static str, String)>,
    arg: Option<(&'static str, String)>,
) -> Result<SamplerSetting, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        match &arg {
            None => Ok(1.0),
            Some((arg_name, v)) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(invalid(
                    arg_name,
                    v,
                    "expected a ratio from 0 to 1, e.g. 0.25",
                )),
            },
        }
    };
    let Some((var, value)) = name else {
        return Ok(SamplerSetting::ParentBasedAlwaysOn);
    };
    Ok(match value.as_str() {
        "always_on" => SamplerSetting::AlwaysOn,
        "always_off" => SamplerSetting::AlwaysOff,
        "traceidratio" => SamplerSetting::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerSetting::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerSetting::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerSetting::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(invalid(
                var,
                &value,
                format!("expected one of {}", SamplerSetting::NAMES.join(", ")),
            ));
        }
    })
}

/// Builds the tracer provider: batch processor, exporter, resource and sampler. Must run
/// inside the Tokio runtime, which the exporters use for their connections.
pub(crate) fn provider(settings: &ExportSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::Export {
        reason: "trace export needs the Tokio runtime to be running".into(),
    })?;
    let built = match settings.protocol {
        Protocol::Grpc => {
            // The channel connects lazily, on the runtime of the caller.
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .build()
        }
        Protocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()
                .map_err(|e| TelemetryError::Export {
                    reason: format!("the HTTP client could not be built: {e}"),
                })?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(Http { client, runtime })
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .build()
        }
    };
    let exporter = built.map_err(|e| TelemetryError::Export {
        reason: e.to_string(),
    })?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(settings.schedule_delay)
        .with_max_queue_size(settings.max_queue_size)
        .with_max_export_batch_size(settings.max_export_batch_size)
        .build();
    let processor = BatchSpanProcessor::builder(Reporting::new(exporter))
        .with_batch_config(batch)
        .build();
    let detected = [
        TelemetryResourceDetector.detect(),
        EnvResourceDetector::new().detect(),
    ];
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(detected.iter().flat_map(|r| {
            r.iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()))
        }))
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        // The sample is decided before a span reaches the OpenTelemetry layer
        // ([`crate::trace::SampledFilter`]); what reaches it is kept.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource)
        .build())
}

/// OTLP/HTTP through the workspace's `reqwest` client (rustls). The batch processor sends
/// from a thread of its own, outside the runtime, so each request runs as a task on the
/// runtime and the processor waits for its result.
#[derive(Debug, Clone)]
struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Http {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = http::Response::builder().status(status).body(body)?;
            *answer.headers_mut() = headers;
            Ok::<_, opentelemetry_http::HttpError>(answer)
        });
        sent.await?
    }
}

/// Reports the exporter's failures once per outage: a WARN when sending starts failing, an
/// INFO when it works again, nothing in between.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    failing: Arc<AtomicBool>,
}

impl<E> Reporting<E> {
    fn new(inner: E) -> Self {
        Reporting {
            inner,
            failing: Arc::default(),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        spans,
                        "trace export failed; spans are dropped until the receiver answers"
                    );
                } else {
                    tracing::debug!(error = %e, spans, "trace export still failing");
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// A uniform draw in [0, 1), from the same random source as the trace ids.
fn rand_unit() -> f64 {
    use opentelemetry_sdk::trace::IdGenerator as _;
    let bits = u64::from_be_bytes(
        opentelemetry_sdk::trace::RandomIdGenerator::default()
            .new_span_id()
            .to_bytes(),
    );
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn samples_follow_the_parent_or_the_trace_id_ratio() {
        use opentelemetry::trace::TraceId;
        let low = TraceId::from_hex("ffffffffffffffff0000000000000000").unwrap();
        let high = TraceId::from_hex("0000000000000000ffffffffffffffff").unwrap();
        let based = SamplerSetting::ParentBasedTraceIdRatio(0.5);
        assert!(
            based.decide(Some((true, high))),
            "a sampled parent is followed"
        );
        assert!(!based.decide(Some((false, low))), "an unsampled one too");
        let ratio = SamplerSetting::TraceIdRatio(0.5);
        assert!(
            ratio.decide(Some((false, low))),
            "by the trace id's low half"
        );
        assert!(!ratio.decide(Some((true, high))));
        assert!(SamplerSetting::ParentBasedAlwaysOn.decide(None));
        assert!(!SamplerSetting::ParentBasedAlwaysOff.decide(None));
        assert!(!SamplerSetting::AlwaysOff.decide(Some((true, low))));
        assert!(SamplerSetting::AlwaysOn.decide(Some((false, high))));
        assert!(!SamplerSetting::ParentBasedTraceIdRatio(0.0).decide(None));
        assert!(SamplerSetting::ParentBasedTraceIdRatio(1.0).decide(None));
        let kept = (0..10_000)
            .filter(|_| SamplerSetting::TraceIdRatio(0.1).decide(None))
            .count();
        assert!(
            (700..1300).contains(&kept),
            "a root is drawn at the ratio: {kept}"
        );
    }

    fn read(vars: &[(&str, &str)]) -> Result<Option<ExportSettings>, TelemetryError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ExportSettings::from_lookup(|name| map.get(name).cloned(), "todo-api")
    }

    fn error_variable(vars: &[(&str, &str)]) -> &'static str {
        match read(vars) {
            Err(TelemetryError::InvalidSetting { variable, .. }) => variable,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn export_is_off_without_an_endpoint_or_when_disabled() {
        assert_eq!(read(&[]).unwrap(), None);
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert!(read(&on).unwrap().is_some());
        assert_eq!(read(&[on[0], ("OTEL_SDK_DISABLED", "true")]).unwrap(), None);
        assert_eq!(
            read(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn defaults_follow_the_specification() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.service_name, "todo-api");
        assert_eq!(s.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(s.schedule_delay, Duration::from_secs(5));
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!((s.max_queue_size, s.max_export_batch_size), (2048, 512));
    }

    #[test]
    fn explicit_settings_are_taken() {
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.name=from-attrs",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s.endpoint, "http://tempo:4317",
            "the traces endpoint, as it is"
        );
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.service_name, "from-attrs");
        assert_eq!(s.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.25));
        assert_eq!(s.schedule_delay, Duration::from_millis(100));
        assert_eq!(s.timeout, Duration::from_secs(2));
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "todo-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s.endpoint, "http://collector:4317",
            "gRPC takes the base as it is"
        );
        assert_eq!(s.service_name, "todo-eu", "OTEL_SERVICE_NAME wins");
        assert_eq!(
            s.endpoint_for_log(),
            "http://collector:4317/",
            "{}",
            s.endpoint_for_log()
        );
    }

    #[test]
    fn invalid_values_are_refused_naming_the_variable() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        for (vars, variable) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                vec![on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![on, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                vec![on, ("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    on,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![on, ("OTEL_BSP_SCHEDULE_DELAY", "soon")],
                "OTEL_BSP_SCHEDULE_DELAY",
            ),
            (
                vec![on, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
            (
                vec![on, ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![on, ("OTEL_RESOURCE_ATTRIBUTES", "team")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                vec![on, ("OTEL_EXPORTER_OTLP_HEADERS", "api-key")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (vec![on, ("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                vec![on, ("OTEL_TRACES_EXPORTER", "jaeger")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://x:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        ] {
            assert_eq!(error_variable(&vars), variable, "{vars:?}");
        }
        let message = read(&[on, ("OTEL_TRACES_SAMPLER", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("OTEL_TRACES_SAMPLER") && message.contains("sometimes"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_headers_value_is_refused_without_showing_it() {
        let message = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-api-key=fine,secret-token-123",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(message.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{message}");
        assert!(!message.contains("secret-token-123"), "{message}");
        assert!(
            read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k, tenant=t"),
            ])
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn the_logged_endpoint_hides_credentials_and_query() {
        let s = read(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://user:secret@otlp.example:443/v1/traces?token=abc",
        )])
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint_for_log(), "https://otlp.example:443/v1/traces");
    }
}
