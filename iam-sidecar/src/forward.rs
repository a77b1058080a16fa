//! Forwarding an authorised request to the upstream and its answer back.
//!
//! The request is handed on by moving its parts (headers, body) into the upstream request,
//! not copying them: on the hot path the sidecar points the URI at the upstream and keeps
//! the client's `Host`. Hop-by-hop headers are removed from the client's request by
//! [`remove_hop_by_hop`] when the request arrives, before the gate judges it or adds its own
//! headers, so a client's `Connection` header can only ever remove the client's own headers.
//!
//! Trailers pass through both ways (gRPC sends its status in them): `Trailer` is not a
//! hop-by-hop field (RFC 9110 §6.6.2), so it is forwarded and HTTP/1.1 peers may send the
//! fields it declares; `TE: trailers` is passed on when the client sent it. Request trailers
//! lose the fields only the sidecar may set ([`FilteredTrailers`]). The client's body may
//! pause at most `BODY_GAP_TIMEOUT` between pieces ([`GapLimited`]); a longer pause aborts
//! the upstream request and is answered 408 (if the upstream has not answered yet).

mod body;
mod trailers;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, TE, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::Instrument as _;

use iam_core::problem::Problem;
use iam_core::server::BODY_GAP_TIMEOUT;
use iam_core::server::hyper_port::{BodyGapElapsed, GapLimited};
use iam_core::telemetry;

use crate::metrics::{Metrics, UpstreamFailure};

pub use body::ResBody;
pub use trailers::FilteredTrailers;

/// The body forwarded to the upstream: the client's, paced and with its trailers filtered.
type UpstreamBody = FilteredTrailers<GapLimited<Incoming>>;

/// Why a forwarded request got no answer from the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFailure {
    /// The upstream could not be reached or did not answer in time.
    Upstream(UpstreamFailure),
    /// The client paused its body for longer than `BODY_GAP_TIMEOUT`: its fault, not the
    /// upstream's, so not counted as an upstream failure.
    ClientBodyStalled,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    TE,
    HeaderName::from_static("transfer-encoding"),
];

/// Whether a client's `TE` header accepts trailers (the one `TE` value HTTP/2 allows, and
/// what gRPC clients send).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let coding = coding.split(';').next().unwrap_or("").trim();
            coding.eq_ignore_ascii_case("trailers")
        })
}

/// The protocol a message asks to switch to (`Connection: upgrade` plus `Upgrade: …`).
pub fn upgrade_type(headers: &HeaderMap) -> Option<HeaderValue> {
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

/// Whether `name` goes from every message, whatever its `Connection` header names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == UPGRADE || HOP_BY_HOP.contains(name)
}

/// Removes the hop-by-hop headers, including those `Connection` names, then restores
/// `Connection: upgrade` and `Upgrade` when the message is an upgrade of `upgrade`.
fn keep_end_to_end_headers(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // Most requests carry none: one pass over their few names costs less than the eight
    // look-ups. Without `Connection` nothing else is named for removal.
    if headers.keys().any(is_hop_by_hop) {
        // Read before `Connection` goes; names are removed as `&str` (any case, invalid
        // ones match nothing), without building a `HeaderName` for each.
        let connection: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
        for name in HOP_BY_HOP.iter().chain([&UPGRADE]) {
            headers.remove(name);
        }
        for value in connection.iter().filter_map(|value| value.to_str().ok()) {
            for name in value.split(',') {
                headers.remove(name.trim());
            }
        }
    }
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
}

/// A client's request after [`remove_hop_by_hop`]: proof for [`UpstreamClient::forward`]
/// that the removal ran before anything was added, the upgrade it asked for, and whether it
/// accepts trailers.
#[derive(Debug)]
pub struct EndToEndRequest {
    upgrade: Option<HeaderValue>,
    accepts_trailers: bool,
}

/// Removes the hop-by-hop headers of a client's request, including those its `Connection`
/// names, keeping `Connection: upgrade` and `Upgrade` when it asks for an upgrade. Call it
/// first, before the request is judged or any header is added to it.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> EndToEndRequest {
    let upgrade = upgrade_type(headers);
    let accepts_trailers = accepts_trailers(headers);
    keep_end_to_end_headers(headers, upgrade.clone());
    EndToEndRequest {
        upgrade,
        accepts_trailers,
    }
}

/// Who wrote the answer to a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The upstream: its status, headers and body pass to the client as they are.
    ByUpstream,
    /// The sidecar, because the upstream could not be asked or did not answer (400, 502, 504).
    BySidecar,
}

/// Joins several `Cookie` fields into one with `"; "`: HTTP/2 clients may split cookies into
/// fields of their own, which an HTTP/1.1 upstream must receive as one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for cookie in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(cookie.as_bytes());
    }
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, joined);
    }
}

