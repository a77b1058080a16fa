//! The token endpoint: password grant, refresh rotation with reuse detection, revocation,
//! throttling, and the access token's format.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use iam_core::{KeySet, PublicJwks, VerificationRules, verify_access_token};
use integration_tests::api::{access_token, claims_of, expect_problem, string};
use integration_tests::{ServiceProcess, TestDatabase};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

async fn api_with_user(db: &TestDatabase) -> ServiceProcess {
    let api = ServiceProcess::start(db).await;
    api.register("ada@example.com", PASSWORD).await;
    api
}

async fn published_keys(db: &TestDatabase) -> KeySet {
    let keys: Vec<sqlx::types::Json<iam_core::PublicJwk>> =
        sqlx::query_scalar("SELECT public_jwk FROM signing_keys")
            .fetch_all(&db.pool().await)
            .await
            .expect("keys");
    KeySet::from_jwks(&PublicJwks {
        keys: keys.into_iter().map(|key| key.0).collect(),
    })
    .expect("key set")
}

#[tokio::test]
async fn password_login_returns_a_token_pair_that_is_never_cached() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let response = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": "ADA@example.com ", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let pair: Value = response.json().await.expect("json");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 86_400);
    assert_eq!(pair["refresh_expires_in"], 432_000);
    let refresh_token = string(&pair["refresh_token"]);
    assert!(
        URL_SAFE_NO_PAD
            .decode(&refresh_token)
            .expect("base64url")
            .len()
            >= 32
    );
    // Only a hash of the refresh token is stored.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash = $1")
            .bind(refresh_token.as_bytes())
            .fetch_one(&db.pool().await)
            .await
            .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn the_access_token_follows_rfc_9068_and_verifies_with_the_published_key() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let pair = api.login("ada@example.com", PASSWORD).await;
    let token = access_token(&pair);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let rules = VerificationRules {
        issuer: "iam".into(),
        audience: "iam".into(),
        leeway_seconds: 30,
    };
    let claims = verify_access_token(
        &token,
        &published_keys(&db).await,
        &rules,
        &iam_core::revocation::Revocations::NONE,
        chrono::Utc::now().timestamp(),
    )
    .expect("verifies");
    assert_eq!(claims.email.as_deref(), Some("ada@example.com"));
    // RFC 9068 §2.2: every access token names its client; the password grant's is
    // JWT_DEFAULT_CLIENT_ID.
    assert_eq!(claims.client_id.as_deref(), Some("iam"));
    assert_eq!(claims.role, "user");
    assert!(claims.permissions.is_empty());
    assert_eq!(claims.exp - claims.iat, 86_400);
    assert_eq!(claims.nbf, claims.iat);
    assert!(!claims.jti.is_empty());
    let me = api
        .get("/api/v1/me", Some(&token))
        .await
        .json::<Value>()
        .await
        .expect("me");
    assert_eq!(claims.sub, string(&me["id"]));
}

#[tokio::test]
async fn issuer_audience_and_ttl_come_from_the_environment() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWT_ISSUER", "https://id.example.com")
        .env("JWT_AUDIENCE", "orders")
        .env("ACCESS_TOKEN_TTL", "600")
        .env("REFRESH_TOKEN_TTL", "3600")
        .env("JWT_DEFAULT_CLIENT_ID", "web-app")
        .start()
        .await;
    api.register("ada@example.com", PASSWORD).await;
    let pair = api.login("ada@example.com", PASSWORD).await;
    assert_eq!(pair["expires_in"], 600);
    assert_eq!(pair["refresh_expires_in"], 3600);
    let rules = VerificationRules {
        issuer: "https://id.example.com".into(),
        audience: "orders".into(),
        leeway_seconds: 0,
    };
    let claims = verify_access_token(
        &access_token(&pair),
        &published_keys(&db).await,
        &rules,
        &iam_core::revocation::Revocations::NONE,
        chrono::Utc::now().timestamp(),
    )
    .expect("verifies");
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(claims.client_id.as_deref(), Some("web-app"));
    let refreshed: Value = api
        .refresh(&string(&pair["refresh_token"]))
        .await
        .json()
        .await
        .expect("pair");
    assert_eq!(claims_of(&access_token(&refreshed))["client_id"], "web-app");
}

