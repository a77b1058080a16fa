//! The HTTP server skeleton the three binaries share: binding a listener with the connection
//! timeouts, the request-head limit and `nosniff` hoops, serving until a shutdown signal
//! ([`Serve`]), the request log layer ([`RequestLog`]) and `GET /metrics`
//! ([`MetricsEndpoint`]).
//!
//! A client must not be able to hold a connection (and its memory) by sending slowly:
//! - the request head must arrive within [`HEADER_READ_TIMEOUT`] (Slowloris); hyper starts
//!   that clock when it waits for the next request too, so idle keep-alive connections close;
//! - a request body may pause at most [`BODY_GAP_TIMEOUT`] between two pieces;
//! - a connection with no traffic at all is closed after the idle timeout the binary asks
//!   for (iam-api and iam-jwks; the sidecar leaves it off for long polls and streams);
//! - the request line and headers together may be at most [`MAX_REQUEST_HEAD_BYTES`]; larger
//!   ones get 431. hyper's read buffer bounds the memory, and [`RequestHeadLimit`] makes the
//!   limit exact (hyper's buffer may overshoot by one read).
//!
//! Every port speaks HTTP/1.1 and HTTP/2 cleartext with prior knowledge (contract §6; salvo
//! tells them apart by the connection preface, read within the head timeout). An HTTP/2
//! connection gets the same head limit (as its header list size, which HPACK counts a little
//! more strictly), at most [`HTTP2_MAX_STREAMS`] streams at once, and, on a port without an
//! idle timeout, pings every [`HTTP2_PING_INTERVAL`] so that a peer that vanished is noticed
//! and its streams freed (on the other ports the idle timeout notices it, and pings would
//! count as traffic and keep unused connections open).

use std::time::Duration;

use salvo::conn::TcpListener;
use salvo::conn::tcp::TcpAcceptor;
use salvo::fuse::FuseConfig;
use salvo::http::header::{HeaderValue, X_CONTENT_TYPE_OPTIONS};
use salvo::http::{HeaderMap, StatusCode};
use salvo::prelude::*;

use crate::problem::Problem;
use crate::process::ProcessError;

pub mod hyper_port;
mod metrics_endpoint;
mod request_log;
mod serve;

pub use crate::shutdown::Drain;
pub use metrics_endpoint::MetricsEndpoint;
pub use request_log::{RequestLog, RouteLabel};
pub use serve::{SHUTDOWN_GRACE, Serve};

/// The largest request line plus headers any process reads (larger ones get 431): enough
/// for real clients (nginx allows 32 KiB by default), small enough that a flood of huge
/// headers costs little memory.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// hyper's read buffer: the head limit plus room for the one read that may overshoot it, so
/// that [`RequestHeadLimit`], not the buffer, decides at exactly the limit.
const READ_BUFFER_BYTES: usize = MAX_REQUEST_HEAD_BYTES + 16 * 1024;

