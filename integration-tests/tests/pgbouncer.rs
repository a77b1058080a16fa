//! The api's main flows through PgBouncer (issue 19). In transaction pooling mode each
//! transaction may run on another server connection, and sqlx prepares named statements and
//! caches them per connection: PgBouncer 1.21 and later track them
//! (`max_prepared_statements`), older ones cannot (with Debian 12's 1.18, registration and
//! login fail with "prepared statement … does not exist / already exists"). So this runs in
//! transaction mode with `max_prepared_statements` where PgBouncer is 1.21 or later, and in
//! session mode, the one such an old PgBouncer supports, otherwise; it says which.

use integration_tests::ServiceProcess;
use integration_tests::api::{access_token, string};
use integration_tests::clients::{client_token, create_role, new_client};
use integration_tests::database::TestDatabase;
use integration_tests::pgbouncer::{self, PgBouncer};
use serde_json::json;

#[tokio::test]
async fn the_main_flows_work_through_pgbouncer() {
    let test_db = TestDatabase::create().await;
    // Migrations take a session-level advisory lock, which transaction pooling cannot
    // hold: they run against the server directly, as the README says.
    let migrate = ServiceProcess::builder(&test_db)
        .args(&["--config=local", "migrate"])
        .run(None)
        .await;
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let version = pgbouncer::version();
    let (mode, settings) = if version >= (1, 21) {
        ("transaction", "max_prepared_statements = 200")
    } else {
        ("session", "")
    };
    eprintln!("PgBouncer {}.{} in {mode} mode", version.0, version.1);
    let bouncer = PgBouncer::start(&test_db.url, mode, settings).await;
    let api = ServiceProcess::builder_with_url(&bouncer.url(&test_db.url))
        .args(&["--config=local", "--migrate=false"])
        .start()
        .await;
    run_main_flows(&api).await;
    assert!(
        !api.logs().contains("internal error"),
        "{}\n{}",
        api.logs(),
        bouncer.log()
    );
}

/// Registration, login, refresh, /me, client credentials and revocation, several clients at
/// once so that PgBouncer hands their transactions to different server connections.
async fn run_main_flows(api: &ServiceProcess) {
    let admin = api.admin_token().await;
    let flows = (0..6).map(|n| async move {
        let email = format!("bounced{n}@example.com");
        api.register(&email, "user-password-1").await;
        let pair = api.login(&email, "user-password-1").await;
        assert_eq!(api.me_status(&access_token(&pair)).await, 200);
        let refreshed = api.refresh(&string(&pair["refresh_token"])).await;
        assert_eq!(refreshed.status(), 200, "refresh of {email}");
        let refreshed: serde_json::Value = refreshed.json().await.expect("pair");
        let token = access_token(&refreshed);
        assert_eq!(api.me_status(&token).await, 200);
        let revoke = api
            .post_json("/api/v1/tokens/revoke", None, &json!({"token": token}))
            .await;
        assert_eq!(revoke.status(), 204);
        assert_eq!(
            api.me_status(&token).await,
            401,
            "a revoked token of {email}"
        );
    });
    futures::future::join_all(flows).await;
    create_role(api, &admin, "reader", &["iam:users:read"]).await;
    let (id, secret) = new_client(api, &admin, "reporting", "reader").await;
    let service_token = client_token(api, &id, &secret).await;
    let revoke = api
        .post_json(
            "/api/v1/tokens/revoke",
            None,
            &json!({"token": service_token}),
        )
        .await;
    assert_eq!(revoke.status(), 204);
}
