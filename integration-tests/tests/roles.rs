//! Role management and permission checks.

use integration_tests::api::{access_token, expect_problem};
use integration_tests::{ServiceProcess, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn an_admin_creates_reads_replaces_and_deletes_a_role() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;

    let created = api
        .post_json(
            "/api/v1/roles",
            Some(&admin),
            &json!({"name": "editor", "description": "Edits articles", "permissions": ["articles:write", "articles:read", "articles:read"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/api/v1/roles/editor");
    let role: Value = created.json().await.expect("json");
    assert_eq!(
        role,
        json!({"name": "editor", "description": "Edits articles", "permissions": ["articles:read", "articles:write"], "built_in": false})
    );

    let fetched: Value = api
        .get("/api/v1/roles/editor", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched, role);
    let all: Vec<Value> = api
        .get("/api/v1/roles", Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = all
        .iter()
        .map(|role| role["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["admin", "editor", "user"]);

    let replaced = api
        .send_json(
            Method::PUT,
            "/api/v1/roles/editor",
            Some(&admin),
            &json!({"description": "Reads", "permissions": ["articles:read"]}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.expect("json");
    assert_eq!(replaced["permissions"], json!(["articles:read"]));
    assert_eq!(replaced["description"], "Reads");

    let deleted = api.delete("/api/v1/roles/editor", Some(&admin)).await;
    assert_eq!(deleted.status(), 204);
    expect_problem(api.get("/api/v1/roles/editor", Some(&admin)).await, 404).await;
}

#[tokio::test]
async fn role_errors_have_the_documented_statuses() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let role = json!({"name": "editor", "permissions": []});
    assert_eq!(
        api.post_json("/api/v1/roles", Some(&admin), &role)
            .await
            .status(),
        201
    );
    expect_problem(
        api.post_json("/api/v1/roles", Some(&admin), &role).await,
        409,
    )
    .await;

    let invalid = api
        .post_json(
            "/api/v1/roles",
            Some(&admin),
            &json!({"name": "Bad Name", "permissions": ["ok", "not ok"]}),
        )
        .await;
    let problem = expect_problem(invalid, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["name", "permissions[1]"]);

    expect_problem(
        api.send_json(
            Method::PUT,
            "/api/v1/roles/nope",
            Some(&admin),
            &json!({"permissions": []}),
        )
        .await,
        404,
    )
    .await;
    expect_problem(
        api.send_json(
            Method::PUT,
            "/api/v1/roles/editor",
            Some(&admin),
            &json!({"permissions": "x"}),
        )
        .await,
        422,
    )
    .await;
    // The admin role cannot lose the permissions that administer the service.
    expect_problem(
        api.send_json(
            Method::PUT,
            "/api/v1/roles/admin",
            Some(&admin),
            &json!({"permissions": ["iam:users:read"]}),
        )
        .await,
        422,
    )
    .await;
    // Built-in roles cannot be deleted.
    for built_in in ["admin", "user"] {
        let response = api
            .delete(&format!("/api/v1/roles/{built_in}"), Some(&admin))
            .await;
        expect_problem(response, 409).await;
    }
    let response = api.delete("/api/v1/roles/ghost", Some(&admin)).await;
    expect_problem(response, 404).await;
}

#[tokio::test]
async fn a_role_still_assigned_cannot_be_deleted() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    api.post_json(
        "/api/v1/roles",
        Some(&admin),
        &json!({"name": "editor", "permissions": []}),
    )
    .await;
    let (id, _) = api.user_with_token("ada@example.com").await;
    api.send_json(
        Method::PUT,
        &format!("/api/v1/users/{id}/role"),
        Some(&admin),
        &json!({"role": "editor"}),
    )
    .await;
    let response = api.delete("/api/v1/roles/editor", Some(&admin)).await;
    let problem = expect_problem(response, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("assigned")
    );
}

#[tokio::test]
async fn authorization_is_by_permission_not_by_role_name() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, user_token) = api.user_with_token("ada@example.com").await;

    // A plain user is forbidden everywhere in the admin API.
    let forbidden = api.get("/api/v1/roles", Some(&user_token)).await;
    assert_eq!(
        forbidden.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
    expect_problem(forbidden, 403).await;
    expect_problem(
        api.post_json(
            "/api/v1/roles",
            Some(&user_token),
            &json!({"name": "x1", "permissions": []}),
        )
        .await,
        403,
    )
    .await;
    expect_problem(api.get("/api/v1/users", Some(&user_token)).await, 403).await;
    expect_problem(api.get("/api/v1/roles", None).await, 401).await;

    // A custom role that carries only iam:roles:read may read roles and nothing else.
    api.post_json(
        "/api/v1/roles",
        Some(&admin),
        &json!({"name": "auditor", "permissions": ["iam:roles:read"]}),
    )
    .await;
    api.send_json(
        Method::PUT,
        &format!("/api/v1/users/{id}/role"),
        Some(&admin),
        &json!({"role": "auditor"}),
    )
    .await;
    // The role change revoked the old token; a new one carries the new role.
    expect_problem(api.get("/api/v1/roles", Some(&user_token)).await, 401).await;
    let user_token = access_token(&api.login("ada@example.com", "user-password-1").await);
    assert_eq!(
        api.get("/api/v1/roles", Some(&user_token)).await.status(),
        200
    );
    expect_problem(api.get("/api/v1/users", Some(&user_token)).await, 403).await;
    expect_problem(
        api.post_json(
            "/api/v1/roles",
            Some(&user_token),
            &json!({"name": "x2", "permissions": []}),
        )
        .await,
        403,
    )
    .await;
}