/// Plain-HTTP client to the upstream with pooled connections, a response timeout, and
/// problem documents for unreachable (502) and slow (504) upstreams.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    inner: HyperClient<HttpConnector, UpstreamBody>,
    /// `UPSTREAM_HTTP2`: the upstream speaks HTTP/2 cleartext (prior knowledge).
    http2: bool,
    /// `UPSTREAM_URL` without a trailing slash; the authorised path is appended to it.
    base_url: Arc<str>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl UpstreamClient {
    /// A client for `base_url` that waits at most `timeout` for the response headers and
    /// speaks HTTP/2 (prior knowledge) when `http2`, else HTTP/1.1.
    pub fn new(base_url: &str, timeout: Duration, http2: bool, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(http2)
            .build(connector);
        UpstreamClient {
            inner,
            http2,
            base_url: base_url.trim_end_matches('/').into(),
            timeout,
            metrics,
        }
    }

    /// The upstream's URI for the authorised `path` (already normalised) and the client's
    /// `query`; `None` if they do not make a URI.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Option<hyper::Uri> {
        let uri = match query {
            Some(query) => format!("{}{path}?{query}", self.base_url),
            None => format!("{}{path}", self.base_url),
        };
        hyper::Uri::try_from(uri).ok()
    }

    /// Forwards a request (its `parts`, cleared of hop-by-hop headers: see `end_to_end`,
    /// and its `body`) to the upstream at `uri` (from [`Self::uri_for`]) and writes the
    /// upstream's answer, or a 408/502/504 problem, into `res`; says which it was.
    pub async fn forward(
        &self,
        mut parts: hyper::http::request::Parts,
        body: Incoming,
        end_to_end: EndToEndRequest,
        uri: hyper::Uri,
        res: &mut Response<ResBody>,
    ) -> Answered {
        let requested_upgrade = end_to_end.upgrade;
        let mut headers = std::mem::take(&mut parts.headers);
        // The upstream gets an HTTP/2 client's host as `Host`, as it gets an HTTP/1.1 client's.
        if !headers.contains_key(HOST)
            && let Some(host) = authority_as_host(&parts.uri)
        {
            headers.insert(HOST, host);
        }
        if end_to_end.accepts_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if !self.http2 {
            join_cookies(&mut headers);
        }
        let body =
            FilteredTrailers::new(GapLimited::new(body), crate::proxy::strip_identity_headers);
        let mut request = Request::new(body);
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        // Only an HTTP/1.1 request asking for an upgrade carries one.
        let client_upgrade = parts.extensions.remove::<OnUpgrade>();

        let (response, answered) = match self.send(request, requested_upgrade, client_upgrade).await
        {
            Ok(response) => (response, Answered::ByUpstream),
            Err(SendFailure::Upstream(failure)) => {
                self.metrics.upstream_failure(failure);
                (failure_response(failure), Answered::BySidecar)
            }
            Err(SendFailure::ClientBodyStalled) => (stalled_body_response(), Answered::BySidecar),
        };
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        let accepted_upgrade = (parts.status == StatusCode::SWITCHING_PROTOCOLS)
            .then(|| upgrade_type(&headers))
            .flatten();
        keep_end_to_end_headers(&mut headers, accepted_upgrade);
        *res.status_mut() = parts.status;
        *res.headers_mut() = headers;
        *res.body_mut() = body;
        answered
    }

    async fn send(
        &self,
        mut request: Request<UpstreamBody>,
        requested_upgrade: Option<HeaderValue>,
        client_upgrade: Option<OnUpgrade>,
    ) -> Result<Response<ResBody>, SendFailure> {
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
        // Without trace export the span is disabled and there is no context to pass on.
        if !span.is_disabled() {
            let _entered = span.enter();
            telemetry::inject_current_span(request.headers_mut());
        }
        let sent = tokio::time::timeout(self.timeout, self.inner.request(request))
            .instrument(span.clone());
        let mut response = match sent.await {
            Err(_) => return Err(SendFailure::Upstream(UpstreamFailure::Timeout)),
            Ok(Err(error)) if BodyGapElapsed::caused(&error) => {
                tracing::debug!("the client's request body stalled; upstream request aborted");
                return Err(SendFailure::ClientBodyStalled);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "upstream request failed");
                return Err(SendFailure::Upstream(UpstreamFailure::Unreachable));
            }
            Ok(Ok(response)) => response,
        };
        span.record("http.response.status_code", response.status().as_u16());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let accepted = upgrade_type(response.headers());
            let same_protocol = matches!((&requested_upgrade, &accepted), (Some(asked), Some(given)) if asked.as_bytes().eq_ignore_ascii_case(given.as_bytes()));
            let Some(client_upgrade) = client_upgrade.filter(|_| same_protocol) else {
                return Err(SendFailure::Upstream(UpstreamFailure::Unreachable));
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
        Ok(response.map(ResBody::Upstream))
    }
}

/// The host an HTTP/2 client names in the URI (`:authority`) instead of a `Host` header.
pub(crate) fn authority_as_host(uri: &hyper::Uri) -> Option<HeaderValue> {
    HeaderValue::from_str(uri.authority()?.as_str()).ok()
}

/// The 408 problem a client gets whose request body stalled before the upstream answered.
fn stalled_body_response() -> Response<ResBody> {
    let detail = format!(
        "the request body paused for longer than {} s",
        BODY_GAP_TIMEOUT.as_secs()
    );
    Problem::about_blank(StatusCode::REQUEST_TIMEOUT, detail).to_hyper_response()
}

/// The 502 or 504 problem the client gets when the upstream could not answer.
fn failure_response(failure: UpstreamFailure) -> Response<ResBody> {
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
    Problem::about_blank(status, detail).to_hyper_response()
}

#[cfg(test)]
mod tests;
