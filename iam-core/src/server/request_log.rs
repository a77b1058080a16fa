//! The request log layer: one SERVER span, one log line and the HTTP request metrics per
//! request, the same in every process.

use std::borrow::Cow;
use std::time::Instant;

use salvo::prelude::*;
use tracing::Instrument as _;

use crate::config::LogRequests;
use crate::metrics::HttpMetrics;
use crate::telemetry;

/// How a process labels a request's route in spans, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// The matched route template (`/api/v1/users/{id}`): iam-api and iam-jwks. It names
    /// the span, labels the metrics and is logged as `route`.
    Matched,
    /// Every path belongs to another service (the sidecar's main port): the metrics carry
    /// this one label so that the series stay bounded; the span and the log have no route.
    Fixed(&'static str),
}

/// A service hoop that wraps the rest of the request in a SERVER span (continuing the
/// client's `traceparent`), then records the request metrics and logs one line: `env` (when
/// set), `method`, `route` (for [`RouteLabel::Matched`]), `path` (when asked for; never the
/// query, which may carry secrets), `status`, `latency_ms` and `trace_id`. The line is at
/// `info` for every request or only for refused and failed ones (status 400 and above), as
/// [`LogRequests`] says; the others are at `debug`.
#[derive(Debug, Clone)]
pub struct RequestLog {
    metrics: HttpMetrics,
    route: RouteLabel,
    env: Option<String>,
    log_path: bool,
    log_requests: LogRequests,
}

impl RequestLog {
    /// Records into `metrics`, labelling routes as `route`; logs neither env nor path.
    pub fn new(metrics: HttpMetrics, route: RouteLabel) -> Self {
        RequestLog {
            metrics,
            route,
            env: None,
            log_path: false,
            log_requests: LogRequests::All,
        }
    }

    /// Which requests get an `info` line (every one unless told otherwise).
    pub fn logging(mut self, log_requests: LogRequests) -> Self {
        self.log_requests = log_requests;
        self
    }

    /// Also logs the environment label as `env`.
    pub fn with_env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }

    /// Also logs the request path (without its query) as `path`.
    pub fn with_path(mut self) -> Self {
        self.log_path = true;
        self
    }
}

#[async_trait]
impl Handler for RequestLog {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let started = Instant::now();
        let span = telemetry::server_span(req.method().as_str(), req.uri().path(), req.headers());
        ctrl.call_next(req, depot, res)
            .instrument(span.clone())
            .await;
        let status = res.status_code.map_or(200, |status| status.as_u16());
        let (method, path) = (req.method().as_str(), req.uri().path());
        let matched_route = Cow::Owned(req.matched_path().to_owned());
        self.record(&span, method, matched_route, path, status, started);
    }
}

