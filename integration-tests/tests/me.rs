//! `GET /api/v1/me` and Bearer authentication.

use integration_tests::api::{access_token, expect_problem};
use integration_tests::{ServiceProcess, TestDatabase};
use serde_json::{Value, json};

#[tokio::test]
async fn me_returns_the_caller_with_its_permissions() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (id, token) = api.user_with_token("ada@example.com").await;
    let response = api.get("/api/v1/me", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.expect("json");
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["role"], "user");
    assert_eq!(me["permissions"], json!([]));

    let admin: Value = api
        .get("/api/v1/me", Some(&api.admin_token().await))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(admin["role"], "admin");
    assert_eq!(
        admin["permissions"],
        json!([
            "iam:audit:read",
            "iam:clients:read",
            "iam:clients:write",
            "iam:roles:read",
            "iam:roles:write",
            "iam:users:read",
            "iam:users:write"
        ])
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_bearer_challenge() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (_, token) = api.user_with_token("ada@example.com").await;

    let missing = api.get("/api/v1/me", None).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    expect_problem(missing, 401).await;

    let mut tampered = token.clone();
    tampered.insert(tampered.len() / 2, 'x');
    for bad in ["garbage", "a.b.c", tampered.as_str()] {
        let response = api.get("/api/v1/me", Some(bad)).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        expect_problem(response, 401).await;
    }
    let basic = api
        .client
        .get(api.url("/api/v1/me"))
        .basic_auth("ada@example.com", Some("user-password-1"))
        .send()
        .await
        .expect("send");
    expect_problem(basic, 401).await;
}

#[tokio::test]
async fn an_expired_token_is_refused_after_the_leeway() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("ACCESS_TOKEN_TTL", "1")
        .env("JWT_LEEWAY", "0")
        .start()
        .await;
    let (_, token) = api.user_with_token("ada@example.com").await;
    let issued = std::time::Instant::now();
    assert_eq!(api.get("/api/v1/me", Some(&token)).await.status(), 200);
    // Polled, with a deadline well past the 1 s lifetime (whole seconds, so up to 2 s).
    let refused = integration_tests::eventually_some(
        std::time::Duration::from_secs(5),
        "the token expires",
        || async {
            let response = api.get("/api/v1/me", Some(&token)).await;
            (response.status() == 401).then_some(response)
        },
    )
    .await;
    assert!(issued.elapsed() >= std::time::Duration::from_millis(900));
    expect_problem(refused, 401).await;
}

#[tokio::test]
async fn a_role_change_revokes_the_old_token_and_shows_on_me() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, token) = api.user_with_token("ada@example.com").await;
    let role = json!({"name": "editor", "permissions": ["articles:write"]});
    assert_eq!(
        api.post_json("/api/v1/roles", Some(&admin), &role)
            .await
            .status(),
        201
    );
    let assigned = api.set_role(&admin, &id, "editor").await;
    assert_eq!(assigned.status(), 200);
    // The old token names role `user`: it is revoked by the change (contract §3).
    expect_problem(api.get("/api/v1/me", Some(&token)).await, 401).await;
    // A new token carries the new role, and /me reads it from the database.
    let pair = api.login("ada@example.com", "user-password-1").await;
    let me: Value = api
        .get("/api/v1/me", Some(&access_token(&pair)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "editor");
    assert_eq!(me["permissions"], json!(["articles:write"]));
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_refused() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (id, token) = api.user_with_token("ada@example.com").await;
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&id)
        .execute(&db.pool().await)
        .await
        .expect("delete");
    expect_problem(api.get("/api/v1/me", Some(&token)).await, 401).await;
}
