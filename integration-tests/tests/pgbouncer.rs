//! The api's main flows, and iam-jwks, through PgBouncer (issue 19).
//!
//! In transaction pooling mode each transaction may run on another server connection, while
//! sqlx prepares named statements and caches them per connection: PgBouncer 1.21 and later
//! track them (`max_prepared_statements`), older ones cannot (with Debian 12's 1.18,
//! registration and login fail with "prepared statement … does not exist / already
//! exists"). So the distribution's PgBouncer runs in session mode, and a PgBouncer of 1.21
//! or later (`.ci/pgbouncer-trixie` installs Debian 13's) in transaction mode, with fewer
//! server connections than the api has connections to it, so that they are shared.
//!
//! Migrations take a session-level advisory lock, which transaction pooling cannot hold:
//! both tests run them against the server directly, as the README says.

use std::collections::HashMap;
use std::time::Duration;

use integration_tests::ServiceProcess;
use integration_tests::api::{access_token, claims_of, kid_of, string};
use integration_tests::clients::{client_token, create_role, new_client};
use integration_tests::database::TestDatabase;
use integration_tests::pgbouncer::{self, PgBouncer};
use integration_tests::{eventually, eventually_some};
use serde_json::{Value, json};

/// The api's connections (to PgBouncer).
const API_POOL: u32 = 8;
/// PgBouncer's server connections per database and user in transaction mode: fewer than the
/// api's connections, so that the api's transactions take turns on them.
const SERVER_POOL: u32 = 2;
/// iam-api has about 70 distinct statements and iam-jwks 5, all within sqlx's cache of 100
/// per connection: 200 (PgBouncer 1.24's default, the README's advice) keeps every one
/// prepared on each server connection.
const MAX_PREPARED_STATEMENTS: u32 = 200;
/// A key-encryption key of the test's own: with none, the api warns that it uses the
/// development key, and the log check admits no warning.
const KEY_ENCRYPTION_KEY: &str = "cGdib3VuY2VyLXRlc3Qta2V5LWVuY3J5cHRpb24tMzI=";
/// How many clients run the flows at once.
const CONCURRENT_FLOWS: usize = 8;

