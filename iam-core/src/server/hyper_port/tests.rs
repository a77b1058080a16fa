use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::metrics::{HttpMetrics, Registry, render};
use crate::server::{MAX_REQUEST_HEAD_BYTES, RouteLabel};

/// Answers `/hello` with `hello` under the route `/hello`, `/client` with the client's
/// address, anything else 404 unmatched.
#[derive(Debug)]
struct Hello;

impl Answer for Hello {
    type Body = Body;

    async fn answer(&self, request: Request<Incoming>) -> Answered {
        if request.uri().path() == "/client" {
            let client = request
                .extensions()
                .get::<ClientAddr>()
                .map(|client| client.0);
            Answered {
                response: Response::new(Body::from(format!("{client:?}"))),
                route: "/client",
            }
        } else if request.uri().path() == "/hello" {
            Answered {
                response: Response::new(Body::from("hello")),
                route: "/hello",
            }
        } else {
            let mut response = Response::new(Body::default());
            *response.status_mut() = StatusCode::NOT_FOUND;
            Answered {
                response,
                route: "",
            }
        }
    }
}

/// A served port with `idle_timeout`: its address, its metrics, the stop switch and the
/// serving task.
struct Running {
    address: SocketAddr,
    registry: Registry,
    stop: watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

async fn running(idle_timeout: Option<Duration>) -> Running {
    running_with(Hello, idle_timeout).await
}

async fn running_with<A: Answer>(answer: A, idle_timeout: Option<Duration>) -> Running {
    let mut registry = Registry::default();
    let log = RequestLog::new(HttpMetrics::register(&mut registry), RouteLabel::Matched);
    let port = HyperPort::bind("127.0.0.1", 0, idle_timeout, answer, log)
        .await
        .expect("bind");
    let address = port.local_addr().expect("address");
    let stop = watch::Sender::new(false);
    let served = tokio::spawn(port.serve(stop.subscribe()));
    Running {
        address,
        registry,
        stop,
        served,
    }
}

/// Sends `request` over a fresh connection and reads until the server closes it.
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn http1_requests_are_answered_logged_and_counted() {
    let port = running(None).await;
    let answer = exchange(
        port.address,
        b"GET /hello?secret=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("x-content-type-options: nosniff\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
    let missing = exchange(
        port.address,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let metrics = render(&port.registry);
    assert!(
        metrics
            .contains(r#"http_server_requests_total{method="GET",route="/hello",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"http_server_requests_total{method="GET",route="unmatched",status="404"} 1"#
        ),
        "{metrics}"
    );
}

/// A request whose head (request line, headers, final CRLF) is exactly `len` bytes.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let fill = len - start.len() - "X-Padding: \r\n".len() - 2;
    format!("{start}X-Padding: {}\r\n\r\n", "a".repeat(fill)).into_bytes()
}

#[tokio::test]
async fn the_head_limit_is_exact_and_its_refusals_are_counted() {
    let port = running(None).await;
    let at_limit = exchange(port.address, &head_of_len(MAX_REQUEST_HEAD_BYTES)).await;
    assert!(at_limit.starts_with("HTTP/1.1 200"), "{}", &at_limit[..40]);
    let over = exchange(port.address, &head_of_len(MAX_REQUEST_HEAD_BYTES + 1)).await;
    assert!(over.starts_with("HTTP/1.1 431"), "{over}");
    assert!(
        over.contains("content-type: application/problem+json"),
        "{over}"
    );
    assert!(over.contains("at most 65536 bytes"), "{over}");
    let metrics = render(&port.registry);
    assert!(
        metrics.contains(r#"route="unmatched",status="431"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_on_the_same_port() {
    let port = running(None).await;
    let stream = TcpStream::connect(port.address).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = Request::get(format!("http://{}/hello", port.address))
            .body(Body::default())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes(), "hello");
    }
}

#[tokio::test]
async fn a_connection_that_moves_nothing_for_the_idle_timeout_is_closed() {
    let port = running(Some(Duration::from_millis(300))).await;
    let started = Instant::now();
    // Keep-alive: hyper would wait HEADER_READ_TIMEOUT (10 s) for the next request.
    let answer = exchange(port.address, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < HEADER_READ_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_http2_connection_without_requests_is_closed_after_the_idle_timeout() {
    let port = running(Some(Duration::from_millis(300))).await;
    let stream = TcpStream::connect(port.address).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello", port.address))
        .body(Body::default())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(closed.is_ok(), "the server keeps an idle HTTP/2 connection");
}

#[test]
fn a_connection_is_quiet_only_without_requests_begun_finished_or_in_flight() {
    let activity = Arc::new(Activity::default());
    assert!(activity.quiet_since_last_look());
    let busy = activity.begin();
    assert!(!activity.quiet_since_last_look(), "just begun");
    assert!(!activity.quiet_since_last_look(), "still answering");
    drop(busy);
    assert!(!activity.quiet_since_last_look(), "just finished");
    assert!(activity.quiet_since_last_look());
}

#[tokio::test]
async fn after_the_stop_signal_nothing_is_accepted_and_open_connections_end() {
    let port = running(None).await;
    // An idle keep-alive connection, opened before the signal.
    let mut idle = TcpStream::connect(port.address).await.expect("connect");
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0_u8; 12];
    idle.read_exact(&mut first).await.expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");

    port.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), port.served)
        .await
        .expect("serve returns once its connections ended")
        .expect("serve task");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .expect("read");
    assert!(TcpStream::connect(port.address).await.is_err());
}

#[tokio::test]
async fn the_answer_is_told_the_clients_address() {
    let port = running(None).await;
    let mut stream = TcpStream::connect(port.address).await.expect("connect");
    let client = stream.local_addr().expect("address");
    stream
        .write_all(b"GET /client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.ends_with(&format!("Some({client})")), "{answer}");
}

/// Switches every request's connection to an echo of what the client sends next, and adds
/// no `nosniff` (as a proxy passes its upstream's headers).
#[derive(Debug)]
struct Echo;

impl Answer for Echo {
    type Body = Body;
    const UPGRADES: bool = true;
    const NOSNIFF: bool = false;

    async fn answer(&self, mut request: Request<Incoming>) -> Answered {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert("connection", HeaderValue::from_static("upgrade"));
        headers.insert("upgrade", HeaderValue::from_static("echo"));
        Answered {
            response,
            route: "/echo",
        }
    }
}

#[tokio::test]
async fn an_answer_that_upgrades_gets_the_connection_and_its_headers_stay_its_own() {
    let port = running_with(Echo, None).await;
    let mut stream = TcpStream::connect(port.address).await.expect("connect");
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8; 1];
        stream.read_exact(&mut byte).await.expect("read the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("nosniff"), "{head}");
    stream.write_all(b"ping").await.expect("write");
    let mut echoed = [0_u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .expect("read");
    assert_eq!(&echoed, b"ping");
}
