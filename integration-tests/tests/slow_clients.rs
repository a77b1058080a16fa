//! Slow and oversized requests cannot hold connections or memory, on every port of every
//! process: a head must arrive within the header timeout, a body may not stall, and the
//! request head is at most 64 KiB, exactly.

use std::time::{Duration, Instant};

use integration_tests::raw_http::{self, authority};
use integration_tests::upstream::EchoUpstream;
use integration_tests::{ServiceProcess, TestDatabase};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The server's header-read and body-gap timeouts are 10 s; allow for scheduling.
const CUT_OFF_WITHIN: Duration = Duration::from_secs(16);
const MAX_HEAD: usize = 64 * 1024;

/// Every listening port: (name, host:port, a path that answers without a token).
struct Ports {
    _db: TestDatabase,
    _api: ServiceProcess,
    _jwks: ServiceProcess,
    _upstream: EchoUpstream,
    _sidecar: ServiceProcess,
    ports: Vec<(&'static str, String, &'static str)>,
}

async fn every_port() -> Ports {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let upstream = EchoUpstream::start().await;
    let sidecar =
        ServiceProcess::sidecar_builder(&upstream.url, &jwks.url("/.well-known/jwks.json"))
            .env("PUBLIC_PATHS", "/public")
            .start()
            .await;
    let admin = authority(&sidecar.health_url)
        .trim_end_matches("/healthcheck")
        .to_owned();
    let ports = vec![
        (
            "iam-api",
            authority(&api.base_url).to_owned(),
            "/api/v1/healthcheck",
        ),
        (
            "iam-jwks",
            authority(&jwks.base_url).to_owned(),
            "/.well-known/jwks.json",
        ),
        (
            "iam-sidecar",
            authority(&sidecar.base_url).to_owned(),
            "/public/x",
        ),
        ("iam-sidecar admin", admin, "/healthcheck"),
    ];
    Ports {
        _db: db,
        _api: api,
        _jwks: jwks,
        _upstream: upstream,
        _sidecar: sidecar,
        ports,
    }
}

/// Writes `sent`, then reads until the server closes; how long that took and what came back.
async fn held_for(address: &str, sent: &[u8]) -> (Duration, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(sent).await.expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(CUT_OFF_WITHIN + Duration::from_secs(10), async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{address} still holds the connection");
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test]
async fn connections_that_stall_are_closed_on_every_port() {
    let stack = every_port().await;
    let mut cases = Vec::new();
    for (name, address, path) in &stack.ports {
        let partial_head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n");
        let stalled_body = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\":"
        );
        let one_request_then_silence = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        for (what, sent) in [
            ("nothing at all", String::new()),
            (
                "one request, then an idle keep-alive",
                one_request_then_silence,
            ),
            ("half a request line", "GET /api".to_owned()),
            ("a head without its end", partial_head),
            ("a body that never arrives", stalled_body),
        ] {
            cases.push(async move {
                let (took, answer) = held_for(address, sent.as_bytes()).await;
                (*name, what, took, answer)
            });
        }
    }
    for (name, what, took, answer) in futures::future::join_all(cases).await {
        assert!(
            took < CUT_OFF_WITHIN,
            "{name}, {what}: held for {took:?} ({answer})"
        );
    }
}

#[tokio::test]
async fn a_body_dripping_a_byte_a_second_gets_408_from_the_api() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let mut stream = TcpStream::connect(authority(&api.base_url))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /api/v1/tokens HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        )
        .await
        .expect("head");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    // Each byte comes well within the gap timeout; only the whole-body deadline can stop it.
    while started.elapsed() < Duration::from_secs(30) {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let answer = raw_http::parse(&answer);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        started.elapsed() < CUT_OFF_WITHIN,
        "{:?}",
        started.elapsed()
    );
}

