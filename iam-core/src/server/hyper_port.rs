//! A port served by hyper directly, without salvo, for the endpoints where salvo's own work
//! per request (converting request and response, routing, the depot, the hoop chain) costs
//! more than the answer: iam-jwks serves pre-serialised documents and the sidecar's main
//! port forwards, and measured on this stack salvo adds about 18 µs of CPU to a request
//! that hyper alone answers in a few.
//!
//! The port keeps every promise of [`super::bind`] and [`super::Serve`]:
//! - HTTP/1.1 and HTTP/2 cleartext with prior knowledge, told apart by the connection
//!   preface, which must arrive within [`HEADER_READ_TIMEOUT`] (a client that sends nothing
//!   is closed then); an HTTP/1.1 head must then arrive within the same timeout again;
//! - the request head limit ([`MAX_REQUEST_HEAD_BYTES`], exact, answered 431), HTTP/2's
//!   header-list size, stream limit and pings as in [`super::bind`];
//! - a connection that answers no request for the idle timeout is closed (within a quarter
//!   of the timeout more; HTTP/2 pings do not count as use);
//! - the request log, metrics and SERVER span of [`RequestLog`] (a 431 included), and
//!   `X-Content-Type-Options: nosniff` on every answer (unless the answer is a proxy's,
//!   [`Answer::NOSNIFF`]);
//! - on the stop signal it stops accepting, lets each connection finish what it is doing
//!   (HTTP/2: GOAWAY) and waits up to [`SHUTDOWN_GRACE`] for them.
//!
//! Request bodies are not read by the port: an answer that reads one wraps it in
//! [`GapLimited`] to keep the body-gap timeout (hyper closes an HTTP/1.1 connection whose
//! request body was left unread). Answers may stream ([`Answer::Body`]); an answer that
//! sets [`Answer::UPGRADES`] may switch an HTTP/1.1 connection to another protocol
//! (`hyper::upgrade::on`). The client's address is in each request's extensions
//! ([`ClientAddr`]).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use salvo::http::header::{HeaderValue, X_CONTENT_TYPE_OPTIONS};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::{
    HEADER_READ_TIMEOUT, READ_BUFFER_BYTES, RequestLog, SHUTDOWN_GRACE, head_too_large,
    http2_settings, large_head_problem, request_head_len,
};
use crate::process::ProcessError;
use crate::telemetry;

mod body_gap;
mod idle;
mod stream;

pub use body_gap::{BodyGapElapsed, BoxError, GapLimited};
use idle::{Activity, idle_elapsed};
use stream::{Protocol, ServedStream};

/// The body of an answer that is a whole document (iam-jwks answers only with these).
pub type Body = Full<Bytes>;

/// An answer and the route template it was given under (`""`: no route matched), which
/// labels the request's span, metrics and log line.
#[derive(Debug)]
pub struct Answered<B = Body> {
    pub response: Response<B>,
    pub route: &'static str,
}

/// The address of the client a request came from, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The status the request log records for an answer sent with another one, in the
/// response's extensions: the sidecar sends its refusal of a gRPC call as HTTP 200 with a
/// `grpc-status`, but it is a 401 or 403 to count and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedStatus(pub hyper::StatusCode);

/// What answers the requests of a [`HyperPort`].
pub trait Answer: Send + Sync + 'static {
    /// The body of its answers; the port builds its own refusals (431) from a `Vec<u8>`.
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + From<Vec<u8>> + Send + 'static;

    /// Whether an answer may switch an HTTP/1.1 connection to another protocol (101, e.g.
    /// a WebSocket through a proxy); hyper then hands the connection over.
    const UPGRADES: bool = false;

    /// Whether the port adds `X-Content-Type-Options: nosniff` to every answer; a proxy
    /// passes its upstream's headers as they are.
    const NOSNIFF: bool = true;

    /// Answers one request.
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Answered<Self::Body>> + Send;

    /// Adapts a refusal the port gave by itself (431) to the request it refuses, as the
    /// answer's own refusals are (the sidecar sends a gRPC call's as gRPC status).
    fn refused(
        &self,
        _request: &Request<Incoming>,
        response: Response<Self::Body>,
    ) -> Response<Self::Body> {
        response
    }
}

/// A bound port and what answers on it; [`super::Serve::listen_hyper`] serves it.
#[derive(Debug)]
pub struct HyperPort<A> {
    listener: TcpListener,
    connections: Arc<Connections<A>>,
}

/// What every connection of a port shares.
#[derive(Debug)]
struct Connections<A> {
    answer: A,
    log: RequestLog,
    idle_timeout: Option<Duration>,
}

