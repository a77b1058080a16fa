//! Limits an attacker meets before a password is evaluated: the per-address limit on every
//! spelling of the hashing endpoints' paths, the per-account throttle under concurrent
//! guesses, and the failure records made-up emails leave behind.

use std::time::Duration;

use integration_tests::raw_http::{self, authority};
use integration_tests::{ServiceProcess, TestDatabase, eventually_some};
use serde_json::json;

const LOGIN_BODY: &str = r#"{"email":"nobody@example.com","password":"wrong-password"}"#;

async fn raw_post(api: &ServiceProcess, target: &str, body: &str) -> u16 {
    raw_http::exchange(
        authority(&api.base_url),
        &raw_http::request("POST", target, &["Content-Type: application/json"], body),
    )
    .await
    .status
}

#[tokio::test]
async fn the_per_address_limit_counts_every_spelling_of_the_path() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("RATE_LIMIT_PER_MINUTE", "3")
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(raw_post(&api, "/api/v1/tokens", LOGIN_BODY).await, 401);
    }
    // Every spelling the router sends to the token handler is counted in the same window;
    // spellings it does not route are 404. None may reach the password check (401).
    let spellings = [
        "/api/v1/tokens",
        "/api/v1/tokens/",
        "//api/v1/tokens",
        "/api//v1/tokens",
        "/api/v1//tokens",
        "/api/v1/%74okens",
        "/api/v1/tok%65ns",
        "/%61pi/v1/tokens",
        "/api/v1/tokens?grant_type=password",
        "/api/v1/./tokens",
        "/api/v1/users/../tokens",
        "/API/v1/tokens",
        "/api/v1/TOKENS",
    ];
    let mut limited = 0;
    for target in spellings {
        let status = raw_post(&api, target, LOGIN_BODY).await;
        assert!(
            [429, 404, 400].contains(&status),
            "{target} gave {status}: it reached the handler without being limited"
        );
        if status == 429 {
            limited += 1;
        }
    }
    assert!(
        limited >= 6,
        "only {limited} spellings were routed and limited"
    );
    // Registration shares the address's window, whatever its spelling.
    let registration = r#"{"email":"new@example.com","password":"password-1"}"#;
    for target in [
        "/api/v1/users",
        "/api/v1/users/",
        "//api/v1/users",
        "/api/v1/%75sers",
    ] {
        let status = raw_post(&api, target, registration).await;
        assert!([429, 404].contains(&status), "{target} gave {status}");
    }
    // Reads are not limited.
    assert_eq!(api.get("/api/v1/healthcheck", None).await.status(), 200);
}

async fn login_statuses(api: &ServiceProcess, email: &str, guesses: usize) -> Vec<u16> {
    let body = json!({"email": email, "password": "wrong-password"});
    futures::future::join_all((0..guesses).map(|_| {
        let request = api
            .client
            .post(api.url("/api/v1/tokens"))
            .json(&body)
            .send();
        async move { request.await.expect("login").status().as_u16() }
    }))
    .await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test]
async fn concurrent_guesses_get_at_most_one_evaluation_per_free_slot() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    api.register("ada@example.com", "right-password-1").await;

    // A fresh account has five free failures: eight guesses at once get exactly five
    // evaluations (401); the rest wait (429).
    let statuses = login_statuses(&api, "ada@example.com", 8).await;
    assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 3, "{statuses:?}");

    // Once the one-second slot after five failures opens, one guess of eight is evaluated.
    // Unknown emails and other spellings of the address share the same throttle.
    for email in ["ada@example.com", "ADA@Example.com", " ada@example.com "] {
        let pool = db.pool().await;
        // Open the next slot by moving the last failure into the past.
        sqlx::query(
            "UPDATE login_failures SET last_failure_at = now() - interval '10 minutes'
             WHERE email = 'ada@example.com'",
        )
        .execute(&pool)
        .await
        .expect("open a slot");
        let statuses = login_statuses(&api, email, 8).await;
        assert_eq!(count(&statuses, 401), 1, "{email}: {statuses:?}");
        assert_eq!(count(&statuses, 429), 7, "{email}: {statuses:?}");
    }
    let statuses = login_statuses(&api, "ghost@example.com", 8).await;
    assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
}

#[tokio::test]
async fn failure_records_are_deleted_once_they_no_longer_count() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let pool = db.pool().await;
    // Made-up emails leave records; age half of them past the 24 h window.
    for index in 0..6 {
        let body =
            json!({"email": format!("made-up-{index}@example.com"), "password": "wrong-password"});
        assert_eq!(
            api.post_json("/api/v1/tokens", None, &body).await.status(),
            401
        );
    }
    sqlx::query(
        "UPDATE login_failures SET last_failure_at = now() - interval '25 hours'
         WHERE email IN ('made-up-0@example.com', 'made-up-1@example.com', 'made-up-2@example.com')",
    )
    .execute(&pool)
    .await
    .expect("age records");
    drop(api);
    // The pruner runs at start and then every ten minutes.
    let _api = ServiceProcess::start(&db).await;
    let left: Vec<String> = eventually_some(
        Duration::from_secs(20),
        "the pruner removes the stale records",
        || async {
            let left: Vec<String> =
                sqlx::query_scalar("SELECT email FROM login_failures ORDER BY email")
                    .fetch_all(&pool)
                    .await
                    .expect("emails");
            (left.len() <= 3).then_some(left)
        },
    )
    .await;
    assert_eq!(
        left,
        [
            "made-up-3@example.com",
            "made-up-4@example.com",
            "made-up-5@example.com"
        ]
    );
}
