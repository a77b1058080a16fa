//! The main port: the gate that decides and verifies, and the proxy to the upstream. It is
//! served by hyper directly (`iam_core::server::hyper_port`): the gate is the port's only
//! answer, so salvo's routing, depot and hoops would be per-request work for nothing.

use std::borrow::Cow;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};

use iam_core::bearer::bearer_token;
use iam_core::config::LogRequests;
use iam_core::permission::missing_permission;
use iam_core::problem::{Problem, write_hyper_refusal};
use iam_core::refusal::Refusal;
use iam_core::server::hyper_port::{self, Answer, ClientAddr};
use iam_core::server::{RequestLog, RouteLabel};

use crate::forward::{Answered, ResBody, UpstreamClient, remove_hop_by_hop};
use crate::identity::VerifiedIdentity;
use crate::metrics::{Metrics, Outcome};
use crate::rules::{Access, AccessPolicy, normalize_path};
use crate::verifier::{TokenVerifier, VerifyError};

mod decision;
mod forwarding;
mod grpc;
mod inbound_headers;

use decision::original_request;
use forwarding::{Received, add_forwarding_headers};
use inbound_headers::{is_identity_header, method_overrides};

/// Decides each request. In proxy mode: removes the client's hop-by-hop headers, then
/// spoofable identity headers, normalises the path, takes the one Bearer token, checks it and
/// the permissions of every rule that applies under each method the request may run as, adds
/// the identity and forwarding headers, and forwards the request. In decision mode: the same
/// judgement of the request the asking proxy describes, answered instead of forwarded.
#[derive(Debug)]
pub struct Gate {
    pub policy: AccessPolicy,
    pub verifier: Arc<TokenVerifier>,
    pub metrics: Arc<Metrics>,
    pub mode: Mode,
}

/// What the gate does with a request it lets through (`SIDECAR_MODE`).
#[derive(Debug)]
pub enum Mode {
    /// Forwards it to the upstream with the identity headers.
    Proxy(Box<UpstreamClient>),
    /// Answers 200 with the identity headers, for another proxy that asked (contract §6).
    Decision,
}

/// Removes every inbound identity header: only the sidecar may set them. Names are judged
/// as the upstream may read them (see [`is_identity_header`]): `X_User_Role`, `X.User.Role`
/// and `x-USER-role` go as `X-User-Role` does.
pub(crate) fn strip_identity_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// How many headers the gate may add to a request it forwards: five identity headers,
/// three `X-Forwarded-*` and the two of the trace context.
const IDENTITY_AND_FORWARDING_HEADERS: usize = 10;

/// The answers on the main port.
type Res = Response<ResBody>;

/// The label of every request on the main port: every path belongs to the upstream, and
/// one label keeps the series bounded.
const ROUTE: &str = "/*";

impl Gate {
    fn deny(&self, res: &mut Res, outcome: Outcome, status: StatusCode, detail: &str) {
        self.metrics.outcome(outcome);
        Problem::about_blank(status, detail).write_to_hyper(res);
    }

    /// 401 or 403 for a request whose token does not let it through, answered as the api
    /// answers (`iam_core::refusal`).
    fn refuse(&self, res: &mut Res, outcome: Outcome, refusal: &Refusal<'_>) {
        self.metrics.outcome(outcome);
        write_hyper_refusal(res, refusal);
    }

    /// 401 for a token that failed verification, counted under `reason`.
    fn deny_invalid_token(&self, res: &mut Res, reason: iam_core::Reason) {
        self.metrics.rejection(reason);
        self.refuse(res, Outcome::Unauthenticated, &Refusal::InvalidToken);
    }
}

/// The gate is the main port's only answer; the port's [`RequestLog`] (see
/// [`request_log`]) logs and counts each request around it. In proxy mode the sidecar's
/// refusal of a gRPC request is sent as gRPC status (HTTP 200), yet logged and counted under
/// the refusal's HTTP status (`hyper_port::LoggedStatus`); in decision mode never, because
/// the asking proxy reads any 200 as "allow".
impl Answer for Gate {
    type Body = ResBody;
    /// WebSockets and other upgrades pass through to the upstream.
    const UPGRADES: bool = true;
    /// The upstream's headers pass as they are.
    const NOSNIFF: bool = false;

