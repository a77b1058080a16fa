//! Healthcheck, database outages, and the documentation endpoints.

use std::time::{Duration, Instant};

use integration_tests::api::expect_problem;
use integration_tests::{ServiceProcess, TestDatabase, eventually};
use serde_json::{Value, json};

#[tokio::test]
async fn healthcheck_reports_env_and_version() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db).env("ENV", "ci").start().await;
    let response = api.get("/api/v1/healthcheck", None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({"status": "ok", "database": "ok", "env": "ci", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn a_database_outage_gives_503_quickly_and_the_service_recovers() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (_, token) = api.user_with_token("ada@example.com").await;
    db.refuse_connections().await;

    let started = Instant::now();
    let health = api.get("/api/v1/healthcheck", None).await;
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.expect("json");
    assert_eq!(body["status"], "error");
    assert_eq!(body["database"], "unreachable");
    for response in [
        api.get("/api/v1/me", Some(&token)).await,
        api.register_attempt("b@example.com", "password-1").await,
        api.post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": "ada@example.com", "password": "user-password-1"}),
        )
        .await,
    ] {
        let status = response.status();
        assert!(
            response.headers().contains_key("retry-after"),
            "{status}: {}",
            response.text().await.unwrap_or_default()
        );
        expect_problem(response, 503).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    db.allow_connections().await;
    eventually(Duration::from_secs(15), "the api recovers", || async {
        api.get("/api/v1/healthcheck", None).await.status() == 200
    })
    .await;
    assert_eq!(api.get("/api/v1/me", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_documents() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let missing = api.get("/api/v1/nothing-here", None).await;
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    expect_problem(missing, 404).await;
    let wrong_method = api
        .client
        .delete(api.url("/api/v1/healthcheck"))
        .send()
        .await
        .expect("send");
    assert!(wrong_method.status() == 405 || wrong_method.status() == 404);
    let status = wrong_method.status().as_u16();
    expect_problem(wrong_method, status).await;
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_are_served_offline() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let document: Value = api
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        document["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
    let committed: Value =
        serde_json::from_str(include_str!("../../openapi.json")).expect("committed");
    assert_eq!(document, committed);

    let page = api.get("/docs/", None).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui-bundle.js"));
    assert!(
        !html.contains("https://"),
        "the docs page must not load from a CDN"
    );
    let bundle = api.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status(), 200);
}
