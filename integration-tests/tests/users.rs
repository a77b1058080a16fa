//! Registration: `POST /api/v1/users`.

use integration_tests::api::expect_problem;
use integration_tests::{ServiceProcess, TestDatabase};
use serde_json::{Value, json};

#[tokio::test]
async fn registration_creates_a_user_with_the_default_role() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let response = api
        .register_attempt("  Ada@Example.COM ", "correct horse")
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(
        location,
        format!("/api/v1/users/{}", user["id"].as_str().expect("id"))
    );
    assert!(
        user["created_at"]
            .as_str()
            .expect("created_at")
            .contains('T')
    );
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    // The stored hash is argon2id, never the password.
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ada@example.com'")
            .fetch_one(&db.pool().await)
            .await
            .expect("row");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

#[tokio::test]
async fn a_taken_email_gives_409_whatever_its_case() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    api.register("grace@example.com", "password-1").await;
    let again = api
        .register_attempt("GRACE@example.com", "password-2")
        .await;
    expect_problem(again, 409).await;
}

#[tokio::test]
async fn invalid_email_and_password_are_both_reported_with_422() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let response = api.register_attempt("not-an-email", "short").await;
    let problem = expect_problem(response, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["email", "password"]);

    let long_password = "p".repeat(129);
    let response = api.register_attempt("a@example.com", &long_password).await;
    expect_problem(response, 422).await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let response = api.register_attempt(&long_email, "long enough").await;
    expect_problem(response, 422).await;
}

#[tokio::test]
async fn missing_and_mistyped_fields_are_422_and_malformed_json_is_400() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let response = api
        .post_json("/api/v1/users", None, &json!({"email": 42}))
        .await;
    let problem = expect_problem(response, 422).await;
    assert_eq!(problem["errors"].as_array().expect("errors").len(), 2);
    let response = api
        .post_json("/api/v1/users", None, &json!(["a", "b"]))
        .await;
    expect_problem(response, 422).await;

    let response = api
        .client
        .post(api.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a@example.com", "password": "#)
        .send()
        .await
        .expect("send");
    expect_problem(response, 400).await;

    let response = api
        .client
        .post(api.url("/api/v1/users"))
        .header("content-type", "text/plain")
        .body("email=a@example.com")
        .send()
        .await
        .expect("send");
    expect_problem(response, 415).await;
}

#[tokio::test]
async fn bodies_over_64_kib_get_413_and_deep_nesting_is_refused() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let padding = "x".repeat(70 * 1024);
    let response = api.register_attempt("a@example.com", &padding).await;
    expect_problem(response, 413).await;

    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let response = api
        .client
        .post(api.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .expect("send");
    expect_problem(response, 400).await;
}

#[tokio::test]
async fn concurrent_registration_of_one_email_creates_exactly_one_user() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let attempts = (0..12).map(|index| {
        let email = if index % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        let api = &api;
        async move { api.register_attempt(email, "password-1").await }
    });
    let responses = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&status| status == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|&status| status == 201 || status == 409),
        "{statuses:?}"
    );
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = 'race@example.com'")
            .fetch_one(&db.pool().await)
            .await
            .expect("count");
    assert_eq!(count, 1);
}
