//! Signing out everywhere (`DELETE /me/sessions`) and revoking one access token
//! (`POST /tokens/revoke`): refused at the api at once and at a running sidecar within the
//! revocation feed's interval; concurrent refreshes leave no usable session behind.

use integration_tests::api::{ServiceProcess, access_token, claims_of, expect_problem, string};
use integration_tests::eventually;
use integration_tests::sidecar::{CLERK_EMAIL, PROPAGATION_LIMIT, polling_stack};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn sign_out_everywhere(api: &ServiceProcess, token: &str) -> StatusCode {
    api.delete("/api/v1/me/sessions", Some(token))
        .await
        .status()
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_at_the_api_at_once_and_at_the_sidecar() {
    let stack = polling_stack().await;
    let first = stack.api.login(CLERK_EMAIL, "user-password-1").await;
    let second = stack.api.login(CLERK_EMAIL, "user-password-1").await;
    for pair in [&first, &second] {
        assert_eq!(
            stack.get("/x", Some(&access_token(pair))).await.status(),
            200
        );
    }
    assert_eq!(
        stack
            .api
            .client
            .delete(stack.api.url("/api/v1/me/sessions"))
            .send()
            .await
            .expect("no token")
            .status(),
        401
    );

    assert_eq!(
        sign_out_everywhere(&stack.api, &access_token(&first)).await,
        204
    );
    for pair in [&first, &second] {
        stack.assert_session_ended(pair).await;
    }
    // Signing in again works everywhere.
    let again = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    assert_eq!(stack.api.me_status(&again).await, 200);
    assert_eq!(stack.get("/x", Some(&again)).await.status(), 200);
}

#[tokio::test]
async fn revoking_an_access_token_refuses_that_token_only() {
    let stack = polling_stack().await;
    let revoked = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    let kept = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    let response = stack
        .api
        .post_json(
            "/api/v1/tokens/revoke",
            None,
            &json!({"token": revoked, "token_type_hint": "access_token"}),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(stack.api.me_status(&revoked).await, 401, "api, at once");
    eventually(
        PROPAGATION_LIMIT,
        "the sidecar refuses the token",
        || async { stack.get("/x", Some(&revoked)).await.status() == 401 },
    )
    .await;
    assert_eq!(stack.api.me_status(&kept).await, 200);
    assert_eq!(stack.get("/x", Some(&kept)).await.status(), 200);
    let feed: Value = reqwest::get(stack.jwks.url("/api/v1/revocations"))
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let claims = claims_of(&revoked);
    assert_eq!(
        feed["tokens"][claims["jti"].as_str().expect("jti")],
        claims["exp"]
    );

    // A made-up token in the shape of a JWT, and the same form-encoded: 204, nothing listed.
    let forged = format!("{}.e30.c2ln", revoked.split('.').next().expect("header"));
    for body in [
        stack
            .api
            .post_json("/api/v1/tokens/revoke", None, &json!({"token": forged}))
            .await,
        stack
            .api
            .client
            .post(stack.api.url("/api/v1/tokens/revoke"))
            .form(&[
                ("token", forged.as_str()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .expect("form"),
    ] {
        assert_eq!(body.status(), 204);
    }
    let feed: Value = reqwest::get(stack.jwks.url("/api/v1/revocations"))
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    assert_eq!(
        feed["tokens"].as_object().expect("tokens").len(),
        1,
        "{feed}"
    );
}

#[tokio::test]
async fn a_sign_out_racing_refreshes_leaves_no_usable_session() {
    let stack = polling_stack().await;
    let mut pairs = Vec::new();
    for _ in 0..8 {
        pairs.push(stack.api.login(CLERK_EMAIL, "user-password-1").await);
    }
    let signer = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    let refreshes = pairs.iter().map(|pair| {
        let api = &stack.api;
        let refresh_token = string(&pair["refresh_token"]);
        async move { api.refresh(&refresh_token).await }
    });
    let (responses, status) = tokio::join!(
        futures::future::join_all(refreshes),
        sign_out_everywhere(&stack.api, &signer)
    );
    assert_eq!(status, 204);
    let mut refresh_tokens: Vec<String> = pairs
        .iter()
        .map(|pair| string(&pair["refresh_token"]))
        .collect();
    let mut access_tokens = vec![signer];
    for response in responses {
        if response.status() == 200 {
            let pair: Value = response.json().await.expect("pair");
            refresh_tokens.push(string(&pair["refresh_token"]));
            access_tokens.push(access_token(&pair));
        } else {
            expect_problem(response, 401).await;
        }
    }
    for refresh_token in &refresh_tokens {
        expect_problem(stack.api.refresh(refresh_token).await, 401).await;
    }
    for token in &access_tokens {
        assert_eq!(
            stack.api.me_status(token).await,
            401,
            "{}",
            claims_of(token)
        );
    }
}

#[tokio::test]
async fn hostile_revocation_requests_get_clear_answers_and_list_nothing() {
    let db = integration_tests::TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let form = |body: String| {
        let api = &api;
        async move {
            api.client
                .post(api.url("/api/v1/tokens/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("revoke")
        }
    };
    // A repeated parameter is refused rather than one of the two being picked.
    expect_problem(form("token=a.b.c&token=d.e.f".to_owned()).await, 400).await;
    expect_problem(form("token=a.b.c&TOKEN=x&token=".to_owned()).await, 400).await;
    // A token in the shape of a JWT far over the verifier's 16 KiB cap, and one with an
    // empty signature: 204 as for any unknown token, and nothing is stored.
    let oversized = format!("{}.{}.{}", "a".repeat(20_000), "b".repeat(100), "c");
    for token in [oversized.as_str(), "e30.e30.", "..", "."] {
        let response = api
            .post_json("/api/v1/tokens/revoke", None, &json!({ "token": token }))
            .await;
        assert_eq!(response.status(), 204, "{}", &token[..token.len().min(20)]);
    }
    // A body over 64 KiB is cut off with 413.
    let huge = json!({ "token": "x".repeat(70_000) });
    expect_problem(
        api.post_json("/api/v1/tokens/revoke", None, &huge).await,
        413,
    )
    .await;
    let pool = db.pool().await;
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM revoked_access_tokens")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(listed, 0);
}