    async fn answer(&self, request: Request<Incoming>) -> hyper_port::Answered<ResBody> {
        let mut res = Response::new(ResBody::empty());
        match &self.mode {
            Mode::Proxy(upstream) => {
                let grpc = grpc::is_grpc(request.headers());
                let answered = self.decide_and_forward(upstream, request, &mut res).await;
                grpc::refusals_as_grpc(grpc, answered, &mut res);
            }
            Mode::Decision => self.answer_question(&request, &mut res).await,
        }
        hyper_port::Answered {
            response: res,
            route: ROUTE,
        }
    }

    /// The port's own refusal (431) of a gRPC call goes as gRPC status too.
    fn refused(&self, request: &Request<Incoming>, mut response: Res) -> Res {
        if matches!(self.mode, Mode::Proxy(_)) {
            let grpc = grpc::is_grpc(request.headers());
            grpc::refusals_as_grpc(grpc, Answered::BySidecar, &mut response);
        }
        response
    }
}

impl Gate {
    /// 400 for a request that cannot be judged safely, counted as `outcome`.
    fn deny_bad_request(&self, res: &mut Res, outcome: Outcome, detail: &str) {
        self.deny(res, outcome, StatusCode::BAD_REQUEST, detail);
    }

    /// Judges the request and forwards it when allowed; says who wrote the answer.
    async fn decide_and_forward(
        &self,
        upstream: &UpstreamClient,
        req: Request<Incoming>,
        res: &mut Res,
    ) -> Answered {
        // In parts, so that the path can be judged (borrowing the URI) while headers change.
        let (mut parts, body) = req.into_parts();
        // First take what belongs to the client's hop only, so that nothing the gate judges
        // or adds afterwards can be removed by the client's `Connection` header.
        let received = Received::take(&parts.headers, &parts.uri);
        let end_to_end = remove_hop_by_hop(&mut parts.headers);
        strip_identity_headers(&mut parts.headers);
        let Some(path) = self.normalized_or_refused(parts.uri.path(), res) else {
            return Answered::BySidecar;
        };
        let Some(allowed) = self
            .judge(parts.method.as_str(), &path, &parts.headers, res)
            .await
        else {
            return Answered::BySidecar;
        };
        // Room for the identity and forwarding headers at once: the map hyper parsed holds
        // the client's few and would otherwise grow (rehashing) as they are added.
        parts.headers.reserve(IDENTITY_AND_FORWARDING_HEADERS);
        allowed.add_identity_headers(&mut parts.headers);
        let client_ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|client| client.0.ip().to_string());
        add_forwarding_headers(&mut parts.headers, client_ip, received);
        // The upstream receives the normalised path the decision was made on. It was
        // re-encoded by normalisation and the query came in a valid URI, so this refusal is
        // a safety net, written before anything is counted as forwarded.
        let Some(upstream_uri) = upstream.uri_for(&path, parts.uri.query()) else {
            self.deny_bad_request(
                res,
                Outcome::BadRequest,
                "the request target is not acceptable",
            );
            return Answered::BySidecar;
        };
        self.metrics.outcome(if allowed.public {
            Outcome::ForwardedPublic
        } else {
            Outcome::Forwarded
        });
        upstream
            .forward(parts, body, end_to_end, upstream_uri, res)
            .await
    }

    /// Decision mode: answers whether the request another proxy describes may pass (200
    /// with the identity headers, or the refusal proxy mode would give). The question's
    /// headers are the proxy's: its `Connection` header is not read (a client's could
    /// otherwise name `X-Original-URI` away), and nothing is forwarded.
    async fn answer_question(&self, req: &Request<Incoming>, res: &mut Res) {
        let original =
            match original_request(req.headers(), req.method().as_str(), req.uri().path()) {
                Ok(original) => original,
                Err(unclear) => {
                    self.deny_bad_request(res, Outcome::BadRequest, &unclear.to_string());
                    return;
                }
            };
        let Some(path) = self.normalized_or_refused(original.path, res) else {
            return;
        };
        let Some(allowed) = self.judge(original.method, &path, req.headers(), res).await else {
            return;
        };
        self.metrics.outcome(if allowed.public {
            Outcome::AllowedPublic
        } else {
            Outcome::Allowed
        });
        *res.status_mut() = StatusCode::OK;
        allowed.add_identity_headers(res.headers_mut());
    }

    /// The normalised path, or `None` after answering 400.
    fn normalized_or_refused<'a>(&self, raw: &'a str, res: &mut Res) -> Option<Cow<'a, str>> {
        match normalize_path(raw) {
            Ok(path) => Some(path),
            Err(error) => {
                self.deny_bad_request(
                    res,
                    Outcome::BadPath,
                    &format!("the request path is not acceptable: {error}"),
                );
                None
            }
        }
    }

    /// The one judgement both modes make of a request run as `method` on `path` with
    /// `headers`: the one Bearer token, the rules under every method the request may run as
    /// (method overrides included), the token and the permissions. `None` once a refusal
    /// has been written to `res`.
    async fn judge(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        res: &mut Res,
    ) -> Option<Allowed> {
        let token = match bearer_token(
            headers
                .get_all(AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
        ) {
            Ok(token) => token,
            Err(duplicate) => {
                self.deny_bad_request(res, Outcome::BadRequest, &duplicate.to_string());
                return None;
            }
        };
        let access = match method_overrides(headers) {
            Ok(overrides) => self.policy.decide(method, &overrides, path),
            Err(invalid) => {
                self.deny_bad_request(res, Outcome::BadRequest, &invalid.to_string());
                return None;
            }
        };
        let required_permissions = match access {
            Access::Public => {
                return Some(Allowed {
                    public: true,
                    identity: None,
                });
            }
            Access::Authenticated {
                required_permissions,
            } => required_permissions,
        };
        let Some(token) = token else {
            self.refuse(res, Outcome::Unauthenticated, &Refusal::MissingToken);
            return None;
        };
        let verified = match self.verifier.verify(token).await {
            Ok(verified) => verified,
            Err(VerifyError::NotReady) => {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                self.deny(
                    res,
                    Outcome::NotReady,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the signing keys or the revocation feed have not been loaded yet",
                );
                return None;
            }
            Err(VerifyError::Rejected(reason)) => {
                tracing::debug!(reason = reason.as_str(), "access token refused");
                self.deny_invalid_token(res, reason);
                return None;
            }
        };
        let permissions = &verified.claims.permissions;
        if let Some(missing) = missing_permission(&required_permissions, permissions) {
            let refusal = Refusal::InsufficientScope {
                permission: missing,
            };
            self.refuse(res, Outcome::Forbidden, &refusal);
            return None;
        }
        Some(Allowed {
            public: false,
            identity: Some(verified),
        })
    }
}

/// A request the gate lets through, with the identity it was let through as (none when
/// public).
#[derive(Debug)]
struct Allowed {
    public: bool,
    identity: Option<Arc<VerifiedIdentity>>,
}

impl Allowed {
    /// Adds the identity headers to `headers`, replacing any of the same name.
    fn add_identity_headers(&self, headers: &mut HeaderMap) {
        let Some(verified) = &self.identity else {
            return;
        };
        for (name, value) in &verified.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The main port's request log: requests are logged with their path (it may identify the
/// upstream's resources; it is logged as any proxy does) under one route label, which keeps
/// the series bounded.
pub fn request_log(metrics: &Metrics, log_requests: LogRequests) -> RequestLog {
    RequestLog::new(metrics.http.clone(), RouteLabel::Fixed(ROUTE))
        .with_path()
        .logging(log_requests)
}

#[cfg(test)]
mod tests;

/// What the gate's unit tests share.
#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod test_support {
    use hyper::HeaderMap;
    use hyper::header::{HeaderName, HeaderValue};

    /// A header map of `(name, value)` pairs in order, repeats kept.
    pub fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        headers
    }
}
