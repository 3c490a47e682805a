//! W3C trace context for `tracing` spans: every span has a trace id and a span id, a span
//! can continue a trace named by a `traceparent` header, and a span's own `traceparent` can
//! be handed on (to an event, an outgoing request).
//!
//! With OTLP export on ([`crate::otlp`]) the ids are those of the OpenTelemetry spans that
//! `tracing-opentelemetry` builds and exports. With export off, a small layer
//! ([`ContextLayer`]) keeps only the ids, drawn from the same OpenTelemetry id generator,
//! so log lines and events still carry a trace without any span being built. Either way the
//! header is read and written by OpenTelemetry's W3C TraceContext propagator.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use tracing::span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub use opentelemetry::{KeyValue, Value};

/// The header (and CloudEvent attribute) name.
pub const TRACEPARENT: &str = "traceparent";

/// Set once the OTLP layer is installed: attributes meant only for exported spans are then
/// worth computing.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` was set). Callers use it to skip work that only
/// exported spans need (span names and attributes).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The configured sampler, set when export is on: [`SampledFilter`] decides with it.
static SAMPLER: std::sync::OnceLock<crate::otlp::SamplerSetting> = std::sync::OnceLock::new();

pub(crate) fn set_sampler(sampler: crate::otlp::SamplerSetting) {
    let _ = SAMPLER.set(sampler);
}

thread_local! {
    /// The sample decided for the span being created on this thread, from
    /// [`SampledFilter::enabled`] to [`ContextLayer::on_new_span`].
    /// Keyed by the span's callsite (its metadata's address), so a decision for a span that
    /// was then not created (filtered out elsewhere) is never taken for another.
    static DECIDED: std::cell::Cell<Option<(usize, bool)>> = const { std::cell::Cell::new(None) };
    /// The remote parent the next span created on this thread will get ([`upcoming_parent`]):
    /// `Some(Some(..))` its sampled flag and trace id, `Some(None)` none or an invalid one
    /// (a root).
    static UPCOMING: std::cell::Cell<Option<Option<(bool, TraceId)>>> =
        const { std::cell::Cell::new(None) };
}

/// Says, before a span is created, which `traceparent` it will be given with [`set_parent`],
/// so the sample follows the remote parent's. Keep the guard until the span is created.
pub fn upcoming_parent(traceparent: Option<&str>) -> UpcomingParent {
    let remote = traceparent
        .and_then(parse)
        .map(|sc| (sc.is_sampled(), sc.trace_id()));
    UPCOMING.with(|u| u.set(Some(remote)));
    UpcomingParent(())
}

/// Clears what [`upcoming_parent`] said when dropped.
#[must_use = "the remote parent applies to spans created while the guard lives"]
#[derive(Debug)]
pub struct UpcomingParent(());

impl Drop for UpcomingParent {
    fn drop(&mut self) {
        UPCOMING.with(|u| u.set(None));
    }
}

/// The per-layer filter of the OpenTelemetry layer: it decides the sample before a span
/// reaches that layer, so an unsampled span costs only [`ContextLayer`]'s ids instead of a
/// whole OpenTelemetry span built and then dropped. A span with a remote parent
/// ([`upcoming_parent`]) or without a parent is decided by the configured sampler; a child
/// follows its parent. Only this project's spans are exported, and of its events only WARN
/// and ERROR (they become span events; the others are in the logs, which carry the ids).
#[derive(Debug, Default)]
pub struct SampledFilter;

