//! Builds the salvo service: routes, OpenAPI document, docs page, state and error catcher.
//! Used by `main` and by tests.

use std::time::Instant;

use salvo::catcher::Catcher;
use salvo::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use salvo::oapi::security::{Http, HttpAuthScheme};
use salvo::oapi::swagger_ui::SwaggerUi;
use salvo::oapi::{Content, OpenApi, Ref, RefOr, SecurityScheme};
use salvo::prelude::*;

use std::sync::Arc;

use iam_core::telemetry;
use tracing::Instrument as _;

use crate::error::AppError;
use crate::http::error::{PROBLEM_JSON, problem_catcher};
use crate::http::{health, me, roles, tokens, users};
use crate::metrics::ApiMetrics;
use crate::state::AppState;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The `/api/v1` routes.
fn api_router() -> Router {
    Router::with_path("api/v1")
        .hoop(no_store)
        .push(health::router())
        .push(users::router())
        .push(tokens::router())
        .push(me::router())
        .push(roles::router())
}

/// The OpenAPI 3.1 document, generated from the handlers so it cannot drift.
pub fn openapi_document() -> OpenApi {
    // Schemas are named by type name alone, not by module path.
    salvo::oapi::naming::set_namer(salvo::oapi::naming::FlexNamer::new().short_mode(true));
    let mut document = OpenApi::new("IAM API", env!("CARGO_PKG_VERSION"))
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer).bearer_format("JWT")),
        )
        .merge_router(&api_router());
    document_problem_bodies(&mut document);
    document
}

/// Every error status an endpoint lists answers with a problem document: say so in the
/// document rather than on each of the dozens of `responses(...)` lines.
fn document_problem_bodies(document: &mut OpenApi) {
    let problem = RefOr::Ref(Ref::from_schema_name("Problem"));
    for item in document.paths.values_mut() {
        for operation in item.operations.values_mut() {
            for (status, response) in operation.responses.iter_mut() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                if let RefOr::Type(response) = response
                    && is_error
                    && response.contents.is_empty()
                {
                    response
                        .contents
                        .insert(PROBLEM_JSON.to_owned(), Content::new(problem.clone()));
                }
            }
        }
    }
}

/// The whole service with its state.
pub fn service(state: AppState) -> Service {
    let state_env = state.config.common.env_label.clone();
    let metrics = Arc::clone(&state.metrics);
    let router = Router::new()
        .hoop(affix_state::inject(state))
        .push(openapi_document().into_router(OPENAPI_PATH))
        .push(
            SwaggerUi::new(OPENAPI_PATH)
                .title("IAM API")
                .into_router("/docs"),
        )
        .push(Router::with_path("metrics").get(metrics_endpoint))
        .push(api_router());
    let access_log = AccessLog {
        env: state_env.clone(),
        metrics,
    };
    // Service-level hoops also run for requests no route matches.
    Service::new(router)
        .hoop(access_log)
        .hoop(security_headers)
        .hoop(iam_core::server::RequestHeadLimit)
        .hoop(one_authorization_header)
        .catcher(Catcher::new(problem_catcher))
}

#[handler]
async fn security_headers(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    ctrl.call_next(req, depot, res).await;
    res.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A request with more than one `Authorization` header is refused with 400 on every route,
/// those that ignore credentials too: which header a proxy in front judged is unknowable.
#[handler]
async fn one_authorization_header(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let values = req.headers().get_all(AUTHORIZATION);
    if let Err(duplicate) = iam_core::bearer::bearer_token(values.iter().map(|v| v.as_bytes())) {
        AppError::from(duplicate).render(res);
        ctrl.skip_rest();
        return;
    }
    ctrl.call_next(req, depot, res).await;
}

/// `GET /metrics`: Prometheus exposition.
#[handler]
async fn metrics_endpoint(depot: &mut Depot, res: &mut Response) {
    match crate::http::app_state(depot) {
        Ok(state) => {
            res.headers_mut().insert(
                salvo::http::header::CONTENT_TYPE,
                HeaderValue::from_static(iam_core::metrics::CONTENT_TYPE),
            );
            res.body(state.metrics.render(&state.db));
        }
        Err(error) => error.render(res),
    }
}

/// API answers are per-user and often secret: no shared cache may keep them.
#[handler]
async fn no_store(req: &mut Request, depot: &mut Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
    ctrl.call_next(req, depot, res).await;
    if !res.headers().contains_key(CACHE_CONTROL) {
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// One log line per request (environment, method, path but never the query, which may
/// carry secrets, status and latency) and the request metrics by route template.
#[derive(Debug)]
struct AccessLog {
    env: String,
    metrics: Arc<ApiMetrics>,
}

#[async_trait]
impl Handler for AccessLog {
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
        telemetry::finish_server_span(&span, req.method().as_str(), req.matched_path(), status);
        self.metrics
            .http
            .observe(req.method().as_str(), req.matched_path(), status, elapsed);
        tracing::info!(
            env = %self.env,
            method = %req.method(),
            route = req.matched_path(),
            path = req.uri().path(),
            status,
            latency_ms = elapsed * 1000.0,
            trace_id = telemetry::trace_id(&span).as_deref(),
            "request"
        );
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    /// The committed `openapi.json` is the reviewed contract: an API change must show up as
    /// a diff of it. Regenerate with `UPDATE_OPENAPI=1 cargo test -p iam-api openapi`.
    #[test]
    fn openapi_document_matches_the_committed_copy() {
        let generated = openapi_document().to_pretty_json().expect("json") + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test -p iam-api openapi"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi_document().to_json().expect("json")).expect("parse");
        assert!(
            document["openapi"]
                .as_str()
                .expect("version")
                .starts_with("3.1")
        );
        for path in [
            "/api/v1/healthcheck",
            "/api/v1/users",
            "/api/v1/users/{id}",
            "/api/v1/users/{id}/role",
            "/api/v1/tokens",
            "/api/v1/tokens/revoke",
            "/api/v1/me",
            "/api/v1/roles",
            "/api/v1/roles/{name}",
        ] {
            assert!(document["paths"][path].is_object(), "{path} missing");
        }
    }
}