/// A body that stalls half-way through the sidecar is cut off after the body-gap timeout:
/// the upstream request is aborted, the client gets 408 and its connection closes, and the
/// upstream is not blamed for it.
#[tokio::test]
async fn a_body_that_stalls_midway_through_the_sidecar_is_cut_off_after_the_gap() {
    // Its public paths take no token.
    let stack = integration_tests::sidecar::stack().await;
    let half_a_body = format!(
        "POST /public/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{}",
        "x".repeat(500)
    );
    let (took, answer) = held_for(authority(&stack.sidecar.base_url), half_a_body.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("paused for longer than 10 s"), "{answer}");
    // Not before the gap (10 s; a little scheduling slack), and not much after.
    assert!(
        took >= Duration::from_secs(9) && took < CUT_OFF_WITHIN,
        "cut off after {took:?}"
    );
    let metrics = stack.metrics().await;
    for kind in ["unreachable", "timeout"] {
        let series = format!("iam_sidecar_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(
            integration_tests::sidecar::metric_value(&metrics, &series),
            0.0,
            "{metrics}"
        );
    }
    assert!(
        metrics.contains(r#"http_server_requests_total{method="POST",route="/*",status="408"} 1"#),
        "{metrics}"
    );
}

/// A request whose head (request line, headers, final CRLF) is exactly `len` bytes.
fn head_of_len(path: &str, len: usize) -> Vec<u8> {
    let start = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    let padding_header = "X-Padding: \r\n".len();
    let fill = len - start.len() - padding_header - 2;
    format!("{start}X-Padding: {}\r\n\r\n", "a".repeat(fill)).into_bytes()
}

#[tokio::test]
async fn the_request_head_limit_is_exactly_64_kib_on_every_port() {
    let stack = every_port().await;
    for (name, address, path) in &stack.ports {
        let at_limit = raw_http::exchange(address, &head_of_len(path, MAX_HEAD)).await;
        assert_ne!(
            at_limit.status, 431,
            "{name}: a head of exactly 64 KiB is refused"
        );
        assert!(at_limit.status < 500, "{name}: {at_limit:?}");
        for over in [MAX_HEAD + 1, MAX_HEAD + 100, 100 * 1024] {
            let (_, answer) = held_for(address, &head_of_len(path, over)).await;
            let status = answer.split_whitespace().nth(1).unwrap_or("closed");
            assert!(
                status == "431" || status == "closed",
                "{name}: a head of {over} bytes gave {status}"
            );
        }
        // Two headers of 40 KiB each: the sum counts, not each header.
        let split = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-A: {}\r\nX-B: {}\r\n\r\n",
            "a".repeat(40 * 1024),
            "b".repeat(40 * 1024)
        );
        let (_, answer) = held_for(address, split.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
            "{name}: {answer}"
        );
    }
}

/// An HTTP/2 client that answers the server's pings but sends no request is closed after the
/// no-traffic timeout (iam-api 60 s, iam-jwks 60–75 s): pings must not count as use, or an
/// unused connection stays open for ever.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_though_it_answers_pings() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let mut closings = Vec::new();
    for (process, path) in [
        (&api, "/api/v1/healthcheck"),
        (&jwks, "/.well-known/jwks.json"),
    ] {
        let stream = TcpStream::connect(authority(&process.base_url))
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("handshake");
        let connection = tokio::spawn(connection);
        let request = http::Request::get(process.url(path))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200, "{path}");
        closings.push(async move {
            let started = Instant::now();
            let closed = tokio::time::timeout(Duration::from_secs(100), connection).await;
            // The client keeps its end until the server closes it.
            drop(sender);
            (path, closed.is_ok(), started.elapsed())
        });
    }
    for (path, closed, after) in futures::future::join_all(closings).await {
        assert!(
            closed,
            "{path}: the idle HTTP/2 connection is still open after {after:?}"
        );
        assert!(
            after >= Duration::from_secs(55),
            "{path}: closed after {after:?}"
        );
    }
}
