//! The JWKS, OpenID discovery, revocation feed, healthcheck and metrics endpoints. They are
//! answered by hyper directly (`iam_core::server::hyper_port`): every answer but the
//! healthcheck is a document serialised ahead of time, so salvo's per-request work would
//! cost more than the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use iam_core::problem::Problem;
use iam_core::server::Drain;
use iam_core::server::hyper_port::{Answer, Answered, Body};
use serde_json::json;
use sqlx::PgPool;

use crate::config::JwksConfig;
use crate::document::Served;
use crate::key_cache::KeyCache;
use crate::metrics::JwksMetrics;
use crate::revocation_feed::FeedCache;

/// Where the key set is published.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The endpoints, each at its one path; every one answers GET and HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Jwks,
    Discovery,
    Revocations,
    Healthcheck,
    Metrics,
}

impl Route {
    const ALL: [Route; 5] = [
        Route::Jwks,
        Route::Discovery,
        Route::Revocations,
        Route::Healthcheck,
        Route::Metrics,
    ];

    /// The path the route answers under; it also labels the request's span, metrics and log.
    fn path(self) -> &'static str {
        match self {
            Route::Jwks => JWKS_PATH,
            Route::Discovery => "/.well-known/openid-configuration",
            Route::Revocations => "/api/v1/revocations",
            Route::Healthcheck => "/api/v1/healthcheck",
            Route::Metrics => "/metrics",
        }
    }

    /// The route whose path is exactly `path` (no trailing slash, no percent-encoding).
    fn of(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.path() == path)
    }
}

/// Everything iam-jwks answers with.
#[derive(Debug)]
pub struct JwksAnswer {
    cache: KeyCache,
    feed: FeedCache,
    /// `public, max-age=…` of the key set and the discovery document.
    cache_control: HeaderValue,
    discovery: Bytes,
    db: PgPool,
    env: String,
    drain: Drain,
    metrics: Arc<JwksMetrics>,
}

impl Answer for JwksAnswer {
    type Body = Body;

    async fn answer(&self, request: Request<Incoming>) -> Answered {
        let Some(route) = Route::of(request.uri().path()) else {
            return Answered {
                response: problem(StatusCode::NOT_FOUND),
                route: "",
            };
        };
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let mut response = problem(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Answered {
                response,
                route: route.path(),
            };
        }
        let response = match route {
            Route::Jwks => {
                let document = self.cache.current();
                revalidated(
                    request.headers(),
                    self.cache_control.clone(),
                    &document.served,
                )
            }
            Route::Discovery => json_response(
                StatusCode::OK,
                self.cache_control.clone(),
                self.discovery.clone(),
            ),
            Route::Revocations => match self.feed.current() {
                // Verifiers poll it; nothing in between may answer for us.
                Some(document) => revalidated(
                    request.headers(),
                    HeaderValue::from_static("no-cache"),
                    &document.served,
                ),
                // A verifier keeps what it had.
                None => Problem::about_blank(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the revocation feed has not been read from the database yet",
                )
                .to_hyper_response(),
            },
            Route::Healthcheck => self.healthcheck().await,
            Route::Metrics => {
                let mut response = Response::new(Body::from(self.metrics.render()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(iam_core::metrics::CONTENT_TYPE),
                );
                response
            }
        };
        Answered {
            response,
            route: route.path(),
        }
    }
}

impl JwksAnswer {
    /// `GET /api/v1/healthcheck`: 200 while keys can be served; `degraded` when the database
    /// is away and the last good key set is being served; 503 `draining` after the stop
    /// signal.
    async fn healthcheck(&self) -> Response<Body> {
        let ping = sqlx::query("SELECT 1").execute(&self.db);
        let reachable = matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Ok(_))
        );
        let database = if reachable { "ok" } else { "unreachable" };
        let (status_code, status) = if self.drain.is_draining() {
            (StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else if reachable {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::OK, "degraded")
        };
        let body = json!({
            "status": status,
            "database": database,
            "env": self.env,
            "version": env!("CARGO_PKG_VERSION"),
        });
        json_response(
            status_code,
            HeaderValue::from_static("no-store"),
            Bytes::from(body.to_string()),
        )
    }
}

/// A JSON document with its status and `Cache-Control`.
fn json_response(status: StatusCode, cache_control: HeaderValue, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, cache_control);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A pre-serialised JSON document under its strong `etag`: 304 without a body when the
/// request's `If-None-Match` already names it, else the body.
fn revalidated(
    request_headers: &HeaderMap,
    cache_control: HeaderValue,
    document: &Served,
) -> Response<Body> {
    let not_modified = request_headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| if_none_match_hits(value, document.etag.as_bytes()));
    let mut response = if not_modified {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert(CACHE_CONTROL, cache_control);
        response
    } else {
        json_response(StatusCode::OK, cache_control, document.body.clone())
    };
    response.headers_mut().insert(ETAG, document.etag.clone());
    response
}

/// The problem document of a status that needs no more words (404, 405).
fn problem(status: StatusCode) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    Problem::about_blank(status, title.to_lowercase()).to_hyper_response()
}

/// RFC 9110 §13.1.2: `*`, or any listed tag equal to ours under weak comparison.
fn if_none_match_hits(header: &str, etag: &[u8]) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate).as_bytes() == etag
    })
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

/// What the whole service answers with.
pub fn answer(
    config: &JwksConfig,
    cache: KeyCache,
    feed: FeedCache,
    db: PgPool,
    metrics: Arc<JwksMetrics>,
    drain: Drain,
) -> Result<JwksAnswer, String> {
    let cache_control =
        HeaderValue::from_str(&format!("public, max-age={}", config.max_age.as_secs()))
            .map_err(|error| error.to_string())?;
    let discovery =
        serde_json::to_vec(&discovery_document(config)).map_err(|error| error.to_string())?;
    Ok(JwksAnswer {
        cache,
        feed,
        cache_control,
        discovery: discovery.into(),
        db,
        env: config.common.env_label.clone(),
        drain,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_found_at_its_exact_path_only() {
        for route in Route::ALL {
            assert_eq!(Route::of(route.path()), Some(route));
            assert_eq!(Route::of(&format!("{}/", route.path())), None);
            assert_eq!(Route::of(&route.path().to_uppercase()), None);
        }
        assert_eq!(Route::of("/.well-known/jwks%2Ejson"), None);
        assert_eq!(Route::of("/"), None);
    }

    #[test]
    fn if_none_match_follows_weak_comparison() {
        let etag = br#""abc""#;
        assert!(if_none_match_hits(r#""abc""#, etag));
        assert!(if_none_match_hits(r#"W/"abc""#, etag));
        assert!(if_none_match_hits(r#""x", "abc""#, etag));
        assert!(if_none_match_hits("*", etag));
        assert!(!if_none_match_hits(r#""abd""#, etag));
        assert!(!if_none_match_hits("abc", etag));
    }
}
