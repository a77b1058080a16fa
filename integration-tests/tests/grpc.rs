//! HTTP/2 and gRPC through the sidecar (contract §6): a real tonic client and server, unary
//! and server-streaming calls with their trailers, refusals read by the client as gRPC
//! status, and an HTTP/2 client in front of an HTTP/1.1 upstream.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use integration_tests::grpc::{GrpcUpstream, RawCodec, client, request};
use integration_tests::raw_http;
use integration_tests::sidecar::{Stack, stack_with};
use serde_json::Value;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tower_service::Service as _;

/// The sidecar stack with its upstream replaced by the gRPC server, spoken to over h2c.
async fn grpc_stack(upstream: &GrpcUpstream) -> Stack {
    let url = upstream.url.clone();
    stack_with(|builder| {
        builder
            .env("UPSTREAM_URL", url)
            .env("UPSTREAM_HTTP2", "true")
    })
    .await
}

fn path(path: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(path)
}

#[tokio::test]
async fn unary_and_streaming_calls_pass_with_the_identity_and_their_trailers() {
    let upstream = GrpcUpstream::start().await;
    let stack = grpc_stack(&upstream).await;
    let mut grpc = client(&stack.sidecar.url("")).await;
    grpc.ready().await.expect("ready");

    // Spoofed identity metadata, in two spellings, never reaches the service.
    let call = request(
        "hello",
        Some(&stack.token),
        &[("x-user-id", "spoofed"), ("x_user_role", "admin")],
    );
    let answer: Bytes = grpc
        .unary(call, path("/test.Echo/Unary"), RawCodec)
        .await
        .expect("unary call")
        .into_inner();
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(answer["message"], "hello");
    assert_eq!(answer["metadata"]["x-user-id"], stack.clerk_id.as_str());
    assert_eq!(answer["metadata"]["x-user-role"], "clerk");
    assert_eq!(answer["metadata"]["x-user-permissions"], "orders:write");

    grpc.ready().await.expect("ready");
    let mut stream = grpc
        .server_streaming(
            request("", Some(&stack.token), &[]),
            path("/test.Echo/Stream"),
            RawCodec,
        )
        .await
        .expect("streaming call")
        .into_inner();
    let mut messages = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => panic!("the stream ended without its status"),
            Err(status) => break status,
        }
    };
    assert_eq!(messages, ["one", "two", "three"]);
    // The status and the trailing metadata came in the response's trailers.
    assert_eq!(end.code(), Code::Aborted, "{end:?}");
    assert_eq!(end.message(), "the end");
    assert_eq!(
        end.metadata()
            .get("x-trailer")
            .map(|v| v.to_str().expect("ascii")),
        Some("kept")
    );
}

#[tokio::test]
async fn refusals_are_read_as_grpc_status() {
    let upstream = GrpcUpstream::start().await;
    let stack = grpc_stack(&upstream).await;
    let mut grpc = client(&stack.sidecar.url("")).await;
    let cases = [
        (None, "/test.Echo/Unary", Code::Unauthenticated),
        (
            Some("not-a-token"),
            "/test.Echo/Unary",
            Code::Unauthenticated,
        ),
        // The stack's rules: /admin needs admin:all, which the clerk does not hold.
        (
            Some(stack.token.as_str()),
            "/admin/Secret",
            Code::PermissionDenied,
        ),
    ];
    for (token, method, code) in cases {
        grpc.ready().await.expect("ready");
        let status = grpc
            .unary(request("x", token, &[]), path(method), RawCodec)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{token:?} {method}: {status:?}");
        assert!(!status.message().is_empty(), "{status:?}");
    }
    // Counted and logged as the refusals they are.
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(r#"status="401"} 2"#) && metrics.contains(r#"status="403"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_that_cannot_be_reached_is_unavailable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let stack = stack_with(|builder| {
        builder
            .env("UPSTREAM_URL", closed)
            .env("UPSTREAM_HTTP2", "true")
            .env("UPSTREAM_TIMEOUT", "5")
    })
    .await;
    let mut grpc = client(&stack.sidecar.url("")).await;
    grpc.ready().await.expect("ready");
    let status = grpc
        .unary(
            request("x", Some(&stack.token), &[]),
            path("/test.Echo/Unary"),
            RawCodec,
        )
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

