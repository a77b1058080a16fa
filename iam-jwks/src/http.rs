//! The JWKS, OpenID discovery and healthcheck endpoints.

use std::sync::Arc;
use std::time::Duration;

use salvo::catcher::Catcher;
use salvo::http::StatusCode;
use salvo::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use salvo::prelude::*;
use serde_json::json;
use sqlx::PgPool;

use iam_core::server::{Drain, MetricsEndpoint, NoSniff, RequestHeadLimit, RequestLog, RouteLabel};

use crate::config::JwksConfig;
use crate::key_cache::KeyCache;
use crate::metrics::JwksMetrics;
use crate::revocation_feed::FeedCache;

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
        answer_revalidated(
            req,
            res,
            self.cache_control.clone(),
            &document.etag,
            &document.body,
        );
    }
}

/// `GET /api/v1/revocations`: the pre-serialised revocation feed, revalidated by ETag;
/// 503 until it has been built once (a verifier keeps what it had).
#[derive(Debug, Clone)]
struct RevocationsEndpoint {
    feed: FeedCache,
}

#[async_trait]
impl Handler for RevocationsEndpoint {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let Some(document) = self.feed.current() else {
            iam_core::problem::Problem::about_blank(
                StatusCode::SERVICE_UNAVAILABLE,
                "the revocation feed has not been read from the database yet",
            )
            .write_to(res);
            return;
        };
        // Verifiers poll it; nothing in between may answer for us.
        let cache_control = HeaderValue::from_static("no-cache");
        answer_revalidated(req, res, cache_control, &document.etag, &document.body);
    }
}

/// Answers with a pre-serialised JSON document under its strong `etag`: 304 when the
/// request's `If-None-Match` already names it, else the body.
fn answer_revalidated(
    req: &Request,
    res: &mut Response,
    cache_control: HeaderValue,
    etag: &str,
    body: &bytes::Bytes,
) {
    let headers = res.headers_mut();
    headers.insert(CACHE_CONTROL, cache_control);
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, value);
    }
    let not_modified = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| if_none_match_hits(value, etag));
    if not_modified {
        res.status_code(StatusCode::NOT_MODIFIED);
        return;
    }
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.body(body.clone());
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
        "grant_types_supported": ["password", "refresh_token", "client_credentials"],
        // `none` for the password and refresh grants (a public client), the client's secret
        // for the client-credentials grant.
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
    })
}

/// `GET /api/v1/healthcheck`: 200 while keys can be served; `degraded` when the database is
/// away and the last good key set is being served; 503 `draining` after the stop signal.
#[derive(Debug)]
struct Healthcheck {
    db: PgPool,
    env: String,
    drain: Drain,
}

#[async_trait]
impl Handler for Healthcheck {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let ping = sqlx::query("SELECT 1").execute(&self.db);
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Ok(_))
        );
        let database = if reachable { "ok" } else { "unreachable" };
        let status = if self.drain.is_draining() {
            res.status_code(StatusCode::SERVICE_UNAVAILABLE);
            "draining"
        } else if reachable {
            "ok"
        } else {
            "degraded"
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

/// The whole service.
pub fn service(
    config: &JwksConfig,
    cache: KeyCache,
    feed: FeedCache,
    db: PgPool,
    metrics: Arc<JwksMetrics>,
    drain: Drain,
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
        .push(Router::with_path("api/v1/revocations").get(RevocationsEndpoint { feed }))
        .push(Router::with_path("api/v1/healthcheck").get(Healthcheck {
            db,
            env: config.common.env_label.clone(),
            drain,
        }))
        .push(Router::with_path("metrics").get(MetricsEndpoint::new({
            let metrics = Arc::clone(&metrics);
            move || metrics.render()
        })));
    Ok(Service::new(router)
        .hoop(
            RequestLog::new(metrics.http.clone(), RouteLabel::Matched)
                .with_env(config.common.env_label.clone())
                .logging(config.common.log_requests),
        )
        .hoop(NoSniff)
        .hoop(RequestHeadLimit)
        .catcher(Catcher::new(iam_core::problem::catcher)))
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
