//! Prometheus metrics shared by the processes: the registry type, the HTTP request series
//! every process exports, and the text encoding served at `GET /metrics`.

use std::borrow::Cow;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub use prometheus_client::registry::Registry;

/// The media type of [`render`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the HTTP request series. `route` is the route template (`/api/v1/users/{id}`),
/// never the raw path, and `method` one of a fixed set ([`method_label`]), so that neither
/// ids nor invented methods can blow up the series count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: Cow<'static, str>,
    pub status: u16,
}

/// The methods of RFC 9110 and PATCH as themselves, any other as `_OTHER` (OpenTelemetry's
/// HTTP conventions): a client may send any token as a method.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

/// Latency buckets from 0.25 ms to about 8 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// One label set's request count and latency.
#[derive(Debug)]
struct RequestSeries {
    count: Counter,
    duration: Histogram,
}

/// Request count and latency by method, route and status. Both series of a label set live
/// under one map entry, so that recording a request costs one lookup, not one per family
/// (measured on iam-jwks, whose answers cost a few microseconds, the second lookup showed).
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    series: Arc<RwLock<HashMap<HttpLabels, RequestSeries>>>,
}

const REQUESTS_NAME: &str = "http_server_requests";
const REQUESTS_HELP: &str = "HTTP requests served, by method, route and status";
const DURATION_NAME: &str = "http_server_request_duration_seconds";
const DURATION_HELP: &str = "Time to answer HTTP requests, by method, route and status";

impl HttpMetrics {
    /// Creates the series and registers them in `registry` as `http_server_requests` and
    /// `http_server_request_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Records one answered request (`route` `""`: none matched).
    pub fn observe(&self, method: &str, route: Cow<'static, str>, status: u16, seconds: f64) {
        // salvo reports templates without the leading slash.
        let route = if route.is_empty() {
            Cow::Borrowed("unmatched")
        } else if route.starts_with('/') {
            route
        } else {
            Cow::Owned(format!("/{route}"))
        };
        let labels = HttpLabels {
            method: method_label(method),
            route,
            status,
        };
        let record = |series: &RequestSeries| {
            series.count.inc();
            series.duration.observe(seconds);
        };
        if let Some(series) = self.read().get(&labels) {
            return record(series);
        }
        let mut all = self.series.write().unwrap_or_else(PoisonError::into_inner);
        record(all.entry(labels).or_insert_with(|| RequestSeries {
            count: Counter::default(),
            duration: latency_histogram(),
        }));
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<HttpLabels, RequestSeries>> {
        // A panic while holding the lock leaves counters, not broken invariants.
        self.series.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Collector for HttpMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.read();
        if all.is_empty() {
            return Ok(());
        }
        let mut requests =
            encoder.encode_descriptor(REQUESTS_NAME, REQUESTS_HELP, None, MetricType::Counter)?;
        for (labels, series) in all.iter() {
            series.count.encode(requests.encode_family(labels)?)?;
        }
        let mut durations =
            encoder.encode_descriptor(DURATION_NAME, DURATION_HELP, None, MetricType::Histogram)?;
        for (labels, series) in all.iter() {
            series.duration.encode(durations.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_series_are_rendered_with_route_templates() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        http.observe("GET", "api/v1/users/{id}".into(), 200, 0.002);
        http.observe("GET", "".into(), 404, 0.001);
        http.observe("FROBNICATE", "".into(), 404, 0.001);
        http.observe("get", "/static".into(), 200, 0.001);
        let text = render(&registry);
        assert!(text.contains(r#"http_server_requests_total{method="GET",route="/api/v1/users/{id}",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        // Invented methods (and methods are case-sensitive) share one series.
        assert!(
            text.contains(
                r#"http_server_requests_total{method="_OTHER",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_server_requests_total{method="_OTHER",route="/static",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("FROBNICATE"), "{text}");
        assert!(
            text.contains("http_server_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
