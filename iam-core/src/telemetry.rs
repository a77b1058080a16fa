//! Logging and tracing for the binaries: one tracing subscriber writing text or JSON lines to
//! stdout, plus, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, an
//! OpenTelemetry layer exporting spans over OTLP (`OTEL_EXPORTER_OTLP_PROTOCOL`
//! `http/protobuf`, the default, `http/json` or `grpc`). W3C `traceparent` is the propagation
//! format.

mod grpc;
mod stdout_lines;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use stdout_lines::{StdoutLines, StdoutLinesGuard};

pub use crate::config::LogFormat;

/// Keeps the span exporter alive; [`TelemetryGuard::shutdown`] flushes buffered spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    log_lines: StdoutLinesGuard,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter, then writes out the queued log lines (call once the
    /// runtime has finished serving).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("could not flush traces: {error}");
        }
        self.log_lines.flush();
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// What every process logs and traces through: one line per event (`format`) and, with a
/// `tracer`, spans for trace export.
fn subscriber<W>(
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Without a tracer nothing wants spans: a global filter disables each where it is
    // created, so it costs a request nothing. (The `None` tracer layer alone would not: an
    // absent `Option` layer declares interest in everything, and so enabled every span.)
    let spans_off = tracer
        .is_none()
        .then(|| filter_fn(|metadata| !metadata.is_span()));
    let otel_layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter())
    });
    // Each layer filters for itself, so that the log layer can leave out every span: spans
    // (a request's SERVER span, a query's CLIENT span, an upstream call's) exist for trace
    // export, and each log line carries what it needs (the request line its `trace_id`).
    // Recorded by the log layer, each would format its fields (a query span carries its
    // SQL) into a new string per request.
    let log_filter = filter().and(filter_fn(|metadata| !metadata.is_span()));
    let registry = tracing_subscriber::registry()
        .with(otel_layer)
        .with(spans_off);
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => Box::new(registry.with(lines.with_filter(log_filter))),
        LogFormat::Json => {
            Box::new(registry.with(lines.json().flatten_event(true).with_filter(log_filter)))
        }
    }
}

/// Installs logging (level from `RUST_LOG`, default `info`) and, when configured, trace
/// export. `service` is the default `service.name` (`OTEL_SERVICE_NAME` overrides it);
/// `environment` becomes `deployment.environment`.
pub fn init(format: LogFormat, service: &str, environment: &str) -> TelemetryGuard {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![Box::new(
        TraceContextPropagator::new(),
    )]));
    let provider = if otlp_configured() {
        match tracer_provider(service, environment) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("{service}: trace export disabled: {error}");
                None
            }
        }
    } else {
        None
    };
    let tracer = provider
        .as_ref()
        .map(|provider| provider.tracer(service.to_owned()));
    // Lines are written by a thread of their own, never on the request path.
    let (stdout, log_lines) = StdoutLines::start(std::io::stdout());
    // A second initialisation (tests) is harmless, so its error is ignored.
    let _ = subscriber(format, tracer, stdout).try_init();
    TelemetryGuard {
        provider,
        log_lines,
    }
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpTransport {
    /// `http/protobuf` or `http/json`; the exporter reads which from the environment.
    Http,
    Grpc,
}

/// The transport named by `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else the specification's default `http/protobuf`.
fn otlp_transport(
    traces_protocol: Option<&str>,
    protocol: Option<&str>,
) -> Result<OtlpTransport, String> {
    let chosen = [
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", traces_protocol),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
    ]
    .into_iter()
    .find_map(|(name, value)| {
        value
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(|value| (name, value))
    });
    match chosen {
        None | Some((_, "http/protobuf" | "http/json")) => Ok(OtlpTransport::Http),
        Some((_, "grpc")) => Ok(OtlpTransport::Grpc),
        Some((name, other)) => Err(format!(
            "{name}={other} is not supported (http/protobuf, http/json or grpc)"
        )),
    }
}

fn tracer_provider(service: &str, environment: &str) -> Result<SdkTracerProvider, String> {
    let traces_protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").ok();
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok();
    let builder = SdkTracerProvider::builder();
    let builder = match otlp_transport(traces_protocol.as_deref(), protocol.as_deref())? {
        OtlpTransport::Http => builder.with_batch_exporter(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|error| error.to_string())?,
        ),
        OtlpTransport::Grpc => builder.with_batch_exporter(grpc::GrpcSpanExporter::from_env()?),
    };
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment", environment.to_owned()),
        ])
        .build();
    Ok(builder.with_resource(resource).build())
}

