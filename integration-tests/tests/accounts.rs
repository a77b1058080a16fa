//! What an admin does to an account (contract §3): disable and enable it, delete it, set its
//! password, find it by email. Each revoking change ends the account's sessions at the api at
//! once and at a running sidecar within the revocation feed's interval; the last enabled
//! admin stays, even against concurrent requests; nobody acts on an account that holds more
//! than they do.

use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, expect_problem, string};
use integration_tests::sidecar::{CLERK_EMAIL, polling_stack};
use reqwest::Method;
use serde_json::{Value, json};

const CLERK_PASSWORD: &str = "user-password-1";

async fn patch_disabled(api: &ServiceProcess, token: &str, id: &str, disabled: bool) -> u16 {
    let path = format!("/api/v1/users/{id}");
    api.send_status(
        Method::PATCH,
        &path,
        token,
        &json!({ "disabled": disabled }),
    )
    .await
}

async fn delete_user(api: &ServiceProcess, token: &str, id: &str) -> u16 {
    let path = format!("/api/v1/users/{id}");
    api.delete(&path, Some(token)).await.status().as_u16()
}

async fn set_password(api: &ServiceProcess, token: &str, id: &str, password: &str) -> u16 {
    let path = format!("/api/v1/users/{id}/password");
    api.send_status(Method::PUT, &path, token, &json!({ "password": password }))
        .await
}

/// The answer to a login with a wrong password, without its (per-request) instance.
async fn wrong_password_problem(api: &ServiceProcess, email: &str) -> Value {
    let mut problem = expect_problem(api.login_attempt(email, "not-the-password").await, 401).await;
    problem.as_object_mut().expect("object").remove("instance");
    problem
}

#[tokio::test]
async fn disabling_a_user_ends_its_sessions_everywhere_and_refuses_its_logins_until_enabled() {
    let stack = polling_stack().await;
    let admin = stack.api.admin_token().await;
    let pair = stack.api.login(CLERK_EMAIL, CLERK_PASSWORD).await;
    assert_eq!(
        stack.get("/x", Some(&access_token(&pair))).await.status(),
        200
    );

    let response = stack
        .api
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{}", stack.clerk_id),
            Some(&admin),
            &json!({"disabled": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["disabled"], true);
    assert_eq!(user["email"], CLERK_EMAIL);
    stack.assert_session_ended(&pair).await;

    // The right password gets exactly the answer a wrong one gets.
    let wrong = wrong_password_problem(&stack.api, CLERK_EMAIL).await;
    let mut right = expect_problem(
        stack.api.login_attempt(CLERK_EMAIL, CLERK_PASSWORD).await,
        401,
    )
    .await;
    right.as_object_mut().expect("object").remove("instance");
    assert_eq!(right, wrong);
    let shown: Value = stack
        .api
        .get(&format!("/api/v1/users/{}", stack.clerk_id), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["disabled"], true);
    // Disabling again changes nothing and is no error.
    assert_eq!(
        patch_disabled(&stack.api, &admin, &stack.clerk_id, true).await,
        200
    );

    assert_eq!(
        patch_disabled(&stack.api, &admin, &stack.clerk_id, false).await,
        200
    );
    let again = access_token(&stack.api.login(CLERK_EMAIL, CLERK_PASSWORD).await);
    assert_eq!(stack.api.me_status(&again).await, 200);
    assert_eq!(stack.get("/x", Some(&again)).await.status(), 200);
}

#[tokio::test]
async fn account_changes_refuse_bad_input_with_problems() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, user_token) = api.user_with_token("someone@example.com").await;
    let path = format!("/api/v1/users/{id}");
    for (body, status) in [
        (json!({"disabled": "yes"}), 422),
        (json!({"disabled": 1}), 422),
        (json!({}), 422),
        (json!({"disabled": null}), 422),
        (json!([true]), 422),
    ] {
        let response = api
            .send_json(Method::PATCH, &path, Some(&admin), &body)
            .await;
        expect_problem(response, status).await;
    }
    let unknown = "00000000-0000-7000-8000-000000000000";
    for target in [unknown, "not-a-uuid"] {
        assert_eq!(
            patch_disabled(&api, &admin, target, true).await,
            404,
            "{target}"
        );
        assert_eq!(delete_user(&api, &admin, target).await, 404, "{target}");
        assert_eq!(
            set_password(&api, &admin, target, "long-enough-1").await,
            404,
            "{target}"
        );
    }
    for password in ["short", &"x".repeat(129)] {
        let response = api
            .send_json(
                Method::PUT,
                &format!("{path}/password"),
                Some(&admin),
                &json!({ "password": password }),
            )
            .await;
        let problem = expect_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], "password");
    }
    // Without iam:users:write, or without a token at all.
    assert_eq!(patch_disabled(&api, &user_token, &id, true).await, 403);
    assert_eq!(delete_user(&api, &user_token, &id).await, 403);
    assert_eq!(
        set_password(&api, &user_token, &id, "long-enough-1").await,
        403
    );
    let anonymous = api
        .client
        .patch(api.url(&path))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("patch");
    expect_problem(anonymous, 401).await;
}

