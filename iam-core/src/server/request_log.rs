//! The request log layer: one SERVER span, one log line and the HTTP request metrics per
//! request, the same in every process.

use std::time::Instant;

use salvo::prelude::*;
use tracing::Instrument as _;

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
/// query, which may carry secrets), `status`, `latency_ms` and `trace_id`.
#[derive(Debug, Clone)]
pub struct RequestLog {
    metrics: HttpMetrics,
    route: RouteLabel,
    env: Option<String>,
    log_path: bool,
}

impl RequestLog {
    /// Records into `metrics`, labelling routes as `route`; logs neither env nor path.
    pub fn new(metrics: HttpMetrics, route: RouteLabel) -> Self {
        RequestLog {
            metrics,
            route,
            env: None,
            log_path: false,
        }
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
        let elapsed = started.elapsed().as_secs_f64();
        let status = res.status_code.map_or(200, |status| status.as_u16());
        let method = req.method().as_str();
        let (span_route, metric_route, logged_route) = match self.route {
            RouteLabel::Matched => (
                req.matched_path(),
                req.matched_path(),
                Some(req.matched_path()),
            ),
            RouteLabel::Fixed(label) => ("", label, None),
        };
        telemetry::finish_server_span(&span, method, span_route, status);
        self.metrics.observe(method, metric_route, status, elapsed);
        tracing::info!(
            env = self.env.as_deref().map(tracing::field::display),
            method = %req.method(),
            route = logged_route,
            path = self.log_path.then(|| req.uri().path()),
            status,
            latency_ms = elapsed * 1000.0,
            trace_id = telemetry::trace_id(&span).as_deref(),
            "request"
        );
    }
}
