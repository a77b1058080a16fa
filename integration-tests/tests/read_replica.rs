//! `POSTGRES_READ_CONNECTION_STRING` (issue 19): the listings where replication lag is
//! harmless read a streaming standby; authentication, tokens and /me never do. iam-jwks
//! serves keys and the revocation feed from it.

use std::time::Duration;

use integration_tests::ServiceProcess;
use integration_tests::api::{access_token, expect_problem, string};
use integration_tests::eventually;
use integration_tests::private_postgres::ReplicatedPostgres;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

async fn listed_emails(api: &ServiceProcess, token: &str) -> Option<Vec<String>> {
    let response = api.get("/api/v1/users?limit=100", Some(token)).await;
    if response.status() != 200 {
        return None;
    }
    let page: Value = response.json().await.ok()?;
    Some(
        page["items"]
            .as_array()?
            .iter()
            .map(|user| string(&user["email"]))
            .collect(),
    )
}

#[tokio::test]
async fn listings_read_the_replica_and_sign_in_never_does() {
    let postgres = ReplicatedPostgres::start().await;
    let api = ServiceProcess::builder_with_url(&postgres.primary.url("iam"))
        .env(
            "POSTGRES_READ_CONNECTION_STRING",
            postgres.standby.url("iam"),
        )
        .start()
        .await;
    let admin = api.admin_token().await;
    api.register("listed@example.com", "user-password-1").await;
    // Created on the primary, listed through the replica once replicated.
    eventually(LIMIT, "the new user is listed from the replica", || async {
        listed_emails(&api, &admin)
            .await
            .is_some_and(|emails| emails.iter().any(|email| email == "listed@example.com"))
    })
    .await;
    assert_eq!(api.get("/api/v1/roles", Some(&admin)).await.status(), 200);
    assert_eq!(
        api.get("/api/v1/audit-events", Some(&admin)).await.status(),
        200
    );
    let pair = api.login("listed@example.com", "user-password-1").await;

    // The replica goes away: the listings answer 503, everything else carries on.
    postgres.standby.stop("fast");
    for path in ["/api/v1/users", "/api/v1/roles", "/api/v1/audit-events"] {
        // Each pooled connection to the stopped replica fails one request at most, then
        // new ones are refused: 503 every time.
        for _ in 0..3 {
            let response = api.get(path, Some(&admin)).await;
            assert!(response.headers().contains_key("retry-after"), "{path}");
            expect_problem(response, 503).await;
        }
    }
    assert_eq!(api.me_status(&access_token(&pair)).await, 200);
    let refreshed = api.refresh(&string(&pair["refresh_token"])).await;
    assert_eq!(refreshed.status(), 200);
    let again = api.login("listed@example.com", "user-password-1").await;
    assert_eq!(api.me_status(&access_token(&again)).await, 200);
    api.register("while-away@example.com", "user-password-1")
        .await;
    assert!(api.is_healthy().await, "the healthcheck is the primary's");
}

#[tokio::test]
async fn the_jwks_serves_keys_and_revocations_from_the_replica() {
    let postgres = ReplicatedPostgres::start().await;
    let api = ServiceProcess::builder_with_url(&postgres.primary.url("iam"))
        .start()
        .await;
    let (_, token) = api.user_with_token("reader@example.com").await;
    // The primary named too, but nothing answers there: whatever iam-jwks serves, it read
    // from the replica.
    let nowhere = format!(
        "postgres://postgres@127.0.0.1:{}/iam",
        integration_tests::free_port()
    );
    let jwks = ServiceProcess::jwks_builder_with_url(&nowhere)
        .env(
            "POSTGRES_READ_CONNECTION_STRING",
            postgres.standby.url("iam"),
        )
        .start()
        .await;
    let kid = integration_tests::api::kid_of(&token);
    eventually(
        LIMIT,
        "the replica's key set holds the signing key",
        || async {
            let keys: Value = jwks
                .get("/.well-known/jwks.json", None)
                .await
                .json()
                .await
                .unwrap_or_default();
            keys["keys"]
                .as_array()
                .is_some_and(|keys| keys.iter().any(|key| key["kid"] == kid.as_str()))
        },
    )
    .await;
    assert_eq!(jwks.get("/api/v1/revocations", None).await.status(), 200);
}