/// An HTTP/2 (prior knowledge) client, for plain requests.
async fn h2_channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect")
}

async fn send(
    channel: &mut tonic::transport::Channel,
    request: http::Request<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("ready");
    channel.call(request).await.expect("response")
}

#[tokio::test]
async fn an_http2_client_reaches_an_http1_upstream_as_an_http1_client_would() {
    let stack = stack_with(|builder| builder).await;
    let mut channel = h2_channel(&stack.sidecar.url("")).await;
    let request = http::Request::get(stack.sidecar.url("/orders/7?q=1"))
        .header("authorization", format!("Bearer {}", stack.token))
        .header("x-user-id", "spoofed")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(tonic::body::Body::empty())
        .expect("request");
    let response = send(&mut channel, request).await;
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let seen: Value = serde_json::from_slice(&body).expect("json");
    let header = |name: &str| -> Vec<String> {
        seen["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().expect("value").to_owned())
            .collect()
    };
    assert_eq!(seen["path_and_query"], "/orders/7?q=1");
    assert_eq!(header("x-user-id"), [stack.clerk_id.as_str()]);
    // The client's `:authority` arrives as `Host`, its cookies as one field.
    let authority = stack
        .sidecar
        .url("")
        .trim_start_matches("http://")
        .to_owned();
    assert_eq!(header("host"), [authority.as_str()]);
    assert_eq!(header("x-forwarded-host"), [authority.as_str()]);
    assert_eq!(header("cookie"), ["a=1; b=2"]);

    // A refusal over HTTP/2 is the same problem document as over HTTP/1.1.
    let request = http::Request::get(stack.sidecar.url("/orders/7"))
        .body(tonic::body::Body::empty())
        .expect("request");
    let response = send(&mut channel, request).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(stack.upstream_calls(), 1);
}

#[tokio::test]
async fn a_decision_is_never_a_grpc_200() {
    // An ext_authz or auth_request proxy reads any 200 as "allow": a refused gRPC call is
    // answered 401/403 there, whatever its content type.
    let stack = stack_with(|builder| {
        builder
            .without_env("UPSTREAM_URL")
            .env("SIDECAR_MODE", "decision")
    })
    .await;
    let http = reqwest::Client::new();
    for (token, path, status) in [
        (None, "/test.Echo/Unary", 401),
        (Some(stack.token.as_str()), "/admin/Secret", 403),
    ] {
        let mut question = http
            .post(stack.sidecar.url(path))
            .header("content-type", "application/grpc");
        if let Some(token) = token {
            question = question.bearer_auth(token);
        }
        let answer = question.send().await.expect("answer");
        assert_eq!(answer.status().as_u16(), status, "{path}");
        assert!(answer.headers().get("grpc-status").is_none());
    }
}

#[tokio::test]
async fn request_trailers_pass_without_identity_fields() {
    // Trailers arrive after the gate judged the headers: identity fields in them, in any
    // spelling, must not reach the upstream, and the rest must (HTTP/1.1, chunked, raw).
    let stack = stack_with(|builder| builder).await;
    let request = format!(
        "POST /orders/9 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\
         Trailer: X-User-Id, X_User_Role, X-Client-Id, X-Checksum\r\n\r\n\
         5\r\nhello\r\n0\r\n\
         X-User-Id: spoofed\r\nX_User_Role: admin\r\nX-Client-Id: evil\r\nX-Checksum: abc\r\n\r\n",
        stack.token
    );
    let answer = raw_http::exchange(
        raw_http::authority(&stack.sidecar.url("")),
        request.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = stack.upstream.requests();
    let seen = seen.last().expect("the upstream was called");
    assert_eq!(seen.body_len, 5);
    assert_eq!(seen.trailers, [("x-checksum".to_owned(), "abc".to_owned())]);
    assert_eq!(seen.header("x-user-id"), Some(stack.clerk_id.as_str()));
    assert_eq!(seen.header("x-user-role"), Some("clerk"));
    assert_eq!(seen.header("te"), Some("trailers"));
}
