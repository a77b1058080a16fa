//! The main port: the gate that decides and verifies, and the proxy to the upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use salvo::http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
    UPGRADE, WWW_AUTHENTICATE,
};
use salvo::http::{ReqBody, ResBody, StatusCode};
use salvo::prelude::*;
use salvo_proxy::{Client, Proxy};
use serde_json::json;

use iam_core::telemetry;
use tracing::Instrument as _;

use crate::metrics::{Metrics, Outcome, UpstreamFailure};
use crate::rules::{Access, AccessPolicy, missing_permission, normalize_path};
use crate::verifier::{TokenVerifier, VerifyError};

/// Depot key of the normalised path the gate authorised; it is what the upstream receives.
const AUTHORISED_PATH: &str = "iam_sidecar.authorised_path";

const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
const X_USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");
const X_USER_PERMISSIONS: HeaderName = HeaderName::from_static("x-user-permissions");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A problem document as the sidecar writes it.
fn problem_body(status: StatusCode, detail: &str) -> Bytes {
    let title = status.canonical_reason().unwrap_or("Error");
    Bytes::from(
        json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
}

fn write_problem(res: &mut Response, status: StatusCode, detail: &str) {
    res.status_code(status);
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res.body(problem_body(status, detail));
}

/// Decides each request: strips spoofable identity headers, normalises the path, checks the
/// token and the rule's permissions, and adds the identity headers for the upstream.
#[derive(Debug)]
pub struct Gate {
    pub policy: AccessPolicy,
    pub verifier: Arc<TokenVerifier>,
    pub metrics: Arc<Metrics>,
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Removes every inbound `x-user-*` header: only the sidecar may set them.
fn strip_identity_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-user-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Appends the client to `X-Forwarded-For` and fills `X-Forwarded-Proto`/`-Host` if absent.
fn add_forwarding_headers(req: &mut Request) {
    let client_ip = req.remote_addr().ip().map(|ip| ip.to_string());
    let host = req.headers().get(HOST).cloned();
    let headers = req.headers_mut();
    if let Some(ip) = client_ip {
        let chain = match headers
            .get(&X_FORWARDED_FOR)
            .and_then(|value| value.to_str().ok())
        {
            Some(existing) => format!("{existing}, {ip}"),
            None => ip,
        };
        if let Ok(chain) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR, chain);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host
        && !headers.contains_key(&X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

impl Gate {
    fn deny(
        &self,
        res: &mut Response,
        outcome: Outcome,
        status: StatusCode,
        challenge: Option<&'static str>,
        detail: &str,
    ) {
        self.metrics.outcome(outcome);
        if let Some(challenge) = challenge {
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        write_problem(res, status, detail);
    }
}

#[async_trait]
impl Handler for Gate {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let started = std::time::Instant::now();
        let span = telemetry::server_span(req.method().as_str(), req.uri().path(), req.headers());
        self.decide_and_forward(req, depot, res, ctrl)
            .instrument(span.clone())
            .await;
        let status = res.status_code.map_or(200, |status| status.as_u16());
        telemetry::finish_server_span(&span, req.method().as_str(), "", status);
        // Every path belongs to the upstream; one route label keeps the series bounded.
        self.metrics.http.observe(
            req.method().as_str(),
            "/*",
            status,
            started.elapsed().as_secs_f64(),
        );
        // The path may identify resources of the upstream; it is logged like any proxy does.
        tracing::info!(
            method = %req.method(),
            path = req.uri().path(),
            status,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            trace_id = telemetry::trace_id(&span).as_deref(),
            "request"
        );
    }
}

impl Gate {
    async fn decide_and_forward(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        strip_identity_headers(req.headers_mut());
        let path = match normalize_path(req.uri().path()) {
            Ok(path) => path,
            Err(error) => {
                self.deny(
                    res,
                    Outcome::BadPath,
                    StatusCode::BAD_REQUEST,
                    None,
                    &format!("the request path is not acceptable: {error}"),
                );
                ctrl.skip_rest();
                return;
            }
        };
        let outcome = match self.policy.decide(req.method().as_str(), &path) {
            Access::Public => Outcome::ForwardedPublic,
            Access::Authenticated {
                required_permissions,
            } => {
                let Some(token) = bearer_token(req.headers()) else {
                    self.deny(
                        res,
                        Outcome::Unauthenticated,
                        StatusCode::UNAUTHORIZED,
                        Some("Bearer"),
                        "a Bearer access token is required",
                    );
                    ctrl.skip_rest();
                    return;
                };
                let claims = match self.verifier.verify(token).await {
                    Ok(claims) => claims,
                    Err(VerifyError::KeysUnavailable) => {
                        res.headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                        self.deny(
                            res,
                            Outcome::KeysUnavailable,
                            StatusCode::SERVICE_UNAVAILABLE,
                            None,
                            "the signing keys have not been loaded yet",
                        );
                        ctrl.skip_rest();
                        return;
                    }
                    Err(VerifyError::Rejected(reason)) => {
                        self.metrics.rejection(reason);
                        tracing::debug!(reason = reason.as_str(), "access token refused");
                        self.deny(
                            res,
                            Outcome::Unauthenticated,
                            StatusCode::UNAUTHORIZED,
                            Some(r#"Bearer error="invalid_token""#),
                            "the access token is invalid or expired",
                        );
                        ctrl.skip_rest();
                        return;
                    }
                };
                if let Some(missing) = missing_permission(required_permissions, &claims.permissions)
                {
                    self.deny(
                        res,
                        Outcome::Forbidden,
                        StatusCode::FORBIDDEN,
                        Some(r#"Bearer error="insufficient_scope""#),
                        &format!("the permission {missing} is required"),
                    );
                    ctrl.skip_rest();
                    return;
                }
                let identity = [
                    (X_USER_ID, claims.sub.clone()),
                    (X_USER_EMAIL, claims.email.clone()),
                    (X_USER_ROLE, claims.role.clone()),
                    (X_USER_PERMISSIONS, claims.permissions.join(",")),
                ];
                for (name, value) in identity {
                    match HeaderValue::from_str(&value) {
                        Ok(value) => {
                            req.headers_mut().insert(name, value);
                        }
                        Err(_) => {
                            self.metrics.rejection(iam_core::Reason::InvalidClaims);
                            self.deny(
                                res,
                                Outcome::Unauthenticated,
                                StatusCode::UNAUTHORIZED,
                                Some(r#"Bearer error="invalid_token""#),
                                "the access token is invalid or expired",
                            );
                            ctrl.skip_rest();
                            return;
                        }
                    }
                }
                Outcome::Forwarded
            }
        };
        self.metrics.outcome(outcome);
        add_forwarding_headers(req);
        depot.insert(AUTHORISED_PATH, path);
        ctrl.call_next(req, depot, res).await;
    }
}

/// Plain-HTTP client to the upstream with pooled connections, a response timeout, and
/// problem documents for unreachable (502) and slow (504) upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    inner: HyperClient<HttpConnector, ReqBody>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl UpstreamClient {
    /// A client that waits at most `timeout` for the upstream's response headers.
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        UpstreamClient {
            inner,
            timeout,
            metrics,
        }
    }

    fn failure(&self, failure: UpstreamFailure) -> hyper::Response<ResBody> {
        self.metrics.upstream_failure(failure);
        let (status, detail) = match failure {
            UpstreamFailure::Unreachable => (
                StatusCode::BAD_GATEWAY,
                "the upstream service is unreachable",
            ),
            UpstreamFailure::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream service did not answer in time",
            ),
        };
        let mut response = hyper::Response::new(ResBody::Once(problem_body(status, detail)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

fn upgrade_type(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| headers.get(UPGRADE).cloned())
        .flatten()
}

impl Client for UpstreamClient {
    type Error = salvo::Error;

    async fn execute(
        &self,
        mut request: hyper::Request<ReqBody>,
        client_upgrade: Option<OnUpgrade>,
    ) -> Result<hyper::Response<ResBody>, Self::Error> {
        let requested_upgrade = upgrade_type(request.headers());
        // A CLIENT span for the upstream call; the upstream continues the trace from it.
        let span = tracing::info_span!(
            "HTTP upstream",
            otel.name = request.method().as_str(),
            otel.kind = "client",
            http.request.method = request.method().as_str(),
            // The path only: a query string may carry secrets.
            url.path = request.uri().path(),
            server.address = request.uri().host().unwrap_or(""),
            http.response.status_code = tracing::field::Empty,
        );
        {
            let _entered = span.enter();
            telemetry::inject_current_span(request.headers_mut());
        }
        let sent = tokio::time::timeout(self.timeout, self.inner.request(request))
            .instrument(span.clone());
        let mut response = match sent.await {
            Err(_) => return Ok(self.failure(UpstreamFailure::Timeout)),
            Ok(Err(error)) => {
                tracing::warn!(%error, "upstream request failed");
                return Ok(self.failure(UpstreamFailure::Unreachable));
            }
            Ok(Ok(response)) => response,
        };
        span.record("http.response.status_code", response.status().as_u16());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let accepted = upgrade_type(response.headers());
            let same_protocol = matches!((&requested_upgrade, &accepted), (Some(asked), Some(given)) if asked.as_bytes().eq_ignore_ascii_case(given.as_bytes()));
            let Some(client_upgrade) = client_upgrade.filter(|_| same_protocol) else {
                return Ok(self.failure(UpstreamFailure::Unreachable));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            // Splice the two upgraded connections (e.g. a WebSocket) once both are ready.
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        if let Err(error) =
                            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                        {
                            tracing::debug!(%error, "upgraded connection closed");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "connection upgrade failed"),
                }
            });
        }
        Ok(response.map(ResBody::Hyper))
    }
}

/// The main-port service: every path goes through the gate to the upstream.
pub fn service(gate: Gate, upstream_url: String, client: UpstreamClient) -> Service {
    let proxy = Proxy::new(upstream_url, client)
        .url_path_getter(|_, depot| depot.get::<String>(AUTHORISED_PATH).ok().cloned())
        .host_header_getter(salvo_proxy::preserve_original_host_header_getter);
    let router = Router::new()
        .hoop(gate)
        .push(Router::with_path("{**rest}").goal(proxy));
    Service::new(router)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_from_the_client_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", HeaderValue::from_static("admin"));
        headers.insert("X-User-Role", HeaderValue::from_static("admin"));
        headers.insert("x-request-id", HeaderValue::from_static("keep"));
        strip_identity_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-request-id"));
    }

    #[test]
    fn only_connection_upgrade_requests_are_upgrades() {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_type(&headers), None);
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(
            upgrade_type(&headers),
            Some(HeaderValue::from_static("websocket"))
        );
    }
}
