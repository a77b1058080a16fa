//! Signing out everywhere (`DELETE /me/sessions`) and revoking one access token
//! (`POST /tokens/revoke`): refused at the api at once and at a running sidecar within the
//! revocation feed's interval; concurrent refreshes leave no usable session behind.

use std::time::Duration;

use integration_tests::api::{ServiceProcess, access_token, expect_problem, string};
use integration_tests::eventually;
use integration_tests::sidecar::{CLERK_EMAIL, Stack, stack_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How often the sidecars in these tests poll the feed.
const POLL_SECONDS: u64 = 1;
/// The poll interval plus a second (the contract), plus slack for a loaded CI machine.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(POLL_SECONDS + 1 + 3);

async fn polling_stack() -> Stack {
    stack_with(|builder| builder.env("REVOCATION_REFRESH_INTERVAL", POLL_SECONDS.to_string())).await
}

async fn me_status(api: &ServiceProcess, token: &str) -> StatusCode {
    api.client
        .get(api.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .status()
}

async fn refresh(api: &ServiceProcess, refresh_token: &str) -> reqwest::Response {
    api.post_json(
        "/api/v1/tokens",
        None,
        &json!({"grant_type": "refresh_token", "refresh_token": refresh_token}),
    )
    .await
}

async fn sign_out_everywhere(api: &ServiceProcess, token: &str) -> StatusCode {
    api.client
        .delete(api.url("/api/v1/me/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sign out")
        .status()
}

/// The claims of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json")
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
        let token = access_token(pair);
        assert_eq!(me_status(&stack.api, &token).await, 401, "api, at once");
        eventually(
            PROPAGATION_LIMIT,
            "the sidecar refuses the token",
            || async { stack.get("/x", Some(&token)).await.status() == 401 },
        )
        .await;
        let refused = refresh(&stack.api, &string(&pair["refresh_token"])).await;
        expect_problem(refused, 401).await;
    }
    // Signing in again works everywhere.
    let again = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    assert_eq!(me_status(&stack.api, &again).await, 200);
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
    assert_eq!(me_status(&stack.api, &revoked).await, 401, "api, at once");
    eventually(
        PROPAGATION_LIMIT,
        "the sidecar refuses the token",
        || async { stack.get("/x", Some(&revoked)).await.status() == 401 },
    )
    .await;
    assert_eq!(me_status(&stack.api, &kept).await, 200);
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
        async move { refresh(api, &refresh_token).await }
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
        expect_problem(refresh(&stack.api, refresh_token).await, 401).await;
    }
    for token in &access_tokens {
        assert_eq!(
            me_status(&stack.api, token).await,
            401,
            "{}",
            claims_of(token)
        );
    }
}
