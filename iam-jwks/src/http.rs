//! The JWKS, OpenID discovery and healthcheck endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use salvo::catcher::Catcher;
use salvo::http::StatusCode;
use salvo::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use salvo::prelude::*;
use serde_json::json;
use sqlx::PgPool;

use iam_core::telemetry;
use tracing::Instrument as _;

use crate::config::JwksConfig;
use crate::key_cache::KeyCache;
use crate::metrics::JwksMetrics;

/// Where the key set is published.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `GET /.well-known/jwks.json`: the pre-serialised key set, revalidated by ETag.
#[derive(Debug, Clone)]
struct JwksEndpoint {
    cache: KeyCache,
    cache_control: HeaderValue,
}

#[async_trait]
impl Handler for JwksEndpoint {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let document = self.cache.current();
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, self.cache_control.clone());
        if let Ok(etag) = HeaderValue::from_str(&document.etag) {
            headers.insert(ETAG, etag);
        }
        let not_modified = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| if_none_match_hits(value, &document.etag));
        if not_modified {
            res.status_code(StatusCode::NOT_MODIFIED);
            return;
        }
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.body(document.body.clone());
    }
}

/// RFC 9110 §13.1.2: `*`, or any listed tag equal to ours under weak comparison.
fn if_none_match_hits(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// `GET /.well-known/openid-configuration`: discovery metadata, serialised once.
#[derive(Debug)]
struct DiscoveryEndpoint {
    body: bytes::Bytes,
    cache_control: HeaderValue,
}

#[async_trait]
impl Handler for DiscoveryEndpoint {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        res.headers_mut()
            .insert(CACHE_CONTROL, self.cache_control.clone());
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.body(self.body.clone());
    }
}

fn discovery_document(config: &JwksConfig) -> serde_json::Value {
    json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", config.jwks_public_url),
        "token_endpoint": format!("{}/api/v1/tokens", config.api_public_url),
        "revocation_endpoint": format!("{}/api/v1/tokens/revoke", config.api_public_url),
        "grant_types_supported": ["password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
    })
}

/// `GET /api/v1/healthcheck`: 200 while keys can be served; `degraded` when the database is
/// away and the last good key set is being served.
#[derive(Debug)]
struct Healthcheck {
    db: PgPool,
    env: String,
}

#[async_trait]
impl Handler for Healthcheck {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let ping = sqlx::query("SELECT 1").execute(&self.db);
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Ok(_))
        );
        let (status, database) = if reachable {
            ("ok", "ok")
        } else {
            ("degraded", "unreachable")
        };
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res.render(Json(json!({
            "status": status,
            "database": database,
            "env": self.env,
            "version": env!("CARGO_PKG_VERSION"),
        })));
    }
}

/// Errors salvo answers by itself (unknown path, wrong method) as problem documents.
#[handler]
async fn problem_catcher(res: &mut Response, ctrl: &mut FlowCtrl) {
    let status = res.status_code.unwrap_or(StatusCode::NOT_FOUND);
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": title.to_lowercase()});
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res.body(body.to_string());
    ctrl.skip_rest();
}

/// Adds `nosniff` to every answer and records the request metrics by route template.
#[derive(Debug)]
struct Observe {
    metrics: Arc<JwksMetrics>,
}

#[async_trait]
impl Handler for Observe {
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
        res.headers_mut()
            .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        let status = res.status_code.map_or(200, |status| status.as_u16());
        telemetry::finish_server_span(&span, req.method().as_str(), req.matched_path(), status);
        tracing::info!(
            method = %req.method(),
            route = req.matched_path(),
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            trace_id = telemetry::trace_id(&span).as_deref(),
            "request"
        );
        self.metrics.http.observe(
            req.method().as_str(),
            req.matched_path(),
            status,
            started.elapsed().as_secs_f64(),
        );
    }
}

/// `GET /metrics`: Prometheus exposition.
#[derive(Debug)]
struct MetricsEndpoint {
    metrics: Arc<JwksMetrics>,
}

#[async_trait]
impl Handler for MetricsEndpoint {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(iam_core::metrics::CONTENT_TYPE),
        );
        res.body(self.metrics.render());
    }
}

/// The whole service.
pub fn service(
    config: &JwksConfig,
    cache: KeyCache,
    db: PgPool,
    metrics: Arc<JwksMetrics>,
) -> Result<Service, String> {
    let cache_control =
        HeaderValue::from_str(&format!("public, max-age={}", config.max_age.as_secs()))
            .map_err(|error| error.to_string())?;
    let discovery =
        serde_json::to_vec(&discovery_document(config)).map_err(|error| error.to_string())?;
    let jwks = JwksEndpoint {
        cache,
        cache_control: cache_control.clone(),
    };
    let router = Router::new()
        .push(
            Router::with_path(".well-known/jwks.json")
                .get(jwks.clone())
                .head(jwks),
        )
        .push(
            Router::with_path(".well-known/openid-configuration").get(DiscoveryEndpoint {
                body: discovery.into(),
                cache_control,
            }),
        )
        .push(Router::with_path("api/v1/healthcheck").get(Healthcheck {
            db,
            env: config.common.env_label.clone(),
        }))
        .push(Router::with_path("metrics").get(MetricsEndpoint {
            metrics: Arc::clone(&metrics),
        }));
    Ok(Service::new(router)
        .hoop(Observe { metrics })
        .hoop(iam_core::server::RequestHeadLimit)
        .catcher(Catcher::new(problem_catcher)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_follows_weak_comparison() {
        let etag = r#""abc""#;
        assert!(if_none_match_hits(r#""abc""#, etag));
        assert!(if_none_match_hits(r#"W/"abc""#, etag));
        assert!(if_none_match_hits(r#""x", "abc""#, etag));
        assert!(if_none_match_hits("*", etag));
        assert!(!if_none_match_hits(r#""abd""#, etag));
        assert!(!if_none_match_hits("abc", etag));
    }
}
