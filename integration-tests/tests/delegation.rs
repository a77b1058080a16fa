//! The delegation ceiling: nobody grants what they do not hold, nobody manages an account
//! that holds more than they do, and the last admin cannot be demoted, even by concurrent
//! requests.

use integration_tests::api::{expect_problem, string};
use integration_tests::{ServiceProcess, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

/// A user with a role of its own holding exactly `permissions`; returns (id, token).
async fn user_with_role(
    api: &ServiceProcess,
    admin: &str,
    email: &str,
    role: &str,
    permissions: &[&str],
) -> (String, String) {
    let created = api
        .post_json(
            "/api/v1/roles",
            Some(admin),
            &json!({"name": role, "permissions": permissions}),
        )
        .await;
    assert_eq!(created.status(), 201, "role {role}");
    let (id, _) = api.user_with_token(email).await;
    assert_eq!(set_role(api, admin, &id, role).await, 200);
    let pair = api.login(email, "user-password-1").await;
    (id, string(&pair["access_token"]))
}

async fn set_role(api: &ServiceProcess, token: &str, id: &str, role: &str) -> u16 {
    api.send_json(
        Method::PUT,
        &format!("/api/v1/users/{id}/role"),
        Some(token),
        &json!({"role": role}),
    )
    .await
    .status()
    .as_u16()
}

async fn role_of(api: &ServiceProcess, admin: &str, id: &str) -> String {
    let user: Value = api
        .get(&format!("/api/v1/users/{id}"), Some(admin))
        .await
        .json()
        .await
        .expect("json");
    string(&user["role"])
}

async fn replace_role(api: &ServiceProcess, token: &str, role: &str, permissions: &[&str]) -> u16 {
    api.send_json(
        Method::PUT,
        &format!("/api/v1/roles/{role}"),
        Some(token),
        &json!({"permissions": permissions}),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn a_user_manager_cannot_grant_or_touch_more_than_it_holds() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (helpdesk_id, helpdesk) = user_with_role(
        &api,
        &admin,
        "help@example.com",
        "helpdesk",
        &["iam:users:read", "iam:users:write"],
    )
    .await;
    let (other_id, _) = api.user_with_token("other@example.com").await;
    for (role, permissions) in [
        ("editor", vec!["orders:write"]),
        (
            "near-admin",
            vec!["iam:users:read", "iam:users:write", "iam:roles:read"],
        ),
        ("case-twin", vec!["IAM:users:write"]),
    ] {
        let created = api
            .post_json(
                "/api/v1/roles",
                Some(&admin),
                &json!({"name": role, "permissions": permissions}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }

    // Self-promotion and granting to others beyond the ceiling: 403, nothing changes.
    for (target, role) in [
        (&helpdesk_id, "admin"),
        (&other_id, "admin"),
        (&other_id, "editor"),
        (&other_id, "near-admin"),
        (&other_id, "case-twin"),
    ] {
        let refused = api
            .send_json(
                Method::PUT,
                &format!("/api/v1/users/{target}/role"),
                Some(&helpdesk),
                &json!({"role": role}),
            )
            .await;
        let problem = expect_problem(refused, 403).await;
        assert!(
            string(&problem["detail"]).contains("not one you hold"),
            "{problem}"
        );
    }
    assert_eq!(role_of(&api, &admin, &helpdesk_id).await, "helpdesk");
    assert_eq!(role_of(&api, &admin, &other_id).await, "user");

    // Within the ceiling it works: its own role, and the empty `user` role.
    assert_eq!(set_role(&api, &helpdesk, &other_id, "helpdesk").await, 200);
    assert_eq!(set_role(&api, &helpdesk, &other_id, "user").await, 200);

    // It cannot demote someone who holds more than it (the admin).
    let me: Value = api
        .get("/api/v1/me", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let admin_id = string(&me["id"]);
    assert_eq!(set_role(&api, &helpdesk, &admin_id, "user").await, 403);
    assert_eq!(role_of(&api, &admin, &admin_id).await, "admin");
}

#[tokio::test]
async fn a_role_manager_cannot_add_permissions_it_lacks_to_any_role() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (_, manager) = user_with_role(
        &api,
        &admin,
        "roles@example.com",
        "rolemgr",
        &["iam:roles:read", "iam:roles:write"],
    )
    .await;

    // Its own role, the built-in `user` role, a new role: nothing it does not hold.
    for (role, permissions) in [
        (
            "rolemgr",
            vec!["iam:roles:read", "iam:roles:write", "iam:users:write"],
        ),
        ("user", vec!["iam:users:write"]),
        ("user", vec!["orders:write"]),
        (
            "admin",
            vec![
                "iam:users:read",
                "iam:users:write",
                "iam:roles:read",
                "iam:roles:write",
                "iam:clients:read",
                "iam:clients:write",
                "iam:audit:read",
                "orders:write",
            ],
        ),
    ] {
        assert_eq!(
            replace_role(&api, &manager, role, &permissions).await,
            403,
            "{role} {permissions:?}"
        );
    }
    let created = api
        .post_json(
            "/api/v1/roles",
            Some(&manager),
            &json!({"name": "sneaky", "permissions": ["iam:roles:read", "iam:users:write"]}),
        )
        .await;
    expect_problem(created, 403).await;
    let user_role: Value = api
        .get("/api/v1/roles/user", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(user_role["permissions"], json!([]));
    let mine: Value = api
        .get("/api/v1/roles/rolemgr", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        mine["permissions"],
        json!(["iam:roles:read", "iam:roles:write"])
    );

    // Within the ceiling: a role of what it holds, and removing permissions.
    let allowed = api
        .post_json(
            "/api/v1/roles",
            Some(&manager),
            &json!({"name": "reader", "permissions": ["iam:roles:read"]}),
        )
        .await;
    assert_eq!(allowed.status(), 201);
    assert_eq!(replace_role(&api, &manager, "reader", &[]).await, 200);
    // A role that already holds a permission the manager lacks may keep it while the
    // manager edits the rest: only gained permissions are judged.
    assert_eq!(
        replace_role(&api, &admin, "reader", &["orders:write"]).await,
        200
    );
    assert_eq!(
        replace_role(
            &api,
            &manager,
            "reader",
            &["orders:write", "iam:roles:read"]
        )
        .await,
        200
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_even_by_concurrent_requests() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let me: Value = api
        .get("/api/v1/me", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let admin_id = string(&me["id"]);
    let refused = api
        .send_json(
            Method::PUT,
            &format!("/api/v1/users/{admin_id}/role"),
            Some(&admin),
            &json!({"role": "user"}),
        )
        .await;
    expect_problem(refused, 409).await;

    // Two admins demote themselves and each other at the same moment, several rounds.
    let (second_id, _) = api.user_with_token("second@example.com").await;
    let pool = db.pool().await;
    for round in 0..5 {
        sqlx::query("UPDATE users SET role = 'admin' WHERE id IN ($1::uuid, $2::uuid)")
            .bind(&admin_id)
            .bind(&second_id)
            .execute(&pool)
            .await
            .expect("both admins");
        let first = api.admin_token().await;
        let second =
            string(&api.login("second@example.com", "user-password-1").await["access_token"]);
        let attempts = [
            (&first, &admin_id),
            (&first, &second_id),
            (&second, &admin_id),
            (&second, &second_id),
        ];
        let statuses = futures::future::join_all(
            attempts
                .iter()
                .map(|(token, id)| set_role(&api, token, id, "user")),
        )
        .await;
        let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(admins, 1, "round {round}: statuses {statuses:?}");
        // Each attempt either demotes (or re-demotes a user already demoted), meets the last
        // admin (409), or finds its caller demoted already: 401, since a role change revokes
        // the caller's tokens (403 if the caller were read as demoted with a token still
        // good). Never a 500.
        assert!(
            statuses
                .iter()
                .all(|status| [200, 401, 403, 409].contains(status)),
            "round {round}: {statuses:?}"
        );
    }
}