impl<S> tracing_subscriber::layer::Filter<S> for SampledFilter
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool {
        let ours = meta.target().starts_with("todo");
        if !meta.is_span() {
            return ours
                && *meta.level() <= tracing::Level::WARN
                && cx
                    .current_span()
                    .id()
                    .is_some_and(|id| cx.span(id).is_some());
        }
        if !ours {
            return false;
        }
        let sampler = SAMPLER.get().copied().unwrap_or_default();
        let sampled = match UPCOMING.with(|u| u.take()) {
            Some(remote) => sampler.decide(remote),
            // A child follows its parent: sampled when the parent reached this layer.
            None => match cx.current_span().id() {
                Some(parent) => cx.span(parent).is_some(),
                None => sampler.decide(None),
            },
        };
        DECIDED.with(|d| d.set(Some((callsite(meta), sampled))));
        sampled
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target().starts_with("todo") {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

fn callsite(meta: &tracing::Metadata<'_>) -> usize {
    std::ptr::from_ref(meta) as usize
}

/// A span's place in its trace, kept by [`ContextLayer`] when spans are not exported.
#[derive(Debug, Clone, Copy)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

/// Gives every span a trace id (its parent's, or a new one) and a span id, and nothing
/// more: installed instead of the OpenTelemetry layer when spans are not exported.
#[derive(Debug, Default)]
pub struct ContextLayer {
    ids: RandomIdGenerator,
}

impl ContextLayer {
    /// A layer drawing ids from OpenTelemetry's random id generator.
    pub fn new() -> Self {
        ContextLayer::default()
    }
}

impl<S> Layer<S> for ContextLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // With export on, a sampled span's ids are its OpenTelemetry span's, and so are
        // those of a span inside one that the OpenTelemetry layer does not take (a
        // library's): logs and propagation then read them from there.
        let decided = DECIDED
            .with(|d| d.take())
            .filter(|(site, _)| *site == callsite(attrs.metadata()))
            .map(|(_, sampled)| sampled);
        if decided == Some(true) {
            return;
        }
        let parent = span.parent();
        if exporting()
            && let Some(parent) = &parent
            && parent.extensions().get::<Ids>().is_none()
        {
            return;
        }
        let parent = parent.and_then(|p| p.extensions().get::<Ids>().copied());
        let ids = match parent {
            Some(parent) => Ids {
                span_id: self.ids.new_span_id(),
                ..parent
            },
            None => Ids {
                trace_id: self.ids.new_trace_id(),
                span_id: self.ids.new_span_id(),
                // Unsampled when export is on and the sample said no, so what this span
                // causes is not sampled either.
                flags: match decided {
                    Some(false) => TraceFlags::default(),
                    _ => TraceFlags::SAMPLED,
                },
            },
        };
        let mut extensions = span.extensions_mut();
        if extensions.get_mut::<Ids>().is_none() {
            extensions.insert(ids);
        }
    }
}

/// The trace and span id of the innermost span of an event's scope (given leaf first) that
/// has them, as log lines show them: from [`ContextLayer`] when it runs, else from the
/// current OpenTelemetry context (the innermost entered span the OpenTelemetry layer sees).
pub(crate) fn log_ids<'a, 'b: 'a>(
    leaf_first: impl Iterator<Item = &'a tracing_subscriber::registry::Extensions<'b>>,
) -> Option<(String, String)> {
    for extensions in leaf_first {
        if let Some(ids) = extensions.get::<Ids>() {
            return Some(hex_ids(ids.trace_id, ids.span_id));
        }
    }
    if !exporting() {
        return None;
    }
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| hex_ids(sc.trace_id(), sc.span_id()))
    })
}

fn hex_ids(trace_id: TraceId, span_id: SpanId) -> (String, String) {
    (format!("{trace_id:032x}"), format!("{span_id:016x}"))
}

/// Runs `f` on the ids [`ContextLayer`] keeps for `span`; `false` when the span has none
/// (that layer is not installed, or, with export on, the span is sampled: its ids are then
/// its OpenTelemetry span's).
fn with_ids(span: &tracing::Span, f: impl FnOnce(&mut Ids)) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        if dispatch.downcast_ref::<ContextLayer>().is_none() {
            return false;
        }
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return false;
        };
        // A span without ids (with export on: a sampled one) has them from OpenTelemetry.
        if let Some(span) = registry.span(id)
            && let Some(ids) = span.extensions_mut().get_mut::<Ids>()
        {
            f(ids);
            return true;
        }
        false
    })
    .unwrap_or(false)
}

/// The one header the propagator reads.
struct Incoming<'a>(&'a str);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The one header the propagator writes.
#[derive(Default)]
struct Header(Option<String>);

impl Injector for Header {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The span context a `traceparent` value names, when it is a valid one.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract(&Incoming(traceparent));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The `traceparent` value naming `sc`.
fn format(sc: SpanContext) -> Option<String> {
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    let mut header = Header::default();
    TraceContextPropagator::new().inject_context(&cx, &mut header);
    header.0
}

/// Makes `span` a child of the span `traceparent` names, in that trace; a missing or
/// invalid value leaves `span` where it is (a new trace when it has no parent). Call it
/// right after creating the span, before entering it or creating children.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(remote) = traceparent.and_then(parse) else {
        return;
    };
    let (trace_id, flags) = (remote.trace_id(), remote.trace_flags());
    if !with_ids(span, |ids| {
        ids.trace_id = trace_id;
        // With export on, the span's own sample (already decided) stands.
        if !exporting() {
            ids.flags = flags;
        }
    }) {
        // Only fails when the span was already started: then it keeps its own trace.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Adds a link from `span` to the span `traceparent` names (exported spans only).
pub fn add_link(span: &tracing::Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(remote) = traceparent.and_then(parse) {
        span.add_link(remote);
    }
}

/// The `traceparent` naming `span`, to hand on to what it causes (an event, a request);
/// `None` when no tracing layer gives the span ids.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    span_context(span).and_then(format)
}