#[tokio::test]
async fn deleting_a_user_ends_its_tokens_everywhere_and_frees_its_email() {
    let stack = polling_stack().await;
    let admin = stack.api.admin_token().await;
    let pair = stack.api.login(CLERK_EMAIL, CLERK_PASSWORD).await;

    assert_eq!(delete_user(&stack.api, &admin, &stack.clerk_id).await, 204);
    stack.assert_session_ended(&pair).await;
    let path = format!("/api/v1/users/{}", stack.clerk_id);
    expect_problem(stack.api.get(&path, Some(&admin)).await, 404).await;
    assert_eq!(delete_user(&stack.api, &admin, &stack.clerk_id).await, 404);
    assert_eq!(
        stack
            .api
            .login_attempt(CLERK_EMAIL, CLERK_PASSWORD)
            .await
            .status(),
        401
    );
    // The feed keeps the deleted account's revocation for as long as its tokens could live.
    let feed: Value = reqwest::get(stack.jwks.url("/api/v1/revocations"))
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    assert!(feed["subjects"][&stack.clerk_id].is_i64(), "{feed}");

    let again = stack.api.register(CLERK_EMAIL, "another-password-1").await;
    assert_ne!(string(&again["id"]), stack.clerk_id);
    let token = access_token(&stack.api.login(CLERK_EMAIL, "another-password-1").await);
    assert_eq!(stack.api.me_status(&token).await, 200);
    assert_eq!(stack.get("/x", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn an_admin_setting_a_password_ends_every_session_of_the_account() {
    let stack = polling_stack().await;
    let admin = stack.api.admin_token().await;
    let pair = stack.api.login(CLERK_EMAIL, CLERK_PASSWORD).await;

    assert_eq!(
        set_password(&stack.api, &admin, &stack.clerk_id, "set-by-admin-1").await,
        204
    );
    stack.assert_session_ended(&pair).await;
    assert_eq!(
        stack
            .api
            .login_attempt(CLERK_EMAIL, CLERK_PASSWORD)
            .await
            .status(),
        401
    );
    let token = access_token(&stack.api.login(CLERK_EMAIL, "set-by-admin-1").await);
    assert_eq!(stack.api.me_status(&token).await, 200);
}

#[tokio::test]
async fn users_are_found_by_their_normalised_email() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, user_token) = api.user_with_token("found@example.com").await;
    let page = |query: &'static str| {
        let mut url = reqwest::Url::parse(&api.url("/api/v1/users")).expect("url");
        url.query_pairs_mut().append_pair("email", query);
        api.client.get(url).bearer_auth(&admin).send()
    };
    for query in ["found@example.com", "  Found@EXAMPLE.com "] {
        let body: Value = page(query).await.expect("list").json().await.expect("json");
        assert_eq!(body["items"].as_array().expect("items").len(), 1, "{query}");
        assert_eq!(body["items"][0]["id"], id.as_str());
        assert_eq!(body["next"], Value::Null);
    }
    let none: Value = page("nobody@example.com")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(none, json!({"items": [], "next": null}));
    let problem = expect_problem(page("not an email").await.expect("list"), 422).await;
    assert_eq!(problem["errors"][0]["field"], "email");
    let forbidden = api
        .get("/api/v1/users?email=found@example.com", Some(&user_token))
        .await;
    expect_problem(forbidden, 403).await;
    expect_problem(
        api.get("/api/v1/users?email=found@example.com", None).await,
        401,
    )
    .await;
}