impl<A: Answer> HyperPort<A> {
    /// Binds `host:port`; `answer` answers, `log` logs and counts each request, and
    /// `idle_timeout` closes connections that answer no request for so long (`None`: never;
    /// HTTP/2 connections are pinged instead). A request counts as use until its answer's
    /// head is sent, not while its body streams: a port whose answers stream for long (the
    /// sidecar's main port) has no idle timeout.
    pub async fn bind(
        host: &str,
        port: u16,
        idle_timeout: Option<Duration>,
        answer: A,
        log: RequestLog,
    ) -> Result<Self, ProcessError> {
        let listener = TcpListener::bind((host, port)).await.map_err(|error| {
            ProcessError::runtime(format!("cannot listen on {host}:{port}: {error}"))
        })?;
        Ok(HyperPort {
            listener,
            connections: Arc::new(Connections {
                answer,
                log,
                idle_timeout,
            }),
        })
    }

    /// The address the port listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` turns true, then stops accepting and lets the open connections
    /// finish within [`SHUTDOWN_GRACE`].
    pub async fn serve(self, mut stop: watch::Receiver<bool>) {
        let mut open = JoinSet::new();
        let stop_for_connections = stop.clone();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        open.spawn(serve_connection(
                            stream,
                            ClientAddr(peer),
                            Arc::clone(&self.connections),
                            stop_for_connections.clone(),
                        ));
                    }
                    Err(error) => {
                        // Out of file descriptors, most likely: give the open connections a
                        // moment to end rather than spin on the error.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = open.join_next(), if !open.is_empty() => {}
                () = stopped(&mut stop) => break,
            }
        }
        drop(self.listener);
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while open.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                connections = open.len(),
                "closing connections still busy after the shutdown grace"
            );
            open.abort_all();
        }
    }
}

/// Serves one connection until it ends, idles out, or finishes after the stop signal.
async fn serve_connection<A: Answer>(
    mut stream: TcpStream,
    client: ClientAddr,
    connections: Arc<Connections<A>>,
    mut stop: watch::Receiver<bool>,
) {
    // Answers are written whole; waiting for the peer's ACK before the next one only adds
    // latency.
    let _ = stream.set_nodelay(true);
    let told = tokio::select! {
        told = tokio::time::timeout(HEADER_READ_TIMEOUT, stream::read_protocol(&mut stream)) => told,
        () = stopped(&mut stop) => return,
    };
    let Ok(Ok(Some((protocol, already_read)))) = told else {
        return;
    };
    let activity = Arc::new(Activity::default());
    let idle_timeout = connections.idle_timeout;
    let io = TokioIo::new(ServedStream::new(already_read, stream));
    let requests = Arc::clone(&activity);
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(client);
        let connections = Arc::clone(&connections);
        let busy = requests.begin();
        async move {
            let response = connections.handle(request).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    match protocol {
        Protocol::Http1 => {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(READ_BUFFER_BYTES);
            let connection = builder.serve_connection(io, service);
            if A::UPGRADES {
                drive(
                    connection.with_upgrades(),
                    http1::UpgradeableConnection::graceful_shutdown,
                    &activity,
                    idle_timeout,
                    stop,
                )
                .await;
            } else {
                drive(
                    connection,
                    http1::Connection::graceful_shutdown,
                    &activity,
                    idle_timeout,
                    stop,
                )
                .await;
            }
        }
        Protocol::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            http2_settings(&mut builder, idle_timeout);
            let connection = builder.serve_connection(io, service);
            drive(
                connection,
                http2::Connection::graceful_shutdown,
                &activity,
                idle_timeout,
                stop,
            )
            .await;
        }
    }
}

/// Runs `connection` to its end: dropped (closed) when idle for `idle_timeout`, shut down
/// gracefully once `stop` turns true.
async fn drive<C>(
    connection: C,
    shut_down_gracefully: fn(Pin<&mut C>),
    activity: &Activity,
    idle_timeout: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = hyper::Result<()>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            // A client that goes away mid-request is not the server's error.
            _ = connection.as_mut() => return,
            () = idle_elapsed(activity, idle_timeout) => return,
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                shut_down_gracefully(connection.as_mut());
            }
        }
    }
}

/// Resolves once `stop` is true (or can no longer change).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

impl<A: Answer> Connections<A> {
    /// Answers one request inside its SERVER span, then logs and counts it.
    async fn handle(&self, request: Request<Incoming>) -> Response<A::Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let span = telemetry::server_span(method.as_str(), uri.path(), request.headers());
        let target = uri.path_and_query().map_or("/", |target| target.as_str());
        let head_len = request_head_len(method.as_str(), target, request.headers());
        let Answered {
            mut response,
            route,
        } = if head_too_large(head_len) {
            let refusal = large_head_problem().to_hyper_response();
            Answered {
                response: self.answer.refused(&request, refusal),
                route: "",
            }
        } else if span.is_disabled() {
            // No trace export: nothing to enter around the answer.
            self.answer.answer(request).await
        } else {
            self.answer.answer(request).instrument(span.clone()).await
        };
        if A::NOSNIFF {
            response
                .headers_mut()
                .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        }
        let status = match response.extensions_mut().remove::<LoggedStatus>() {
            Some(LoggedStatus(status)) => status,
            None => response.status(),
        }
        .as_u16();
        let route = Cow::Borrowed(route);
        self.log
            .record(&span, method.as_str(), route, uri.path(), status, started);
        response
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests;