impl RequestLog {
    /// Finishes the SERVER `span` of an answered request, records its metrics and writes its
    /// line. `matched_route` is the route template the request matched (`""`: none), used
    /// for [`RouteLabel::Matched`]; `path` is the request's path without its query.
    pub fn record(
        &self,
        span: &tracing::Span,
        method: &str,
        matched_route: Cow<'static, str>,
        path: &str,
        status: u16,
        started: Instant,
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        let (metric_route, logged_route) = match self.route {
            RouteLabel::Matched => (matched_route, true),
            RouteLabel::Fixed(label) => (Cow::Borrowed(label), false),
        };
        let logged_route = logged_route.then_some(&*metric_route);
        telemetry::finish_server_span(span, method, logged_route.unwrap_or(""), status);
        // `tracing`'s levels are fixed per call site, hence one call per level.
        macro_rules! request_line {
            ($level:ident) => {
                tracing::$level!(
                    env = self.env.as_deref().map(tracing::field::display),
                    method = %method,
                    route = logged_route,
                    path = self.log_path.then_some(path),
                    status,
                    latency_ms = elapsed * 1000.0,
                    trace_id = telemetry::trace_id(span).as_deref(),
                    "request"
                )
            };
        }
        if status >= 400 || self.log_requests == LogRequests::All {
            request_line!(info);
        } else if tracing::enabled!(tracing::Level::DEBUG) {
            request_line!(debug);
        }
        self.metrics.observe(method, metric_route, status, elapsed);
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use salvo::http::StatusCode;

    use super::*;
    use crate::metrics::{Registry, render};

    /// Collects what the log layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[handler]
    async fn created(res: &mut Response) {
        res.status_code(StatusCode::CREATED);
    }

    #[handler]
    async fn missing(res: &mut Response) {
        res.status_code(StatusCode::NOT_FOUND);
    }

    /// Sends `GET /orders/7?secret=1` through `log` to `answer`, logging up to `level`, and
    /// returns what was logged.
    async fn logged(log: RequestLog, answer: impl Handler, level: tracing::Level) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut req = Request::new();
        *req.uri_mut() = "/orders/7?secret=1".parse().expect("uri");
        let mut depot = Depot::new();
        let mut res = Response::new();
        let mut ctrl = FlowCtrl::new(vec![Arc::new(log), Arc::new(answer)]);
        ctrl.call_next(&mut req, &mut depot, &mut res).await;
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(!text.contains("secret"), "{text}");
        text
    }

    /// The log line of one request answered 201, logged at `info`.
    async fn one_request(log: RequestLog) -> serde_json::Value {
        let text = logged(log, created, tracing::Level::INFO).await;
        serde_json::from_str(text.lines().last().expect("a log line")).expect("json")
    }

    fn request_lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
            .filter(|line| line["message"] == "request")
            .collect()
    }

    #[tokio::test]
    async fn when_only_failures_are_logged_successes_are_debug_lines() {
        let log = || {
            let mut registry = Registry::default();
            RequestLog::new(HttpMetrics::register(&mut registry), RouteLabel::Matched)
                .logging(LogRequests::Failures)
        };
        let at_info = logged(log(), created, tracing::Level::INFO).await;
        assert!(request_lines(&at_info).is_empty(), "{at_info}");
        let at_debug = request_lines(&logged(log(), created, tracing::Level::DEBUG).await);
        assert_eq!(at_debug.len(), 1);
        assert_eq!(at_debug[0]["level"], "DEBUG");
        assert_eq!(at_debug[0]["status"], 201);
        let refused = request_lines(&logged(log(), missing, tracing::Level::INFO).await);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["level"], "INFO");
        assert_eq!(refused[0]["status"], 404);
        // By default every request is an info line.
        let mut registry = Registry::default();
        let every = RequestLog::new(HttpMetrics::register(&mut registry), RouteLabel::Matched);
        let lines = request_lines(&logged(every, created, tracing::Level::INFO).await);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["level"], "INFO");
    }

    #[tokio::test]
    async fn a_fixed_label_counts_every_path_under_it_and_logs_the_path_without_a_route() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let line = one_request(RequestLog::new(http, RouteLabel::Fixed("/*")).with_path()).await;
        assert_eq!(line["message"], "request");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/orders/7");
        assert_eq!(line["status"], 201);
        assert!(line.get("route").is_none(), "{line}");
        assert!(line.get("env").is_none(), "{line}");
        assert!(line["latency_ms"].is_number(), "{line}");
        let metrics = render(&registry);
        assert!(
            metrics
                .contains(r#"http_server_requests_total{method="GET",route="/*",status="201"} 1"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn matched_routes_are_logged_with_the_environment_when_asked() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let line = one_request(RequestLog::new(http, RouteLabel::Matched).with_env("stage")).await;
        assert_eq!(line["env"], "stage");
        // No router ran, so nothing matched.
        assert_eq!(line["route"], "");
        assert!(line.get("path").is_none(), "{line}");
        let metrics = render(&registry);
        assert!(
            metrics.contains(r#"route="unmatched",status="201"} 1"#),
            "{metrics}"
        );
    }
}
