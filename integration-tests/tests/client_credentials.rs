//! The client-credentials grant (contract §3, issue 16): HTTP Basic and body
//! authentication, scope narrowing, RFC 6749 `error` codes (for every grant), throttling, a
//! disabled or deleted client's token refused at a running sidecar within the revocation
//! interval. Grants racing a client's deletion are in `client_races.rs`.

use base64::Engine as _;
use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, claims_of, expect_problem};
use integration_tests::clients::{
    basic_grant, client_token, create_role, expect_oauth_error, form_grant, new_client,
    patch_client,
};
use integration_tests::sidecar::{PROPAGATION_LIMIT, polling_stack};
use integration_tests::{eventually, interop_verifier, raw_http};
use serde_json::{Value, json};

#[tokio::test]
async fn the_client_credentials_grant_issues_an_access_token_for_the_role_or_a_narrower_scope() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let admin = api.admin_token().await;
    create_role(&api, &admin, "billing", &["orders:read", "orders:write"]).await;
    let (id, secret) = new_client(&api, &admin, "billing worker", "billing").await;

    // HTTP Basic (client_secret_basic).
    let response = basic_grant(&api, &id, &secret, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|ttl| ttl > 0));
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token: {body}"
    );
    assert_eq!(body["scope"], "orders:read orders:write");
    let token = access_token(&body);
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["role"], "billing");
    assert_eq!(
        claims["permissions"],
        json!(["orders:read", "orders:write"])
    );
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert!(claims.get("email").is_none(), "no email: {claims}");

    // In the body (client_secret_post), with a narrower scope.
    let response = form_grant(
        &api,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let narrow = access_token(&response.json().await.expect("json"));
    let claims = claims_of(&narrow);
    assert_eq!(claims["permissions"], json!(["orders:read"]));
    assert_eq!(claims["scope"], "orders:read");

    // An independent verifier that requires client_id accepts both.
    let output = tokio::process::Command::new("node")
        .arg(interop_verifier())
        .args([&jwks.url("/.well-known/jwks.json"), "iam", "iam"])
        .args([&token, &narrow])
        .output()
        .await
        .expect("run node");
    assert!(
        output.status.success(),
        "jose refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.matches(&format!("\"client_id\":\"{id}\"")).count(),
        2,
        "{stdout}"
    );

    // A client token is not a user's: iam-api's own user endpoints refuse it.
    assert_eq!(api.me_status(&token).await, 401);
    // Metrics count the grant.
    let metrics = api.get("/metrics", None).await.text().await.expect("text");
    assert!(
        metrics.contains("grant=\"client_credentials\""),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("grant"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn token_endpoint_errors_carry_their_oauth_code() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    create_role(&api, &admin, "billing", &["orders:read", "orders:write"]).await;
    let (id, secret) = new_client(&api, &admin, "billing worker", "billing").await;

    // Scope beyond the role, in every spelling that might pass for it.
    for scope in [
        "orders:delete",
        "orders:read iam:users:write",
        "orders",
        "ORDERS:READ",
        "orders:*",
    ] {
        expect_oauth_error(
            basic_grant(&api, &id, &secret, Some(scope)).await,
            400,
            "invalid_scope",
        )
        .await;
    }
    // Failed client authentication: one answer for a wrong secret, an unknown or malformed
    // client, and a half-given credential.
    for (client, key) in [
        (id.as_str(), "wrong-secret"),
        ("svc-nosuchclient000000", secret.as_str()),
        ("x", secret.as_str()),
        (id.as_str(), ""),
    ] {
        expect_oauth_error(
            basic_grant(&api, client, key, None).await,
            401,
            "invalid_client",
        )
        .await;
    }
    let grant = ("grant_type", "client_credentials");
    for fields in [
        vec![grant],
        vec![grant, ("client_id", id.as_str())],
        vec![grant, ("client_secret", secret.as_str())],
    ] {
        expect_oauth_error(form_grant(&api, &fields).await, 401, "invalid_client").await;
    }
    // Both ways at once is a bad request, even when both are right.
    let both = api
        .client
        .post(api.url("/api/v1/tokens"))
        .basic_auth(&id, Some(&secret))
        .form(&[grant, ("client_id", &id), ("client_secret", &secret)])
        .send()
        .await
        .expect("send");
    expect_oauth_error(both, 400, "invalid_request").await;

    // The other grants' errors carry their codes too.
    expect_oauth_error(
        form_grant(&api, &[("grant_type", "implicit")]).await,
        400,
        "unsupported_grant_type",
    )
    .await;
    expect_oauth_error(
        api.login_attempt("admin@example.com", "wrong-password")
            .await,
        401,
        "invalid_grant",
    )
    .await;
    expect_oauth_error(
        api.refresh("not-a-refresh-token").await,
        401,
        "invalid_grant",
    )
    .await;
    expect_oauth_error(
        form_grant(&api, &[("grant_type", "password")]).await,
        400,
        "invalid_request",
    )
    .await;
    expect_oauth_error(
        form_grant(
            &api,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "password"),
            ],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;

    // Over a raw socket: two Authorization headers, and malformed Basic values.
    let authority = raw_http::authority(&api.base_url).to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let body = "grant_type=client_credentials";
    let form = "Content-Type: application/x-www-form-urlencoded";
    let two = raw_http::request(
        "POST",
        "/api/v1/tokens",
        &[
            form,
            &format!("Authorization: Basic {basic}"),
            &format!("authorization: Basic {basic}"),
        ],
        body,
    );
    assert_eq!(raw_http::exchange(&authority, &two).await.status, 400);
    for value in [
        "Basic !!!",
        "Basic",
        "Basic Og==",
        &format!("Basic {}", &basic[..basic.len() - 4]),
    ] {
        let request = raw_http::request(
            "POST",
            "/api/v1/tokens",
            &[form, &format!("Authorization: {value}")],
            body,
        );
        let answer = raw_http::exchange(&authority, &request).await;
        assert_eq!(answer.status, 401, "{value}");
    }
    // The scheme's case does not matter; the secret stays exact.
    let request = raw_http::request(
        "POST",
        "/api/v1/tokens",
        &[form, &format!("Authorization: bASIC {basic}")],
        body,
    );
    assert_eq!(raw_http::exchange(&authority, &request).await.status, 200);
}

#[tokio::test]
async fn failed_client_authentications_are_throttled_per_client() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, secret) = new_client(&api, &admin, "noisy", "user").await;
    let (other, other_secret) = new_client(&api, &admin, "quiet", "user").await;
    // The first failures are free; then the client id is throttled, the right secret too.
    for _ in 0..5 {
        expect_oauth_error(
            basic_grant(&api, &id, "wrong", None).await,
            401,
            "invalid_client",
        )
        .await;
    }
    let throttled = eventually_throttled(&api, &id, "wrong").await;
    assert!(throttled.headers().get("retry-after").is_some());
    expect_oauth_error(throttled, 429, "invalid_client").await;
    expect_oauth_error(
        basic_grant(&api, &id, &secret, None).await,
        429,
        "invalid_client",
    )
    .await;
    // Another client is not affected.
    client_token(&api, &other, &other_secret).await;
    // Each failure is in the audit trail, without the secret.
    let audit: Value = api
        .get(
            "/api/v1/audit-events?type=client.authentication",
            Some(&admin),
        )
        .await
        .json()
        .await
        .expect("json");
    let items = audit["items"].as_array().expect("items");
    assert!(items.len() >= 5, "{audit}");
    assert!(items.iter().all(|event| event["outcome"] == "failure"));
    assert_eq!(items[0]["subject"], id.as_str());
    assert_eq!(items[0]["detail"]["reason"], "wrong_secret");
}