/// `span`'s place in its trace: [`ContextLayer`]'s ids, or its OpenTelemetry span's.
fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    let mut own = None;
    if with_ids(span, |ids| {
        own = Some(SpanContext::new(
            ids.trace_id,
            ids.span_id,
            ids.flags,
            false,
            TraceState::NONE,
        ));
    }) {
        return own;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The trace id of `span` when its trace is sampled: the one worth an exemplar, since
/// only a sampled trace can be looked up.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    span_context(span).and_then(sampled_id)
}

/// The trace id a `traceparent` names, when its trace is sampled.
pub fn sampled_trace_id_of(traceparent: &str) -> Option<String> {
    parse(traceparent).and_then(sampled_id)
}

fn sampled_id(sc: SpanContext) -> Option<String> {
    sc.is_sampled().then(|| format!("{:032x}", sc.trace_id()))
}

/// Names the exported span. Does nothing, and `name` is never built, when spans are not
/// exported or this one is not sampled. This starts the exported span: set its parent
/// ([`set_parent`]) first.
pub fn set_name(span: &tracing::Span, name: impl FnOnce() -> String) {
    if exporting() {
        let cx = span.context();
        let exported = cx.span();
        if exported.is_recording() {
            exported.update_name(name());
        }
    }
}

/// Sets attributes on the exported span; does nothing, and `attributes` is never called,
/// when spans are not exported or this one is not sampled. Attribute names follow the
/// OpenTelemetry semantic conventions (`http.request.method`, `messaging.system`, ...).
/// This starts the exported span: set its parent ([`set_parent`]) first.
pub fn set_attributes<I>(span: &tracing::Span, attributes: impl FnOnce() -> I)
where
    I: IntoIterator<Item = KeyValue>,
{
    if exporting() {
        let cx = span.context();
        let exported = cx.span();
        if exported.is_recording() {
            exported.set_attributes(attributes());
        }
    }
}

/// Marks the exported span as failed, with `description`.
pub fn set_error(span: &tracing::Span, description: impl FnOnce() -> String) {
    if exporting() {
        span.set_status(opentelemetry::trace::Status::error(description()));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn with_context_layer(f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(ContextLayer::new());
        tracing::subscriber::with_default(subscriber, f);
    }

    fn parts(header: &str) -> Vec<String> {
        header.split('-').map(str::to_owned).collect()
    }

    #[test]
    fn valid_traceparents_parse_and_bad_ones_are_refused() {
        let sc = parse(PARENT).expect("valid");
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:016x}", sc.span_id()), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(format(sc).as_deref(), Some(PARENT));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_span_without_parent_starts_a_trace_and_children_share_it() {
        with_context_layer(|| {
            let root = tracing::info_span!("root");
            let header = traceparent(&root).expect("ids");
            let root_parts = parts(&header);
            assert_eq!(root_parts[0], "00");
            assert_eq!(root_parts[3], "01");
            let child = root.in_scope(|| tracing::info_span!("child"));
            let child_parts = parts(&traceparent(&child).unwrap());
            assert_eq!(child_parts[1], root_parts[1], "same trace");
            assert_ne!(child_parts[2], root_parts[2], "own span id");
            let other = parts(&traceparent(&tracing::info_span!("other")).unwrap());
            assert_ne!(other[1], root_parts[1], "a new trace");
        });
    }

    #[test]
    fn set_parent_continues_the_remote_trace_and_ignores_bad_values() {
        with_context_layer(|| {
            let span = tracing::info_span!("consumer");
            set_parent(&span, Some(PARENT));
            let own = parts(&traceparent(&span).unwrap());
            assert_eq!(own[1], "0af7651916cd43dd8448eb211c80319c");
            assert_ne!(own[2], "b7ad6b7169203331");
            let child = span.in_scope(|| tracing::info_span!("inner"));
            assert_eq!(parts(&traceparent(&child).unwrap())[1], own[1]);

            let span = tracing::info_span!("consumer");
            let before = traceparent(&span);
            set_parent(&span, Some("garbage"));
            set_parent(&span, None);
            assert_eq!(traceparent(&span), before);
        });
    }

    #[test]
    fn without_a_tracing_layer_there_is_no_traceparent() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("x");
            set_parent(&span, Some(PARENT));
            assert_eq!(traceparent(&span), None);
        });
    }
}
