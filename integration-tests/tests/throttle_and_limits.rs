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

/// POST /api/v1/tokens over a raw socket with extra header lines; a new email each time, so
/// the per-account throttle never answers. `(status, problem type)`.
async fn login_with_headers(
    api: &ServiceProcess,
    attempt: usize,
    headers: &[&str],
) -> (u16, String) {
    let body = format!(r#"{{"email":"nobody-{attempt}@example.com","password":"wrong-password"}}"#);
    let mut lines = vec!["Content-Type: application/json"];
    lines.extend_from_slice(headers);
    let answer = raw_http::exchange(
        authority(&api.base_url),
        &raw_http::request("POST", "/api/v1/tokens", &lines, &body),
    )
    .await;
    let problem_type = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|problem| problem["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (answer.status, problem_type)
}

const RATE_LIMITED: (u16, &str) = (429, "urn:iam:problem:rate-limited");

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_forwarded_hop() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .env("TRUSTED_PROXIES", "127.0.0.0/8, ::1")
        .start()
        .await;
    let mut attempt = 0;
    let mut login = |headers: &'static [&'static str]| {
        attempt += 1;
        let api = &api;
        let attempt = attempt;
        async move {
            let (status, problem_type) = login_with_headers(api, attempt, headers).await;
            (status, problem_type)
        }
    };
    // Client 198.51.100.1, as the proxy (this test, at 127.0.0.1) says; it fills its window.
    for _ in 0..2 {
        assert_eq!(login(&["X-Forwarded-For: 198.51.100.1"]).await.0, 401);
    }
    // Every way of naming it again is the same client: another casing of the header, a lie
    // prepended by the client, a port, several headers (the last one's hop is rightmost),
    // and a trusted hop appended by a second proxy.
    for headers in [
        &["X-Forwarded-For: 198.51.100.1"][..],
        &["x-FORWARDED-for: 198.51.100.1"],
        &["X-Forwarded-For: 203.0.113.9, 198.51.100.1"],
        &["X-Forwarded-For: 198.51.100.1:4711"],
        &[
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-For: 198.51.100.1",
        ],
        &["X-Forwarded-For: 198.51.100.1, 127.0.0.9"],
    ] {
        let (status, problem_type) = login(headers).await;
        assert_eq!((status, problem_type.as_str()), RATE_LIMITED, "{headers:?}");
    }
    // Another client behind the same proxy has a window of its own.
    assert_eq!(login(&["X-Forwarded-For: 198.51.100.2"]).await.0, 401);
    // A header spelled with `_` is another header, never read: the request counts under
    // the proxy's own address, which has a window of its own too.
    assert_eq!(login(&["X_Forwarded_For: 198.51.100.1"]).await.0, 401);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_the_address_it_is_counted_under() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .env("TRUSTED_PROXIES", "10.0.0.0/8")
        .start()
        .await;
    let forged = [
        "X-Forwarded-For: 198.51.100.1",
        "X-Forwarded-For: 198.51.100.2",
        "X-Forwarded-For: 10.0.0.1",
        "X-Forwarded-For: 198.51.100.3, 10.0.0.1",
    ];
    for (attempt, header) in forged.iter().enumerate() {
        let outcome = login_with_headers(&api, attempt, &[header]).await;
        if attempt < 2 {
            assert_eq!(outcome.0, 401, "{header}");
        } else {
            assert_eq!((outcome.0, outcome.1.as_str()), RATE_LIMITED, "{header}");
        }
    }
}

#[tokio::test]
async fn an_invalid_trusted_proxies_value_stops_the_start_naming_it() {
    let db = TestDatabase::create().await;
    let output = ServiceProcess::builder(&db)
        .env("TRUSTED_PROXIES", "10.0.0.0/8, 10.0.0.0/33")
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TRUSTED_PROXIES is invalid") && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
}
