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

/// `GET /healthcheck`: 200 once a key set and the revocation feed have loaded, 503 before,
/// and 503 `draining` after the stop signal (the main port still serves during
/// `SHUTDOWN_DELAY`). The feed's age shows how current the revocations in force are.
#[derive(Debug)]
struct Healthcheck {
    verifier: Arc<TokenVerifier>,
    metrics: Arc<Metrics>,
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
            "keys": if self.verifier.keys_loaded() { "loaded" } else { "not loaded" },
            "revocations": if self.verifier.revocations_loaded() { "loaded" } else { "not loaded" },
            "revocations_age_seconds": self.metrics.revocation_feed_age_seconds(),
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
            metrics: Arc::clone(&metrics),
            env,
            drain,
        }))
        .push(Router::with_path("metrics").get(MetricsEndpoint::new(move || metrics.render())));
    Service::new(router).hoop(iam_core::server::RequestHeadLimit)
}
