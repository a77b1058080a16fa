//! Admin endpoints on users: listing with keyset pagination, look-up and role assignment;
//! and the ways to get the first admin.

use integration_tests::api::{ADMIN_EMAIL, expect_problem, string};
use integration_tests::{ServiceProcess, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn users_are_listed_in_pages_in_creation_order() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    for index in 0..5 {
        api.register(&format!("user{index}@example.com"), "password-1")
            .await;
    }
    let mut emails = Vec::new();
    let mut path = "/api/v1/users?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = api
            .get(&path, Some(&admin))
            .await
            .json()
            .await
            .expect("json");
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        emails.extend(items.iter().map(|user| string(&user["email"])));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/users?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = vec![ADMIN_EMAIL.to_owned()];
    expected.extend((0..5).map(|index| format!("user{index}@example.com")));
    assert_eq!(emails, expected);

    for bad in ["limit=0", "limit=201", "limit=ten", "after=not-a-uuid"] {
        expect_problem(
            api.get(&format!("/api/v1/users?{bad}"), Some(&admin)).await,
            422,
        )
        .await;
    }
}

#[tokio::test]
async fn a_user_is_read_by_id_and_given_a_role() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let user = api.register("ada@example.com", "password-1").await;
    let id = string(&user["id"]);
    let fetched: Value = api
        .get(&format!("/api/v1/users/{id}"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched, user);
    expect_problem(
        api.get(
            "/api/v1/users/00000000-0000-7000-8000-000000000000",
            Some(&admin),
        )
        .await,
        404,
    )
    .await;
    expect_problem(api.get("/api/v1/users/not-a-uuid", Some(&admin)).await, 404).await;

    let promoted = api
        .send_json(
            Method::PUT,
            &format!("/api/v1/users/{id}/role"),
            Some(&admin),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promoted.status(), 200);
    assert_eq!(
        promoted.json::<Value>().await.expect("json")["role"],
        "admin"
    );

    let unknown_role = api
        .send_json(
            Method::PUT,
            &format!("/api/v1/users/{id}/role"),
            Some(&admin),
            &json!({"role": "ghost"}),
        )
        .await;
    expect_problem(unknown_role, 422).await;
    let unknown_user = api
        .send_json(
            Method::PUT,
            "/api/v1/users/00000000-0000-7000-8000-000000000000/role",
            Some(&admin),
            &json!({"role": "user"}),
        )
        .await;
    expect_problem(unknown_user, 404).await;
}

#[tokio::test]
async fn the_bootstrap_admin_is_idempotent_across_restarts() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let id_before: Value = api
        .get("/api/v1/me", Some(&api.admin_token().await))
        .await
        .json()
        .await
        .expect("json");
    drop(api);
    let api = ServiceProcess::start(&db).await;
    let id_after: Value = api
        .get("/api/v1/me", Some(&api.admin_token().await))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(id_before["id"], id_after["id"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn admin_create_makes_an_admin_from_the_command_line() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .without_env("BOOTSTRAP_ADMIN_EMAIL")
        .without_env("BOOTSTRAP_ADMIN_PASSWORD")
        .start()
        .await;
    let cli = ServiceProcess::builder(&db).args(&[
        "--config=local",
        "admin",
        "create",
        "--email",
        "Root@Example.com",
        "--password-stdin",
    ]);
    let output = cli.run(Some("root-password-1\n")).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin"));
    let pair = api.login("root@example.com", "root-password-1").await;
    let me: Value = api
        .get("/api/v1/me", Some(&string(&pair["access_token"])))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "admin");

    let weak = ServiceProcess::builder(&db).args(&[
        "admin",
        "create",
        "--email",
        "x@example.com",
        "--password-stdin",
    ]);
    let output = weak.run(Some("short\n")).await;
    assert_eq!(output.status.code(), Some(2));
}
