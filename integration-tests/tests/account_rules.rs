//! The rules around account changes: the last enabled admin cannot be disabled, deleted or
//! demoted (409, also against concurrent requests); a user manager cannot act on an account
//! holding more than it does; `REGISTRATION=closed`; and the `users` commands of the CLI.

use integration_tests::TestDatabase;
use integration_tests::api::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ServiceProcess, access_token, expect_problem, string,
};
use reqwest::Method;
use serde_json::{Value, json};

async fn disable(api: &ServiceProcess, token: &str, id: &str) -> u16 {
    let path = format!("/api/v1/users/{id}");
    api.send_status(Method::PATCH, &path, token, &json!({"disabled": true}))
        .await
}

async fn own_id(api: &ServiceProcess, token: &str) -> String {
    let me: Value = api
        .get("/api/v1/me", Some(token))
        .await
        .json()
        .await
        .expect("json");
    string(&me["id"])
}

async fn enabled_admins(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled")
        .fetch_one(db)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_last_enabled_admin_stays_even_against_concurrent_requests() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let admin_id = own_id(&api, &admin).await;
    let self_path = format!("/api/v1/users/{admin_id}");
    for (method, body) in [
        (Method::PATCH, json!({"disabled": true})),
        (Method::PUT, json!({"role": "user"})),
    ] {
        let path = if method == Method::PUT {
            format!("{self_path}/role")
        } else {
            self_path.clone()
        };
        let refused = api.send_json(method, &path, Some(&admin), &body).await;
        let problem = expect_problem(refused, 409).await;
        assert!(
            string(&problem["detail"]).contains("last enabled admin"),
            "{problem}"
        );
    }
    let refused = api.delete(&self_path, Some(&admin)).await;
    expect_problem(refused, 409).await;

    // A disabled admin is no admin left: with the second admin disabled, the first is last.
    let (second_id, _) = api.user_with_token("second@example.com").await;
    let pool = db.pool().await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1::uuid")
        .bind(&second_id)
        .execute(&pool)
        .await
        .expect("second admin");
    assert_eq!(disable(&api, &admin, &second_id).await, 200);
    let demote = format!("{self_path}/role");
    assert_eq!(
        api.send_status(Method::PUT, &demote, &admin, &json!({"role": "user"}))
            .await,
        409
    );

    // Two enabled admins disable themselves and each other at the same moment, several rounds:
    // exactly one stays enabled every time.
    for round in 0..5 {
        sqlx::query(
            "UPDATE users SET role = 'admin', disabled = false WHERE id IN ($1::uuid, $2::uuid)",
        )
        .bind(&admin_id)
        .bind(&second_id)
        .execute(&pool)
        .await
        .expect("both admins");
        let first = api.admin_token().await;
        let second = access_token(&api.login("second@example.com", "user-password-1").await);
        let attempts = [
            (&first, &admin_id),
            (&first, &second_id),
            (&second, &admin_id),
            (&second, &second_id),
        ];
        let statuses =
            futures::future::join_all(attempts.iter().map(|(token, id)| disable(&api, token, id)))
                .await;
        assert_eq!(
            enabled_admins(&pool).await,
            1,
            "round {round}: {statuses:?}"
        );
        // Each attempt disables (or finds disabled already), meets the last admin (409), or
        // finds its caller disabled already (401). Never a 500.
        assert!(
            statuses
                .iter()
                .all(|status| [200, 401, 409].contains(status)),
            "round {round}: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn a_user_manager_cannot_disable_delete_or_reset_an_account_holding_more_than_it() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let admin_id = own_id(&api, &admin).await;
    let created = api
        .send_status(
            Method::POST,
            "/api/v1/roles",
            &admin,
            &json!({"name": "helpdesk", "permissions": ["iam:users:read", "iam:users:write"]}),
        )
        .await;
    assert_eq!(created, 201);
    let (helper_id, _) = api.user_with_token("helper@example.com").await;
    let role_path = format!("/api/v1/users/{helper_id}/role");
    assert_eq!(
        api.send_status(
            Method::PUT,
            &role_path,
            &admin,
            &json!({"role": "helpdesk"})
        )
        .await,
        200
    );
    let helper = access_token(&api.login("helper@example.com", "user-password-1").await);

    let admin_path = format!("/api/v1/users/{admin_id}");
    assert_eq!(disable(&api, &helper, &admin_id).await, 403);
    let reset = api
        .send_status(
            Method::PUT,
            &format!("{admin_path}/password"),
            &helper,
            &json!({"password": "taken-over-1"}),
        )
        .await;
    assert_eq!(reset, 403);
    let deleted = api.delete(&admin_path, Some(&helper)).await;
    let problem = expect_problem(deleted, 403).await;
    assert!(string(&problem["detail"]).contains("iam:"), "{problem}");
    // The admin is untouched: same password, enabled.
    api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // An account within the helper's own permissions: all three work.
    let (plain_id, _) = api.user_with_token("plain@example.com").await;
    let plain_path = format!("/api/v1/users/{plain_id}");
    assert_eq!(disable(&api, &helper, &plain_id).await, 200);
    assert_eq!(
        api.send_status(
            Method::PUT,
            &format!("{plain_path}/password"),
            &helper,
            &json!({"password": "reset-by-helpdesk-1"}),
        )
        .await,
        204
    );
    let deleted = api.delete(&plain_path, Some(&helper)).await;
    assert_eq!(deleted.status(), 204);
}

#[tokio::test]
async fn closed_registration_needs_a_user_manager() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("REGISTRATION", "closed")
        .start()
        .await;
    let body = json!({"email": "new@example.com", "password": "new-password-1"});
    expect_problem(api.post_json("/api/v1/users", None, &body).await, 401).await;
    let admin = api.admin_token().await;
    let created = api.post_json("/api/v1/users", Some(&admin), &body).await;
    assert_eq!(created.status(), 201);
    let user = access_token(&api.login("new@example.com", "new-password-1").await);
    let other = json!({"email": "other@example.com", "password": "new-password-1"});
    expect_problem(
        api.post_json("/api/v1/users", Some(&user), &other).await,
        403,
    )
    .await;

    let invalid = ServiceProcess::builder(&db)
        .env("REGISTRATION", "sometimes")
        .run(None)
        .await;
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("REGISTRATION"),
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
}

/// Runs `iam-api users …` against `db` and returns (exit code, stdout, stderr).
async fn users_command(
    db: &TestDatabase,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut all = vec!["users"];
    all.extend_from_slice(args);
    let output = ServiceProcess::builder(db).args(&all).run(stdin).await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_users_commands_change_accounts_from_the_command_line() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let (id, token) = api.user_with_token("cli@example.com").await;

    let (code, listed, _) = users_command(&db, &["list"], None).await;
    assert_eq!(code, Some(0));
    assert!(
        listed.contains("cli@example.com") && listed.contains(ADMIN_EMAIL),
        "{listed}"
    );
    let (_, one, _) = users_command(&db, &["list", "--email", " CLI@example.com"], None).await;
    assert!(one.contains(&id) && !one.contains(ADMIN_EMAIL), "{one}");

    let (code, out, err) =
        users_command(&db, &["disable", "--email", "cli@example.com"], None).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("disabled"), "{out}");
    assert_eq!(api.me_status(&token).await, 401);
    let (_, shown, _) = users_command(&db, &["list", "--email", "cli@example.com"], None).await;
    assert!(shown.contains("disabled"), "{shown}");
    let refused = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"email": "cli@example.com", "password": "user-password-1"}),
        )
        .await;
    expect_problem(refused, 401).await;
    let (code, _, _) = users_command(&db, &["enable", "--email", "cli@example.com"], None).await;
    assert_eq!(code, Some(0));
    api.login("cli@example.com", "user-password-1").await;

    let (code, out, err) = users_command(
        &db,
        &["set-role", "--email", "cli@example.com", "--role", "admin"],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("admin"), "{out}");
    let (code, _, err) = users_command(
        &db,
        &[
            "set-password",
            "--email",
            "cli@example.com",
            "--password-stdin",
        ],
        Some("from-the-cli-1\n"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let me: Value = api
        .get(
            "/api/v1/me",
            Some(&access_token(
                &api.login("cli@example.com", "from-the-cli-1").await,
            )),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "admin");

    // Refusals exit 2 with the reason: unknown account, short password, missing stdin flag,
    // unknown role, and the last enabled admin.
    for (args, stdin, reason) in [
        (
            vec!["disable", "--email", "nobody@example.com"],
            None,
            "no user",
        ),
        (
            vec![
                "set-password",
                "--email",
                "cli@example.com",
                "--password-stdin",
            ],
            Some("short\n"),
            "password",
        ),
        (
            vec!["set-password", "--email", "cli@example.com"],
            None,
            "--password-stdin",
        ),
        (
            vec!["set-role", "--email", "cli@example.com", "--role", "ghost"],
            None,
            "no such role",
        ),
    ] {
        let (code, _, err) = users_command(&db, &args, stdin).await;
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let (code, _, _) = users_command(&db, &["delete", "--email", ADMIN_EMAIL], None).await;
    assert_eq!(code, Some(0), "another admin is left");
    let (code, _, err) = users_command(&db, &["delete", "--email", "cli@example.com"], None).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("last enabled admin"), "{err}");
    let (code, _, err) = users_command(&db, &["disable", "--email", "cli@example.com"], None).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("last enabled admin"), "{err}");
}