/// The next failed attempt for `id`, once the throttle answers (at most a few more tries).
async fn eventually_throttled(api: &ServiceProcess, id: &str, secret: &str) -> reqwest::Response {
    for _ in 0..3 {
        let response = basic_grant(api, id, secret, None).await;
        if response.status() == 429 {
            return response;
        }
    }
    panic!("client {id} is not throttled after 8 failures");
}

#[tokio::test]
async fn a_disabled_or_deleted_clients_tokens_are_refused_at_a_running_sidecar() {
    let stack = polling_stack().await;
    let admin = stack.api.admin_token().await;
    let api = &stack.api;
    // The stack's role `clerk` holds orders:write, which the sidecar's rules require.
    let (id, secret) = new_client(api, &admin, "order bot", "clerk").await;
    let token = client_token(api, &id, &secret).await;
    let response = stack
        .sidecar
        .client
        .post(stack.sidecar.url("/orders/1"))
        .bearer_auth(&token)
        .header("x-user-email", "spoofed@example.com")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen = stack
        .upstream
        .requests()
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(seen.header("x-user-id"), Some(id.as_str()));
    assert_eq!(seen.header("x-client-id"), Some(id.as_str()));
    assert_eq!(seen.header("x-user-role"), Some("clerk"));
    assert_eq!(seen.header("x-user-permissions"), Some("orders:write"));
    assert_eq!(seen.header("x-user-email"), None, "a client has no email");
    let disabled: Value = patch_client(api, &admin, &id, true)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(disabled["disabled"], true);
    eventually(
        PROPAGATION_LIMIT,
        "the sidecar refuses the disabled client's token",
        || async { stack.get("/x", Some(&token)).await.status() == 401 },
    )
    .await;
    expect_oauth_error(
        basic_grant(api, &id, &secret, None).await,
        401,
        "invalid_client",
    )
    .await;
    let enabled: Value = patch_client(api, &admin, &id, false)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(enabled["disabled"], false);
    let fresh = client_token(api, &id, &secret).await;
    eventually(
        PROPAGATION_LIMIT,
        "a fresh token of the enabled client passes",
        || async { stack.get("/x", Some(&fresh)).await.status() == 200 },
    )
    .await;
    assert_eq!(
        stack.get("/x", Some(&token)).await.status(),
        401,
        "the old one stays refused"
    );

    let deleted = api
        .delete(&format!("/api/v1/clients/{id}"), Some(&admin))
        .await;
    assert_eq!(deleted.status(), 204);
    eventually(
        PROPAGATION_LIMIT,
        "the sidecar refuses the deleted client's token",
        || async { stack.get("/x", Some(&fresh)).await.status() == 401 },
    )
    .await;
    expect_oauth_error(
        basic_grant(api, &id, &secret, None).await,
        401,
        "invalid_client",
    )
    .await;
    expect_problem(
        api.get(&format!("/api/v1/clients/{id}"), Some(&admin))
            .await,
        404,
    )
    .await;
    let feed: Value = stack
        .jwks
        .get("/api/v1/revocations", None)
        .await
        .json()
        .await
        .expect("feed");
    assert!(feed["subjects"].get(&id).is_some(), "{feed}");
}
