//! The main port: the gate that decides and verifies, and the proxy to the upstream.

use std::sync::Arc;

use salvo::http::StatusCode;
use salvo::http::header::{AUTHORIZATION, HOST, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use salvo::prelude::*;

use iam_core::bearer::bearer_token;
use iam_core::config::LogRequests;
use iam_core::permission::missing_permission;
use iam_core::problem::{Problem, write_refusal};
use iam_core::refusal::Refusal;
use iam_core::server::{RequestHeadLimit, RequestLog, RouteLabel};

use crate::forward::{UpstreamClient, remove_hop_by_hop};
use crate::metrics::{Metrics, Outcome};
use crate::rules::{Access, AccessPolicy, normalize_path};
use crate::verifier::{TokenVerifier, VerifyError};

mod inbound_headers;

use inbound_headers::{is_identity_header, method_overrides};

const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
const X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
const X_USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");
const X_USER_PERMISSIONS: HeaderName = HeaderName::from_static("x-user-permissions");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The W3C trace context the sidecar passes on (and continues, when tracing is on).
const TRACE_CONTEXT: [HeaderName; 2] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// Decides each request: removes the client's hop-by-hop headers, then spoofable identity
/// headers, normalises the path, takes the one Bearer token, checks it and the permissions of
/// every rule that applies under each method the request may run as, adds the identity and
/// forwarding headers, and forwards the request.
#[derive(Debug)]
pub struct Gate {
    pub policy: AccessPolicy,
    pub verifier: Arc<TokenVerifier>,
    pub metrics: Arc<Metrics>,
    pub upstream: UpstreamClient,
}

/// Removes every inbound identity header: only the sidecar may set them. Names are judged
/// as the upstream may read them (see [`is_identity_header`]): `X_User_Role`, `X.User.Role`
/// and `x-USER-role` go as `X-User-Role` does.
fn strip_identity_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// What the sidecar passes on about the request as the client sent it, taken before the
/// hop-by-hop headers go, so that a client's `Connection` header cannot remove it.
#[derive(Debug)]
struct Received {
    host: Option<HeaderValue>,
    trace_context: Vec<(HeaderName, HeaderValue)>,
}

impl Received {
    fn take(headers: &HeaderMap) -> Received {
        Received {
            host: headers.get(HOST).cloned(),
            trace_context: TRACE_CONTEXT
                .iter()
                .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
                .collect(),
        }
    }
}

/// Appends the client to `X-Forwarded-For`, fills `X-Forwarded-Proto`/`-Host` if absent and
/// passes the trace context on. Runs after the hop-by-hop headers were removed.
fn add_forwarding_headers(headers: &mut HeaderMap, client_ip: Option<String>, received: Received) {
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
    if let Some(host) = received.host
        && !headers.contains_key(&X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    // When tracing is on, the upstream call replaces these with the sidecar's own span.
    for (name, value) in received.trace_context {
        headers.insert(name, value);
    }
}

impl Gate {
    fn deny(&self, res: &mut Response, outcome: Outcome, status: StatusCode, detail: &str) {
        self.metrics.outcome(outcome);
        Problem::about_blank(status, detail).write_to(res);
    }

    /// 401 or 403 for a request whose token does not let it through, answered as the api
    /// answers (`iam_core::refusal`).
    fn refuse(&self, res: &mut Response, outcome: Outcome, refusal: &Refusal<'_>) {
        self.metrics.outcome(outcome);
        write_refusal(res, refusal);
    }

    /// 401 for a token that failed verification, counted under `reason`.
    fn deny_invalid_token(&self, res: &mut Response, reason: iam_core::Reason) {
        self.metrics.rejection(reason);
        self.refuse(res, Outcome::Unauthenticated, &Refusal::InvalidToken);
    }
}

/// The gate is the main port's only handler; the request log around it is
/// [`service`]'s [`RequestLog`].
#[async_trait]
impl Handler for Gate {
    async fn handle(
        &self,
        req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        self.decide_and_forward(req, res).await;
    }
}

impl Gate {
    /// 400 for a request that cannot be judged safely, counted as `outcome`.
    fn deny_bad_request(&self, res: &mut Response, outcome: Outcome, detail: &str) {
        self.deny(res, outcome, StatusCode::BAD_REQUEST, detail);
    }

    async fn decide_and_forward(&self, req: &mut Request, res: &mut Response) {
        // First take what belongs to the client's hop only, so that nothing the gate judges
        // or adds afterwards can be removed by the client's `Connection` header.
        let received = Received::take(req.headers());
        let end_to_end = remove_hop_by_hop(req.headers_mut());
        strip_identity_headers(req.headers_mut());
        let path = match normalize_path(req.uri().path()) {
            Ok(path) => path,
            Err(error) => {
                self.deny_bad_request(
                    res,
                    Outcome::BadPath,
                    &format!("the request path is not acceptable: {error}"),
                );
                return;
            }
        };
        let token = match bearer_token(
            req.headers()
                .get_all(AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
        ) {
            Ok(token) => token,
            Err(duplicate) => {
                self.deny_bad_request(res, Outcome::BadRequest, &duplicate.to_string());
                return;
            }
        };
        let access = match method_overrides(req.headers()) {
            Ok(overrides) => self.policy.decide(req.method().as_str(), &overrides, &path),
            Err(invalid) => {
                self.deny_bad_request(res, Outcome::BadRequest, &invalid.to_string());
                return;
            }
        };
        let outcome = match access {
            Access::Public => Outcome::ForwardedPublic,
            Access::Authenticated {
                required_permissions,
            } => {
                let Some(token) = token else {
                    self.refuse(res, Outcome::Unauthenticated, &Refusal::MissingToken);
                    return;
                };
                let claims = match self.verifier.verify(token).await {
                    Ok(claims) => claims,
                    Err(VerifyError::NotReady) => {
                        res.headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                        self.deny(
                            res,
                            Outcome::NotReady,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the signing keys or the revocation feed have not been loaded yet",
                        );
                        return;
                    }
                    Err(VerifyError::Rejected(reason)) => {
                        tracing::debug!(reason = reason.as_str(), "access token refused");
                        self.deny_invalid_token(res, reason);
                        return;
                    }
                };
                if let Some(missing) =
                    missing_permission(&required_permissions, &claims.permissions)
                {
                    let refusal = Refusal::InsufficientScope {
                        permission: missing,
                    };
                    self.refuse(res, Outcome::Forbidden, &refusal);
                    return;
                }
                let identity = [
                    (X_USER_ID, Some(claims.sub.clone())),
                    (X_USER_EMAIL, claims.email.clone()),
                    (X_CLIENT_ID, claims.client_id.clone()),
                    (X_USER_ROLE, Some(claims.role.clone())),
                    (X_USER_PERMISSIONS, Some(claims.permissions.join(","))),
                ];
                // A claim the token does not have is no header at all (never an empty one).
                let present = identity
                    .into_iter()
                    .filter_map(|(name, value)| value.map(|value| (name, value)));
                for (name, value) in present {
                    match HeaderValue::from_str(&value) {
                        Ok(value) => {
                            req.headers_mut().insert(name, value);
                        }
                        Err(_) => {
                            self.deny_invalid_token(res, iam_core::Reason::InvalidClaims);
                            return;
                        }
                    }
                }
                Outcome::Forwarded
            }
        };
        self.metrics.outcome(outcome);
        let client_ip = req.remote_addr().ip().map(|ip| ip.to_string());
        add_forwarding_headers(req.headers_mut(), client_ip, received);
        // The upstream receives the normalised path the decision was made on.
        self.upstream.forward(req, end_to_end, &path, res).await;
    }
}

/// The main-port service: every path goes through the gate to the upstream. Requests are
/// logged with their path (it may identify the upstream's resources; it is logged as any
/// proxy does) under one route label, which keeps the series bounded.
pub fn service(gate: Gate, log_requests: LogRequests) -> Service {
    let request_log = RequestLog::new(gate.metrics.http.clone(), RouteLabel::Fixed("/*"))
        .with_path()
        .logging(log_requests);
    Service::new(Router::with_path("{**rest}").goal(gate))
        .hoop(RequestHeadLimit)
        .hoop(request_log)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

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
    fn identity_headers_are_removed_in_every_spelling_and_every_copy() {
        let mut headers = header_map(&[
            ("X_User_Role", "admin"),
            ("X.User.Role", "admin"),
            ("x-USER-role", "admin"),
            ("x-user-role", "admin"),
            ("x-user-role", "second copy"),
            ("X-User-Anything", "x"),
            ("X-User-", "x"),
            ("X-Client-Id", "c"),
            ("x_client_id", "c"),
            ("x-users", "keep"),
            ("x-client-ids", "keep"),
            ("accept", "keep"),
        ]);
        strip_identity_headers(&mut headers);
        assert_eq!(names(&headers), ["accept", "x-client-ids", "x-users"]);
    }

    #[test]
    fn what_the_client_sent_is_taken_before_the_hop_by_hop_headers_go() {
        let mut headers = header_map(&[
            (
                "connection",
                "host, traceparent, tracestate, x-forwarded-for",
            ),
            ("host", "orders.example.com"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        let received = Received::take(&headers);
        let _ = remove_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
        add_forwarding_headers(&mut headers, Some("127.0.0.1".into()), received);
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "orders.example.com");
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["tracestate"], "vendor=1");
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn forwarding_headers_extend_what_the_client_sent_end_to_end() {
        let mut headers = header_map(&[
            ("host", "orders.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example.com"),
        ]);
        let received = Received::take(&headers);
        add_forwarding_headers(&mut headers, Some("10.0.0.1".into()), received);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "shop.example.com");
        assert!(!headers.contains_key("traceparent"));
    }

    #[test]
    fn without_a_client_address_or_host_nothing_is_made_up() {
        let mut headers = HeaderMap::new();
        let received = Received::take(&headers);
        add_forwarding_headers(&mut headers, None, received);
        assert_eq!(names(&headers), ["x-forwarded-proto"]);
    }
}