/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may pause between two pieces.
pub const BODY_GAP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long iam-api and iam-jwks keep a connection with no traffic (a keep-alive connection
/// between requests, or one that never sends): longer than load balancers' usual idle
/// timeouts for pooled upstream connections (60 s) would let a client hold sockets cheaply.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How many streams one HTTP/2 connection may have open at once.
pub const HTTP2_MAX_STREAMS: u32 = 100;

/// How often an HTTP/2 connection is pinged; a ping unanswered for as long closes it.
pub const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Binds `host:port` and returns a server with the connection timeouts and head limit;
/// `idle_timeout` closes connections without traffic (`None`: never, for streams).
pub async fn bind(
    host: &str,
    port: u16,
    idle_timeout: Option<Duration>,
) -> Result<Server<TcpAcceptor>, ProcessError> {
    let acceptor = TcpListener::new((host.to_owned(), port))
        .try_bind()
        .await
        .map_err(|error| {
            ProcessError::runtime(format!("cannot listen on {host}:{port}: {error}"))
        })?;
    let mut server = Server::new(acceptor).fuse_config(
        FuseConfig::default()
            .with_http1_header_timeout(HEADER_READ_TIMEOUT)
            .with_request_body_timeout(BODY_GAP_TIMEOUT)
            .with_connection_idle_timeout(idle_timeout),
    );
    server.http1_mut().max_buf_size(READ_BUFFER_BYTES);
    server
        .http2_mut()
        .timer(salvo::rt::tokio::TokioTimer::new());
    http2_settings(server.http2_mut(), idle_timeout);
    Ok(server)
}

/// The HTTP/2 settings of every port, salvo's and [`hyper_port`]'s: the head limit as the
/// header-list size, the stream limit, and pings only on a port without an idle timeout
/// (salvo's idle timeout counts bytes, and pings and their answers would keep an unused
/// connection open for ever; a peer that vanished sends nothing, so the idle timeout
/// notices it as well).
fn http2_settings<E>(builder: &mut hyper::server::conn::http2::Builder<E>, idle: Option<Duration>) {
    builder
        .max_header_list_size(MAX_REQUEST_HEAD_BYTES as u32)
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .keep_alive_interval(idle.is_none().then_some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(HTTP2_PING_INTERVAL);
}

/// The size of a request head as it was sent: `METHOD SP target SP HTTP/x.y CRLF`, then
/// `name: value CRLF` per header, then CRLF (hyper keeps no copy of the raw bytes; optional
/// whitespace around values is not counted, so a client cannot pass more than this).
pub fn request_head_len(method: &str, target: &str, headers: &HeaderMap) -> usize {
    let request_line = method.len() + 1 + target.len() + 1 + "HTTP/1.1".len() + 2;
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + fields + 2
}

/// Whether a head of `len` bytes is over [`MAX_REQUEST_HEAD_BYTES`].
pub fn head_too_large(len: usize) -> bool {
    len > MAX_REQUEST_HEAD_BYTES
}

/// A service hoop answering 431 to a request whose head is over the limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeadLimit;

#[async_trait]
impl Handler for RequestHeadLimit {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |target| target.as_str());
        if head_too_large(request_head_len(
            req.method().as_str(),
            target,
            req.headers(),
        )) {
            refuse_large_head(res);
            ctrl.skip_rest();
            return;
        }
        ctrl.call_next(req, depot, res).await;
    }
}

/// Writes the 431 problem document.
pub fn refuse_large_head(res: &mut Response) {
    large_head_problem().write_to(res);
}

/// The 431 problem document.
fn large_head_problem() -> Problem {
    Problem::about_blank(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        format!("the request line and headers must be at most {MAX_REQUEST_HEAD_BYTES} bytes"),
    )
}

/// A service hoop adding `X-Content-Type-Options: nosniff` to every answer, so that no
/// browser guesses a body's type from its content.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSniff;

#[async_trait]
impl Handler for NoSniff {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        ctrl.call_next(req, depot, res).await;
        res.headers_mut()
            .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn the_head_is_counted_as_it_is_sent() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.com"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("22"));
        let sent = "GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 22\r\n\r\n";
        assert_eq!(request_head_len("GET", "/p?q=1", &headers), sent.len());
    }

    #[test]
    fn the_431_body_is_the_documented_problem() {
        let mut res = Response::new();
        refuse_large_head(&mut res);
        assert_eq!(
            res.status_code,
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let body = match &res.body {
            salvo::http::ResBody::Once(body) => body.clone(),
            other => panic!("unexpected body {other:?}"),
        };
        assert_eq!(
            std::str::from_utf8(&body).expect("utf-8"),
            r#"{"type":"about:blank","title":"Request Header Fields Too Large","status":431,"detail":"the request line and headers must be at most 65536 bytes"}"#
        );
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(!head_too_large(MAX_REQUEST_HEAD_BYTES - 1));
        assert!(!head_too_large(MAX_REQUEST_HEAD_BYTES));
        assert!(head_too_large(MAX_REQUEST_HEAD_BYTES + 1));
    }
}