#[tokio::test]
async fn oauth_form_login_works_like_json() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let response = api
        .client
        .post(api.url("/api/v1/tokens"))
        .form(&[
            ("grant_type", "password"),
            ("username", "ada@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.expect("json");
    let refreshed = api
        .client
        .post(api.url("/api/v1/tokens"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", pair["refresh_token"].as_str().expect("rt")),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let wrong = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    let wrong = expect_problem(wrong, 401).await;
    let unknown = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = expect_problem(unknown, 401).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["detail"], "invalid credentials");
}

#[tokio::test]
async fn bad_grants_get_400() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    for (body, error) in [
        (json!({"grant_type": "implicit"}), "unsupported_grant_type"),
        (json!({"grant_type": "refresh_token"}), "invalid_request"),
        (json!({"email": "ada@example.com"}), "invalid_request"),
        (
            json!({"grant_type": "password", "password": PASSWORD}),
            "invalid_request",
        ),
    ] {
        let response = api.post_json("/api/v1/tokens", None, &body).await;
        let problem = expect_problem(response, 400).await;
        assert_eq!(problem["error"], error, "{body}");
    }
    // Client credentials without a client are a failed client authentication.
    let response = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"grant_type": "client_credentials"}),
        )
        .await;
    assert_eq!(
        expect_problem(response, 401).await["error"],
        "invalid_client"
    );
    let response = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": 1, "password": PASSWORD}),
        )
        .await;
    expect_problem(response, 422).await;
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let first = api.login("ada@example.com", PASSWORD).await;
    let response = api
        .refresh(first["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: Value = response.json().await.expect("json");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let me = api.get("/api/v1/me", Some(&access_token(&second))).await;
    assert_eq!(me.status(), 200);
    // The new one works once more.
    let third = api
        .refresh(second["refresh_token"].as_str().expect("rt"))
        .await;
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let first = api.login("ada@example.com", PASSWORD).await;
    let other_login = api.login("ada@example.com", PASSWORD).await;
    let first_token = string(&first["refresh_token"]);
    let second: Value = api.refresh(&first_token).await.json().await.expect("json");
    let second_token = string(&second["refresh_token"]);

    // Replaying the retired token is refused and revokes every descendant.
    expect_problem(api.refresh(&first_token).await, 401).await;
    expect_problem(api.refresh(&second_token).await, 401).await;
    // Another login is another family and keeps working.
    assert_eq!(
        api.refresh(other_login["refresh_token"].as_str().expect("rt"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_succeed_at_most_once() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let pair = api.login("ada@example.com", PASSWORD).await;
    let token = string(&pair["refresh_token"]);
    let attempts = (0..8).map(|_| api.refresh(&token));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert!(
        statuses.iter().filter(|&&status| status == 200).count() <= 1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|&status| status == 200 || status == 401),
        "{statuses:?}"
    );
    // The replays revoked the family, so no token of it works any more.
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL",
    )
    .fetch_one(&db.pool().await)
    .await
    .expect("count");
    assert_eq!(live, 0);
}

#[tokio::test]
async fn expired_and_unknown_refresh_tokens_get_401() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("REFRESH_TOKEN_TTL", "1")
        .start()
        .await;
    api.register("ada@example.com", PASSWORD).await;
    let pair = api.login("ada@example.com", PASSWORD).await;
    // Waiting for the clock, not for background work: a refresh attempt would rotate the
    // token, so it cannot be polled. Past the 1 s lifetime the token is expired for good.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    expect_problem(
        api.refresh(pair["refresh_token"].as_str().expect("rt"))
            .await,
        401,
    )
    .await;
    expect_problem(api.refresh("not-a-token").await, 401).await;
    expect_problem(api.refresh(&"x".repeat(4096)).await, 401).await;
}

