//! The admin port: readiness and metrics, kept off the main port, which belongs to the
//! upstream entirely.

use std::sync::Arc;

use iam_core::server::{Drain, MetricsEndpoint};
use salvo::http::StatusCode;
use salvo::http::header::{CACHE_CONTROL, HeaderValue};
use salvo::prelude::*;
use serde_json::json;

use crate::metrics::Metrics;
use crate::verifier::TokenVerifier;

/// `GET /healthcheck`: 200 once a key set has loaded, 503 before, and 503 `draining` after
/// the stop signal (the main port still serves during `SHUTDOWN_DELAY`).
#[derive(Debug)]
struct Healthcheck {
    verifier: Arc<TokenVerifier>,
    env: String,
    drain: Drain,
}

#[async_trait]
impl Handler for Healthcheck {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let ready = self.verifier.is_ready();
        let draining = self.drain.is_draining();
        if !ready || draining {
            res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        }
        let status = match (draining, ready) {
            (true, _) => "draining",
            (false, true) => "ok",
            (false, false) => "starting",
        };
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.render(Json(json!({
            "status": status,
            "keys": if ready { "loaded" } else { "not loaded" },
            "env": self.env,
            "version": env!("CARGO_PKG_VERSION"),
        })));
    }
}

/// The admin-port service.
pub fn service(
    verifier: Arc<TokenVerifier>,
    metrics: Arc<Metrics>,
    env: String,
    drain: Drain,
) -> Service {
    let router = Router::new()
        .push(Router::with_path("healthcheck").get(Healthcheck {
            verifier,
            env,
            drain,
        }))
        .push(Router::with_path("metrics").get(MetricsEndpoint::new(move || metrics.render())));
    Service::new(router).hoop(iam_core::server::RequestHeadLimit)
}
