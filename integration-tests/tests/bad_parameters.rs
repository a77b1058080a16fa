//! Every path and query parameter is judged before it reaches the database: hostile values
//! get a 4xx problem document, never a 500.

use integration_tests::raw_http::{self, authority};
use integration_tests::{ServiceProcess, TestDatabase};

/// Hostile spellings for a text parameter: NUL (raw in the escape), invalid UTF-8, control
/// characters, over-long values, SQL and path tricks.
const HOSTILE: [&str; 12] = [
    "bad%00name",
    "%00",
    "%FF%FE",
    "%C0%AF",
    "a%0Ab",
    "a%7Fb",
    "Admin",
    "x",
    "%27%20OR%201%3D1--",
    "..%2F..%2Fetc",
    "%E2%80%AEnimda",
    "",
];

async fn status_of(
    api: &ServiceProcess,
    method: &str,
    target: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let authorization = format!("Authorization: Bearer {token}");
    let response = raw_http::exchange(
        authority(&api.base_url),
        &raw_http::request(
            method,
            target,
            &[&authorization, "Content-Type: application/json"],
            body,
        ),
    )
    .await;
    (response.status, response.head + "\n" + &response.body)
}

fn assert_client_error(target: &str, (status, answer): &(u16, String)) {
    assert!(
        (400..500).contains(status),
        "{target} gave {status}: {answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{target}: {answer}"
    );
}

#[tokio::test]
async fn hostile_path_and_query_parameters_get_4xx_problems() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let long = "a".repeat(5000);
    let mut names: Vec<String> = HOSTILE.iter().map(|&s| s.to_owned()).collect();
    names.push(long.clone());
    for name in &names {
        for (method, target, body) in [
            ("GET", format!("/api/v1/roles/{name}"), ""),
            (
                "PUT",
                format!("/api/v1/roles/{name}"),
                r#"{"permissions":[]}"#,
            ),
            ("DELETE", format!("/api/v1/roles/{name}"), ""),
            ("GET", format!("/api/v1/users/{name}"), ""),
            (
                "PUT",
                format!("/api/v1/users/{name}/role"),
                r#"{"role":"user"}"#,
            ),
            ("GET", format!("/api/v1/users?limit={name}"), ""),
            ("GET", format!("/api/v1/users?after={name}"), ""),
        ] {
            if name.is_empty() && !target.contains('?') {
                continue; // an empty segment is another route, tested elsewhere
            }
            let answer = status_of(&api, method, &target, &admin, body).await;
            assert_client_error(&format!("{method} {target}"), &answer);
        }
    }
    for limit in ["-1", "0", "201", "99999999999999999999", "1e3", "0x10"] {
        let target = format!("/api/v1/users?limit={limit}");
        let answer = status_of(&api, "GET", &target, &admin, "").await;
        assert_client_error(&target, &answer);
    }
    // A NUL or a control character inside JSON strings bound for the database.
    for (target, body) in [
        (
            "/api/v1/roles",
            r#"{"name":"ok-role","description":"a\u0000b","permissions":[]}"#,
        ),
        (
            "/api/v1/roles",
            r#"{"name":"ok-role","description":"a\u001bb","permissions":[]}"#,
        ),
        ("/api/v1/roles", r#"{"name":"bad\u0000","permissions":[]}"#),
        (
            "/api/v1/roles",
            r#"{"name":"ok-role","permissions":["a\u0000b"]}"#,
        ),
        (
            "/api/v1/users",
            r#"{"email":"a\u0000b@example.com","password":"password-1"}"#,
        ),
    ] {
        let answer = status_of(&api, "POST", target, &admin, body).await;
        assert_eq!(answer.0, 422, "{target} {body}: {}", answer.1);
    }
    let login = status_of(
        &api,
        "POST",
        "/api/v1/tokens",
        &admin,
        r#"{"email":"a\u0000b@example.com","password":"password-1"}"#,
    )
    .await;
    assert_eq!(login.0, 401, "{}", login.1);
    // Line breaks and tabs are fine in a description.
    let fine = status_of(
        &api,
        "POST",
        "/api/v1/roles",
        &admin,
        r#"{"name":"ok-role","description":"line one\nline\ttwo","permissions":[]}"#,
    )
    .await;
    assert_eq!(fine.0, 201, "{}", fine.1);
    assert_eq!(api.get("/api/v1/healthcheck", None).await.status(), 200);
}
