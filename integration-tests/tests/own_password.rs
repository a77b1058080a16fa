//! Changing one's own password (`PUT /me/password`): a fresh pair, every other session ended
//! everywhere, wrong guesses throttled like logins; and logins racing a password change or a
//! disabling never leave a session behind.

use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, expect_problem, string};
use integration_tests::sidecar::{CLERK_EMAIL, polling_stack};
use reqwest::Method;
use serde_json::{Value, json};

async fn change_password(
    api: &ServiceProcess,
    token: &str,
    current: &str,
    new: &str,
) -> reqwest::Response {
    api.send_json(
        Method::PUT,
        "/api/v1/me/password",
        Some(token),
        &json!({"current_password": current, "new_password": new}),
    )
    .await
}

#[tokio::test]
async fn changing_ones_password_returns_a_fresh_pair_and_ends_every_other_session() {
    let stack = polling_stack().await;
    let old_pairs = [
        stack.api.login(CLERK_EMAIL, "user-password-1").await,
        stack.api.login(CLERK_EMAIL, "user-password-1").await,
    ];
    let caller = access_token(&old_pairs[0]);
    let wrong = change_password(&stack.api, &caller, "not-my-password", "changed-password-2").await;
    let problem = expect_problem(wrong, 403).await;
    assert!(
        string(&problem["detail"]).contains("current_password"),
        "{problem}"
    );

    let response =
        change_password(&stack.api, &caller, "user-password-1", "changed-password-2").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .expect("cache-control"),
        "no-store"
    );
    let fresh: Value = response.json().await.expect("pair");
    assert_eq!(fresh["token_type"], "Bearer");

    for pair in &old_pairs {
        stack.assert_session_ended(pair).await;
    }
    let token = access_token(&fresh);
    assert_eq!(stack.api.me_status(&token).await, 200);
    assert_eq!(stack.get("/x", Some(&token)).await.status(), 200);
    // The fresh pair carries the account's role, and its refresh token works.
    assert_eq!(integration_tests::api::claims_of(&token)["role"], "clerk");
    let renewed = stack.api.refresh(&string(&fresh["refresh_token"])).await;
    assert_eq!(renewed.status(), 200);
    assert_eq!(
        stack
            .api
            .login_attempt(CLERK_EMAIL, "user-password-1")
            .await
            .status(),
        401
    );
    assert_eq!(
        stack
            .api
            .login_attempt(CLERK_EMAIL, "changed-password-2")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_password_change_refuses_bad_input_and_throttles_wrong_guesses() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (_, token) = api.user_with_token("guesser@example.com").await;
    for body in [
        json!({"current_password": "user-password-1"}),
        json!({"new_password": "long-enough-2"}),
        json!({"current_password": "user-password-1", "new_password": "short"}),
        json!({"current_password": 1, "new_password": "long-enough-2"}),
    ] {
        let response = api
            .send_json(Method::PUT, "/api/v1/me/password", Some(&token), &body)
            .await;
        expect_problem(response, 422).await;
    }
    let anonymous = api
        .client
        .put(api.url("/api/v1/me/password"))
        .json(&json!({"current_password": "user-password-1", "new_password": "long-enough-2"}))
        .send()
        .await
        .expect("put");
    expect_problem(anonymous, 401).await;

    // A stolen access token is no unthrottled oracle: wrong guesses count as failed logins of
    // the account, and once the throttle holds, the answer is 429 with Retry-After, for
    // logins too.
    for guess in 0..5 {
        let response = change_password(
            &api,
            &token,
            &format!("guess-number-{guess}"),
            "long-enough-2",
        )
        .await;
        expect_problem(response, 403).await;
    }
    let pool = db.pool().await;
    let failures: i32 = sqlx::query_scalar(
        "SELECT failure_count FROM login_failures WHERE email = 'guesser@example.com'",
    )
    .fetch_one(&pool)
    .await
    .expect("failure record");
    assert_eq!(failures, 5);
    // Ten failures owe 32 s: far longer than this test takes, whatever the machine's speed.
    sqlx::query("UPDATE login_failures SET failure_count = 10 WHERE email = 'guesser@example.com'")
        .execute(&pool)
        .await
        .expect("more failures");
    let throttled = change_password(&api, &token, "user-password-1", "long-enough-2").await;
    assert!(throttled.headers().contains_key("retry-after"));
    expect_problem(throttled, 429).await;
    assert_eq!(
        api.login_attempt("guesser@example.com", "user-password-1")
            .await
            .status(),
        429
    );
    // Nothing changed: the token still works.
    assert_eq!(api.me_status(&token).await, 200);
}