#[tokio::test]
async fn revocation_ends_the_family_and_answers_204_for_anything() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let pair = api.login("ada@example.com", PASSWORD).await;
    let token = string(&pair["refresh_token"]);
    let second: Value = api.refresh(&token).await.json().await.expect("json");
    let response = api
        .post_json(
            "/api/v1/tokens/revoke",
            None,
            &json!({"token": second["refresh_token"]}),
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        api.refresh(second["refresh_token"].as_str().expect("rt"))
            .await,
        401,
    )
    .await;

    let unknown = api
        .client
        .post(api.url("/api/v1/tokens/revoke"))
        .form(&[("token", "never-issued")])
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), 204);
    let missing = api
        .post_json("/api/v1/tokens/revoke", None, &json!({}))
        .await;
    expect_problem(missing, 400).await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after_and_success_resets() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let wrong = json!({"email": "ada@example.com", "password": "wrong password"});
    for _ in 0..5 {
        let response = api.post_json("/api/v1/tokens", None, &wrong).await;
        assert_eq!(response.status(), 401);
    }
    // The sixth attempt, even with the right password, must wait.
    let right = json!({"email": "ada@example.com", "password": PASSWORD});
    let throttled = api.post_json("/api/v1/tokens", None, &right).await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    expect_problem(throttled, 429).await;
    // Unknown accounts are throttled alike, so 429 does not reveal which accounts exist.
    let ghost = json!({"email": "ghost@example.com", "password": "wrong password"});
    for _ in 0..5 {
        api.post_json("/api/v1/tokens", None, &ghost).await;
    }
    expect_problem(api.post_json("/api/v1/tokens", None, &ghost).await, 429).await;

    // Waiting as the server said to (a login attempt while throttled would be charged).
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(
        api.post_json("/api/v1/tokens", None, &right).await.status(),
        200
    );
    let remaining: i64 =
        sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE email = 'ada@example.com'")
            .fetch_one(&db.pool().await)
            .await
            .expect("count");
    assert_eq!(remaining, 0);
}

#[tokio::test]
async fn a_login_rehashes_a_password_stored_with_old_parameters() {
    let db = TestDatabase::create().await;
    let api = api_with_user(&db).await;
    let pool = db.pool().await;
    let before: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ada@example.com'")
            .fetch_one(&pool)
            .await
            .expect("hash");
    assert!(before.contains("m=1024,t=1,p=1"), "{before}");
    drop(api);
    let api = ServiceProcess::builder(&db)
        .env("PASSWORD_HASH_MEMORY_KIB", "2048")
        .env("PASSWORD_HASH_ITERATIONS", "2")
        .start()
        .await;
    api.login("ada@example.com", PASSWORD).await;
    let after: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ada@example.com'")
            .fetch_one(&pool)
            .await
            .expect("hash");
    assert!(after.contains("m=2048,t=2,p=1"), "{after}");
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after_instead_of_queueing() {
    let db = TestDatabase::create().await;
    // One slow hashing thread and room for one waiting job.
    let api = ServiceProcess::builder(&db)
        .env("WORKER_COUNT", "1")
        .env("PASSWORD_HASH_QUEUE", "1")
        .env("PASSWORD_HASH_MEMORY_KIB", "19456")
        .env("PASSWORD_HASH_ITERATIONS", "4")
        .start()
        .await;
    // One email each, so that the per-account throttle (five free failures) stays out of it.
    let bodies: Vec<Value> = (0..8)
        .map(|index| json!({"email": format!("nobody{index}@example.com"), "password": "some password"}))
        .collect();
    let logins = bodies
        .iter()
        .map(|body| api.post_json("/api/v1/tokens", None, body));
    let responses = futures::future::join_all(logins).await;
    let mut busy = 0;
    for response in responses {
        match response.status().as_u16() {
            401 => {}
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                expect_problem(response, 503).await;
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(busy >= 1, "no request was turned away");
}