#[tokio::test]
async fn the_main_flows_work_through_the_distributions_pgbouncer_in_session_mode() {
    let binary = pgbouncer::distribution();
    let version = pgbouncer::version(&binary).unwrap_or_else(|| {
        panic!("the PgBouncer test needs pgbouncer on PATH (apt-get install pgbouncer)")
    });
    eprintln!("the distribution's PgBouncer {}.{}", version.0, version.1);
    let test_db = migrated_database().await;
    // Session mode gives each client connection a server connection of its own while it
    // is open: as many as the api's pool.
    let bouncer = PgBouncer::start(
        &binary,
        &test_db.url,
        "session",
        &format!("default_pool_size = {API_POOL}"),
    )
    .await;
    let api = ServiceProcess::builder_with_url(&bouncer.url(&test_db.url))
        .args(&["--config=local", "--migrate=false"])
        .env("IAM_KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
        .env("POSTGRES_POOL_SIZE", API_POOL.to_string())
        .start()
        .await;
    run_main_flows(&api).await;
    assert_clean_log(&api, &bouncer);
}

#[tokio::test]
async fn the_main_flows_key_rotation_and_iam_jwks_work_through_pgbouncer_in_transaction_mode() {
    let binary = pgbouncer::tracking_prepared_statements();
    let version = pgbouncer::version(&binary).unwrap_or_default();
    eprintln!(
        "PgBouncer {}.{} ({}) in transaction mode",
        version.0,
        version.1,
        binary.display()
    );
    let test_db = migrated_database().await;
    let bouncer = PgBouncer::start(
        &binary,
        &test_db.url,
        "transaction",
        &format!(
            "default_pool_size = {SERVER_POOL}\n\
             max_prepared_statements = {MAX_PREPARED_STATEMENTS}"
        ),
    )
    .await;
    let url = bouncer.url(&test_db.url);
    // Rotating every 4 s runs the rotation task, with its transaction-level advisory lock,
    // through PgBouncer while the test runs (start-up created the first key the same way).
    let api = ServiceProcess::builder_with_url(&url)
        .args(&["--config=local", "--migrate=false"])
        .env("IAM_KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
        .env("POSTGRES_POOL_SIZE", API_POOL.to_string())
        .env("KEY_ROTATION_INTERVAL", "4")
        .env("KEY_ROTATION_GRACE", "1")
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    run_main_flows(&api).await;
    assert_server_connections_were_shared(&bouncer, &test_db.name).await;

    // iam-jwks through the same PgBouncer (and the same server connections).
    let jwks = ServiceProcess::jwks_builder_with_url(&url).start().await;
    let (user_id, token) = api.user_with_token("watched@example.com").await;
    let first_kid = kid_of(&token);
    // Within its reload interval: a rotation may have published a key since it started.
    eventually(
        Duration::from_secs(10),
        "iam-jwks publishes the key the api signs with",
        || async { jwks.published_kids().await.contains(&first_kid) },
    )
    .await;
    // A revocation made through the api reaches the feed iam-jwks builds.
    let revoke = api
        .post_json("/api/v1/tokens/revoke", None, &json!({"token": token}))
        .await;
    assert_eq!(revoke.status(), 204);
    let jti = string(&claims_of(&token)["jti"]);
    eventually(
        Duration::from_secs(10),
        "the revocation feed lists the revoked token",
        || async { feed(&jwks).await["tokens"].get(&jti).is_some() },
    )
    .await;
    let admin = api.admin_token().await;
    let role_change = api.set_role(&admin, &user_id, "admin").await;
    assert_eq!(role_change.status(), 200);
    eventually(
        Duration::from_secs(10),
        "the revocation feed lists the user whose role changed",
        || async { feed(&jwks).await["subjects"].get(&user_id).is_some() },
    )
    .await;

    // The rotation task rotates, and iam-jwks publishes the new key.
    let rotated_kid = eventually_some(
        Duration::from_secs(20),
        "an automatic rotation through PgBouncer",
        || async {
            let pair = api.login("watched@example.com", "user-password-1").await;
            let kid = kid_of(&access_token(&pair));
            (kid != first_kid).then_some(kid)
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "iam-jwks publishes the rotated key",
        || async { jwks.published_kids().await.contains(&rotated_kid) },
    )
    .await;
    assert_clean_log(&api, &bouncer);
    assert_clean_log(&jwks, &bouncer);
}

/// A new test database with the schema applied directly, not through PgBouncer.
async fn migrated_database() -> TestDatabase {
    let test_db = TestDatabase::create().await;
    let migrate = ServiceProcess::builder(&test_db)
        .args(&["--config=local", "migrate"])
        .run(None)
        .await;
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    test_db
}

/// Registration, login, refresh, /me, client credentials and revocation, several clients at
/// once so that the api's connections to PgBouncer are all busy together.
async fn run_main_flows(api: &ServiceProcess) {
    let admin = api.admin_token().await;
    let flows = (0..CONCURRENT_FLOWS).map(|n| async move {
        let email = format!("bounced{n}@example.com");
        api.register(&email, "user-password-1").await;
        let pair = api.login(&email, "user-password-1").await;
        assert_eq!(api.me_status(&access_token(&pair)).await, 200);
        let refreshed = api.refresh(&string(&pair["refresh_token"])).await;
        assert_eq!(refreshed.status(), 200, "refresh of {email}");
        let refreshed: Value = refreshed.json().await.expect("pair");
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

/// Asserts, from PgBouncer's admin console, that the api's transactions ran on more than one
/// server connection, each of which had statements prepared on it by PgBouncer, while the
/// api held more connections to PgBouncer than there were server connections: transactions
/// of one api connection ran on different server connections.
async fn assert_server_connections_were_shared(bouncer: &PgBouncer, database: &str) {
    let of_database = |rows: Vec<HashMap<String, String>>| -> Vec<HashMap<String, String>> {
        rows.into_iter()
            .filter(|row| row.get("database").map(String::as_str) == Some(database))
            .collect()
    };
    let servers = of_database(bouncer.show("SERVERS").await);
    let clients = of_database(bouncer.show("CLIENTS").await);
    let context = format!("servers: {servers:?}\nclients: {clients:?}");
    assert!(
        servers.len() >= 2 && servers.len() <= SERVER_POOL as usize,
        "{context}"
    );
    assert!(
        clients.len() > servers.len(),
        "more api connections than server connections: {context}"
    );
    for server in &servers {
        let prepared: u32 = server
            .get("prepared_statements")
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        assert!(
            prepared > 0,
            "statements prepared on each server: {context}"
        );
    }
}

/// The revocation feed iam-jwks serves.
async fn feed(jwks: &ServiceProcess) -> Value {
    document(jwks, "/api/v1/revocations").await
}

/// The JSON document `service` answers `path` with, which must be a 200.
async fn document(service: &ServiceProcess, path: &str) -> Value {
    let response = service.get(path, None).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("a JSON document")
}

/// Asserts that `service` logged no warning or error (a statement PgBouncer made fail, a
/// background task that could not reach the database), no internal error and no 5xx, and
/// that PgBouncer logged no warning or error either.
fn assert_clean_log(service: &ServiceProcess, bouncer: &PgBouncer) {
    let logs = without_colours(&service.logs());
    let pgbouncer_log = bouncer.log();
    let context = || {
        format!(
            "{}:\n{logs}\nPgBouncer:\n{pgbouncer_log}",
            service.log_path.display()
        )
    };
    for sign in [
        " WARN ",
        " ERROR ",
        "internal error",
        "prepared statement",
        "status=5",
    ] {
        assert!(!logs.contains(sign), "logged {sign:?}: {}", context());
    }
    for sign in [" WARNING ", " ERROR ", " FATAL "] {
        assert!(
            !pgbouncer_log.contains(sign),
            "PgBouncer logged {sign:?}: {}",
            context()
        );
    }
}

/// `text` without the ANSI colour sequences (`ESC [ … m`) the services' log lines carry.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut in_sequence = false;
    for character in text.chars() {
        match (in_sequence, character) {
            (false, '\x1b') => in_sequence = true,
            (false, _) => plain.push(character),
            (true, 'm') => in_sequence = false,
            (true, _) => {}
        }
    }
    plain
}