/// After a login and a revoking change raced, the login either failed or left a session
/// that is already refused: no pair obtained with the old state may still work.
async fn assert_no_surviving_session(api: &ServiceProcess, login: reqwest::Response, round: usize) {
    let status = login.status().as_u16();
    if status == 200 {
        let pair: Value = login.json().await.expect("pair");
        assert_eq!(
            api.me_status(&access_token(&pair)).await,
            401,
            "round {round}: the racing login's access token still works"
        );
        let refreshed = api.refresh(&string(&pair["refresh_token"])).await;
        assert_eq!(
            refreshed.status(),
            401,
            "round {round}: the racing login's refresh token still works"
        );
    } else {
        assert_eq!(status, 401, "round {round}");
    }
}

#[tokio::test]
async fn a_login_racing_a_password_change_leaves_no_session_with_the_old_password() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let email = "racer@example.com";
    api.register(email, "password-round-0").await;
    for round in 0..8 {
        let old = format!("password-round-{round}");
        let new = format!("password-round-{}", round + 1);
        let changer = access_token(&api.login(email, &old).await);
        let credentials = json!({"email": email, "password": old});
        let racing_login = api.post_json("/api/v1/tokens", None, &credentials);
        let (login, changed) =
            tokio::join!(racing_login, change_password(&api, &changer, &old, &new));
        assert_eq!(changed.status(), 200, "round {round}");
        assert_no_surviving_session(&api, login, round).await;
    }
}

#[tokio::test]
async fn a_login_racing_a_disabling_leaves_no_session() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let email = "disabled-racer@example.com";
    let user = api.register(email, "user-password-1").await;
    let path = format!("/api/v1/users/{}", string(&user["id"]));
    let pool = db.pool().await;
    for round in 0..8 {
        let enabled = api
            .send_json(
                Method::PATCH,
                &path,
                Some(&admin),
                &json!({"disabled": false}),
            )
            .await;
        assert_eq!(enabled.status(), 200);
        // A login refused while disabled counts as a failure: start each round unthrottled.
        sqlx::query("DELETE FROM login_failures")
            .execute(&pool)
            .await
            .expect("clear failures");
        let credentials = json!({"email": email, "password": "user-password-1"});
        let racing_login = api.post_json("/api/v1/tokens", None, &credentials);
        let disable = json!({"disabled": true});
        let disabling = api.send_json(Method::PATCH, &path, Some(&admin), &disable);
        let (login, disabled) = tokio::join!(racing_login, disabling);
        assert_eq!(disabled.status(), 200, "round {round}");
        assert_no_surviving_session(&api, login, round).await;
    }
}

#[tokio::test]
async fn a_login_racing_a_deletion_leaves_no_session_and_no_error() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    for round in 0..8 {
        let email = format!("deleted-racer-{round}@example.com");
        let user = api.register(&email, "user-password-1").await;
        let path = api.url(&format!("/api/v1/users/{}", string(&user["id"])));
        let credentials = json!({"email": email, "password": "user-password-1"});
        let racing_login = api.post_json("/api/v1/tokens", None, &credentials);
        let deletion = api.client.delete(&path).bearer_auth(&admin).send();
        let (login, deleted) = tokio::join!(racing_login, deletion);
        assert_eq!(deleted.expect("delete").status(), 204, "round {round}");
        assert_no_surviving_session(&api, login, round).await;
    }
}

#[tokio::test]
async fn a_password_change_racing_refreshes_leaves_no_usable_old_session() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let email = "refreshing@example.com";
    api.register(email, "password-round-0").await;
    for round in 0..4 {
        let old = format!("password-round-{round}");
        let new = format!("password-round-{}", round + 1);
        let mut pairs = Vec::new();
        for _ in 0..6 {
            pairs.push(api.login(email, &old).await);
        }
        let changer = access_token(&api.login(email, &old).await);
        let refreshes = pairs.iter().map(|pair| {
            let api = &api;
            let refresh_token = string(&pair["refresh_token"]);
            async move { api.refresh(&refresh_token).await }
        });
        let (responses, changed) = tokio::join!(
            futures::future::join_all(refreshes),
            change_password(&api, &changer, &old, &new)
        );
        assert_eq!(changed.status(), 200, "round {round}");
        let fresh: Value = changed.json().await.expect("fresh pair");
        let mut refresh_tokens: Vec<String> = pairs
            .iter()
            .map(|pair| string(&pair["refresh_token"]))
            .collect();
        let mut access_tokens = vec![changer];
        for response in responses {
            match response.status().as_u16() {
                200 => {
                    let pair: Value = response.json().await.expect("pair");
                    refresh_tokens.push(string(&pair["refresh_token"]));
                    access_tokens.push(access_token(&pair));
                }
                status => assert_eq!(status, 401, "round {round}: a refresh failed otherwise"),
            }
        }
        for refresh_token in &refresh_tokens {
            let status = api.refresh(refresh_token).await.status();
            assert_eq!(
                status, 401,
                "round {round}: an old refresh token still works"
            );
        }
        for token in &access_tokens {
            assert_eq!(
                api.me_status(token).await,
                401,
                "round {round}: an old access token"
            );
        }
        // The pair the change returned is the session that remains.
        assert_eq!(
            api.me_status(&access_token(&fresh)).await,
            200,
            "round {round}"
        );
    }
}
