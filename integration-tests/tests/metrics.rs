//! `GET /metrics` of each process carries the named series.

use integration_tests::api::string;
use integration_tests::upstream::EchoUpstream;
use integration_tests::{ServiceProcess, TestDatabase, raw_http};
use serde_json::json;

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    response.text().await.expect("text")
}

#[tokio::test]
async fn every_process_exports_its_series() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let upstream = EchoUpstream::start().await;
    let sidecar =
        ServiceProcess::sidecar_builder(&upstream.url, &jwks.url("/.well-known/jwks.json"))
            .start()
            .await;

    let user = api.register("ada@example.com", "password-1").await;
    let pair = api.login("ada@example.com", "password-1").await;
    api.post_json(
        "/api/v1/tokens",
        None,
        &json!({"email": "ada@example.com", "password": "wrong-password"}),
    )
    .await;
    let admin = api.admin_token().await;
    api.get(
        &format!("/api/v1/users/{}", string(&user["id"])),
        Some(&admin),
    )
    .await;
    jwks.get("/.well-known/jwks.json", None).await;
    sidecar
        .get("/orders", Some(&string(&pair["access_token"])))
        .await;

    let api_metrics = scrape(&api.url("/metrics")).await;
    for series in [
        r#"http_server_requests_total{method="POST",route="/api/v1/users",status="201"} 1"#,
        r#"http_server_requests_total{method="GET",route="/api/v1/users/{id}",status="200"} 1"#,
        r#"http_server_request_duration_seconds_bucket{"#,
        r#"iam_token_requests_total{grant="password",outcome="success"}"#,
        r#"iam_token_requests_total{grant="password",outcome="invalid_credentials"} 1"#,
        "iam_password_hash_queue_depth 0",
        "iam_password_hash_wait_seconds_count",
        "iam_db_pool_connections",
        "iam_db_pool_idle_connections",
    ] {
        assert!(
            api_metrics.contains(series),
            "api lacks {series}:\n{api_metrics}"
        );
    }
    assert!(
        !api_metrics.contains(&string(&user["id"])),
        "ids must not become labels"
    );

    let jwks_metrics = scrape(&jwks.url("/metrics")).await;
    for series in [
        r#"http_server_requests_total{method="GET",route="/.well-known/jwks.json",status="200"}"#,
        r#"iam_jwks_reloads_total{outcome="ok"}"#,
        "iam_jwks_keys 1",
    ] {
        assert!(
            jwks_metrics.contains(series),
            "jwks lacks {series}:\n{jwks_metrics}"
        );
    }

    let sidecar_metrics = scrape(&sidecar.health_url.replace("/healthcheck", "/metrics")).await;
    for series in [
        r#"iam_sidecar_requests_total{outcome="forwarded"} 1"#,
        r#"iam_sidecar_token_rejections_total{reason="expired"} 0"#,
        "iam_sidecar_jwks_refreshes_total",
        "iam_sidecar_jwks_keys 1",
        r#"http_server_requests_total{method="GET",route="/*",status="200"} 1"#,
        "http_server_request_duration_seconds_bucket",
    ] {
        assert!(
            sidecar_metrics.contains(series),
            "sidecar lacks {series}:\n{sidecar_metrics}"
        );
    }
}

/// Any token is a method to HTTP: one request per invented method must not add a series per
/// method (memory and scrape size without bound), on the salvo ports and the hyper ones.
#[tokio::test]
async fn invented_methods_share_one_series() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    for (process, path) in [
        (&api, "/api/v1/healthcheck"),
        (&jwks, "/.well-known/jwks.json"),
    ] {
        let authority = raw_http::authority(&process.base_url);
        for method in ["FROB1", "FROB2", "get", "M-SEARCH"] {
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let answer = raw_http::exchange(authority, request.as_bytes()).await;
            assert!(
                (400..500).contains(&answer.status),
                "{method}: {}",
                answer.status
            );
        }
        let metrics = scrape(&process.url("/metrics")).await;
        for method in ["FROB", "get", "M-SEARCH"] {
            assert!(
                !metrics.contains(&format!("method=\"{method}")),
                "{method} became a label:\n{metrics}"
            );
        }
        assert!(metrics.contains(r#"method="_OTHER""#), "{metrics}");
    }
}

/// The same on the sidecar's main port (served by hyper directly, counted under one route
/// label): its series are on the admin port.
#[tokio::test]
async fn invented_methods_share_one_series_on_the_sidecar() {
    let stack = integration_tests::sidecar::stack().await;
    let authority = raw_http::authority(&stack.sidecar.base_url);
    for method in ["FROB1", "FROB2", "get", "M-SEARCH"] {
        let request =
            format!("{method} /orders HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = raw_http::exchange(authority, request.as_bytes()).await;
        // No token: refused before the upstream is asked.
        assert_eq!(answer.status, 401, "{method}: {answer:?}");
    }
    let metrics = stack.metrics().await;
    for method in ["FROB", "get", "M-SEARCH"] {
        assert!(
            !metrics.contains(&format!("method=\"{method}")),
            "{method} became a label:\n{metrics}"
        );
    }
    assert!(
        metrics
            .contains(r#"http_server_requests_total{method="_OTHER",route="/*",status="401"} 4"#),
        "{metrics}"
    );
    assert!(stack.upstream.requests().is_empty());
}