/// The trace context a request carries in its `traceparent` header, if any.
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Writes the current span's context into `traceparent` of an outgoing request.
pub fn inject_current_span(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the context the request carried in.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    // Without trace export the span is disabled: nothing to continue, nothing to parse.
    if !span.is_disabled() {
        let _ = span.set_parent(extract_context(headers));
    }
}

/// The name of every request's SERVER span. Like every span, it exists for trace export only:
/// the log layer never sees spans (each request has its own log line), so without an
/// exporter it is disabled and costs nothing.
const SERVER_SPAN_NAME: &str = "HTTP request";

/// A SERVER span for one request (OpenTelemetry HTTP semantic conventions), continuing the
/// trace of the request's `traceparent`. Route and status are recorded by
/// [`finish_server_span`] once known.
pub fn server_span(method: &str, path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        SERVER_SPAN_NAME,
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        url.path = path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    continue_trace(&span, headers);
    span
}

/// Records the matched route template and the status on a span from [`server_span`].
pub fn finish_server_span(span: &tracing::Span, method: &str, route: &str, status: u16) {
    if span.is_disabled() {
        return;
    }
    if !route.is_empty() {
        let route = if route.starts_with('/') {
            route.to_owned()
        } else {
            format!("/{route}")
        };
        span.record("otel.name", format!("{method} {route}"));
        span.record("http.route", route);
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace id of `span` (32 hex digits) when it belongs to a valid trace, for log lines.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_protocol_wins_and_http_protobuf_is_the_default() {
        assert_eq!(otlp_transport(None, None), Ok(OtlpTransport::Http));
        assert_eq!(otlp_transport(Some(" "), None), Ok(OtlpTransport::Http));
        assert_eq!(otlp_transport(None, Some("grpc")), Ok(OtlpTransport::Grpc));
        assert_eq!(
            otlp_transport(Some("http/json"), Some("grpc")),
            Ok(OtlpTransport::Http)
        );
        assert_eq!(
            otlp_transport(Some("grpc"), Some("http/protobuf")),
            Ok(OtlpTransport::Grpc)
        );
    }

    #[test]
    fn without_trace_export_spans_are_disabled_where_they_are_created() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let logged =
                tracing::subscriber::with_default(subscriber(format, None, std::io::sink), || {
                    let span = server_span("GET", "/x", &http::HeaderMap::new());
                    let instrumented = tracing::info_span!("db users::find_bearer");
                    (
                        span.is_disabled(),
                        instrumented.is_disabled(),
                        tracing::enabled!(tracing::Level::INFO),
                    )
                });
            assert_eq!(logged, (true, true, true), "{format:?}");
        }
    }

    #[test]
    fn events_after_a_disabled_span_are_still_logged() {
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = std::sync::Arc::clone(&written);
        let writer = move || Captured(std::sync::Arc::clone(&sink));
        let dispatch = tracing::Dispatch::new(subscriber(LogFormat::Json, None, writer));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("before");
            let span = server_span("GET", "/x", &http::HeaderMap::new());
            assert!(span.is_disabled());
            tracing::info!("after");
        });
        // Another thread (a runtime's worker) logs through the same subscriber.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tracing::dispatcher::with_default(&dispatch, || {
                    tracing::info!(delay_seconds = 2, "from another thread");
                });
            });
        });
        let text = String::from_utf8(
            written
                .lock()
                .map(|bytes| bytes.clone())
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert!(text.contains("before"), "{text}");
        assert!(text.contains("after"), "{text}");
        assert!(text.contains("from another thread"), "{text}");
    }

    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut written) = self.0.lock() {
                written.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn with_trace_export_spans_are_recorded() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let recorded = tracing::subscriber::with_default(
            subscriber(LogFormat::Json, Some(tracer), std::io::sink),
            || !server_span("GET", "/x", &http::HeaderMap::new()).is_disabled(),
        );
        assert!(recorded);
    }

    #[test]
    fn an_unknown_protocol_is_named_in_the_error() {
        let error = otlp_transport(None, Some("thrift")).expect_err("refused");
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_PROTOCOL=thrift"),
            "{error}"
        );
    }
}
