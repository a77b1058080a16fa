//! One trace across sidecar → api → database, exported to an in-test receiver over each OTLP
//! protocol: http/json, http/protobuf and grpc.

use std::time::Duration;

use integration_tests::otlp::OtlpReceiver;
use integration_tests::{ServiceProcess, TestDatabase, eventually_some};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn a_request_through_the_sidecar_to_me_is_one_trace_over_otlp_http_json() {
    let receiver = OtlpReceiver::start().await;
    assert_one_trace_through_the_sidecar(&receiver, &receiver.url, "http/json").await;
}

#[tokio::test]
async fn a_request_through_the_sidecar_to_me_is_one_trace_over_otlp_http_protobuf() {
    let receiver = OtlpReceiver::start().await;
    assert_one_trace_through_the_sidecar(&receiver, &receiver.url, "http/protobuf").await;
}

#[tokio::test]
async fn a_request_through_the_sidecar_to_me_is_one_trace_over_otlp_grpc() {
    let receiver = OtlpReceiver::start().await;
    assert_one_trace_through_the_sidecar(&receiver, &receiver.grpc_url, "grpc").await;
}

/// Sends one request with a `traceparent` through the sidecar to `/api/v1/me`, both processes
/// exporting to `endpoint` with `protocol`, and checks the trace the receiver got.
async fn assert_one_trace_through_the_sidecar(
    receiver: &OtlpReceiver,
    endpoint: &str,
    protocol: &str,
) {
    let db = TestDatabase::create().await;
    let otel = |builder: integration_tests::ServiceProcessBuilder| {
        builder
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("ENV", "tracing-test")
    };
    let mut api = otel(ServiceProcess::builder(&db)).start().await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let mut sidecar = otel(ServiceProcess::sidecar_builder(
        &api.base_url,
        &jwks.url("/.well-known/jwks.json"),
    ))
    .start()
    .await;
    let (_, token) = api.user_with_token("ada@example.com").await;

    let response = sidecar
        .client
        .get(sidecar.url("/api/v1/me"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);

    // A graceful stop flushes the exporters.
    sidecar.terminate();
    api.terminate();
    sidecar.wait(Duration::from_secs(20)).await;
    api.wait(Duration::from_secs(20)).await;
    let spans = eventually_some(
        Duration::from_secs(10),
        "the trace has the sidecar's, the api's and a database span",
        || async {
            let spans: Vec<_> = receiver
                .spans()
                .into_iter()
                .filter(|span| span.trace_id == TRACE_ID)
                .collect();
            let services: Vec<&str> = spans.iter().map(|span| span.service.as_str()).collect();
            (services.contains(&"iam-sidecar")
                && services.contains(&"iam-api")
                && spans.iter().any(|s| s.name.starts_with("db ")))
            .then_some(spans)
        },
    )
    .await;

    let sidecar_server = spans
        .iter()
        .find(|s| s.service == "iam-sidecar" && s.kind == 2)
        .expect("sidecar SERVER span");
    assert_eq!(
        sidecar_server.parent_span_id, "00f067aa0ba902b7",
        "continues the incoming traceparent"
    );
    let upstream_call = spans
        .iter()
        .find(|s| s.service == "iam-sidecar" && s.kind == 3)
        .expect("sidecar CLIENT span");
    let api_server = spans
        .iter()
        .find(|s| {
            s.service == "iam-api"
                && s.kind == 2
                && s.attribute("http.route").as_deref() == Some("/api/v1/me")
        })
        .expect("api SERVER span for /api/v1/me");
    assert_eq!(
        api_server.parent_span_id, upstream_call.span_id,
        "the api continues the sidecar's call"
    );
    assert_eq!(
        api_server.attribute("http.request.method").as_deref(),
        Some("GET")
    );
    let database = spans
        .iter()
        .find(|s| s.service == "iam-api" && s.name.starts_with("db users::"))
        .expect("database span");
    assert_eq!(
        database.attribute("db.system.name").as_deref(),
        Some("postgresql")
    );
}
