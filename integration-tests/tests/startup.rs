//! Process behaviour: configuration errors, migrations, database creation, shutdown.

use std::time::{Duration, Instant};

use integration_tests::api::expect_problem;
use integration_tests::{ServiceProcess, TestDatabase};
use serde_json::json;

#[tokio::test]
async fn prod_without_required_variables_exits_2_naming_every_one() {
    let db = TestDatabase::create().await;
    let output = ServiceProcess::builder(&db)
        .without_env("POSTGRES_CONNECTION_STRING")
        .env("PORT", "not-a-port")
        .args(&["--config=prod"])
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for variable in [
        "POSTGRES_CONNECTION_STRING",
        "IAM_KEY_ENCRYPTION_KEY",
        "PORT",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in {stderr}"
        );
    }
}

#[tokio::test]
async fn every_process_refuses_a_jwks_refresh_interval_of_0_the_same_way() {
    let db = TestDatabase::create().await;
    let builders = [
        ServiceProcess::builder(&db),
        ServiceProcess::jwks_builder(&db),
        ServiceProcess::sidecar_builder("http://127.0.0.1:9", "http://127.0.0.1:9/jwks.json"),
    ];
    for builder in builders {
        let output = builder.env("JWKS_REFRESH_INTERVAL", "0").run(None).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("JWKS_REFRESH_INTERVAL is invalid: must be at least 1 second"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_variable_that_is_not_utf8_exits_2_naming_it_only_if_the_process_reads_it() {
    let db = TestDatabase::create().await;
    let cases = [
        (ServiceProcess::builder(&db), "BOOTSTRAP_ADMIN_PASSWORD"),
        (ServiceProcess::jwks_builder(&db), "JWKS_PUBLIC_URL"),
        (
            ServiceProcess::sidecar_builder("http://127.0.0.1:9", "http://127.0.0.1:9/jwks.json"),
            "Upstream_Url",
        ),
    ];
    for (builder, variable) in cases {
        // Read by the process (envy matches names case-insensitively): refused by name, in
        // one line, and not a panic.
        let output = builder
            .clone()
            .env_bytes(variable, b"http://in\xffvalid")
            .run(None)
            .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("{variable} is invalid: not valid UTF-8")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");

        // Not read by it: ignored, so the process goes on to the next problem (here a
        // JWKS_REFRESH_INTERVAL of 0, which stops each process at once).
        let output = builder
            .env_bytes("SOMETHING_ELSE", b"\xfe\xff")
            .env("JWKS_REFRESH_INTERVAL", "0")
            .run(None)
            .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("JWKS_REFRESH_INTERVAL is invalid") && !stderr.contains("UTF-8"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn an_unknown_config_profile_exits_2() {
    let db = TestDatabase::create().await;
    let output = ServiceProcess::builder(&db)
        .args(&["--config=staging"])
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn without_migrate_a_missing_schema_exits_2_asking_for_migrate() {
    let db = TestDatabase::create().await;
    let output = ServiceProcess::builder(&db)
        .args(&["--config=local"])
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("run with --migrate=true"));
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_to_run_concurrently() {
    let db = TestDatabase::create().await;
    let migrate =
        ServiceProcess::builder(&db).args(&["--config=local", "--migrate=true", "keys", "list"]);
    let (first, second) = tokio::join!(migrate.run(None), migrate.run(None));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let again = migrate.run(None).await;
    assert!(again.status.success());
    // Now a start without --migrate accepts the schema.
    let api = ServiceProcess::builder(&db)
        .args(&["--config=local"])
        .start()
        .await;
    assert_eq!(api.get("/api/v1/healthcheck", None).await.status(), 200);
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM roles")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert_eq!(roles, 2);
}

#[tokio::test]
async fn the_migrate_command_applies_the_schema_and_exits_so_prod_replicas_can_start() {
    let db = TestDatabase::create().await;
    // What the Helm chart's migration job runs, with the prod profile's required variables.
    let key_encryption_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let migrate = ServiceProcess::builder(&db)
        .env("IAM_KEY_ENCRYPTION_KEY", key_encryption_key)
        .args(&["--config=prod", "migrate"]);
    let output = migrate.run(None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Applying them again is a no-op.
    assert!(migrate.run(None).await.status.success());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert!(applied >= 2, "{applied} migrations recorded");
    let api = ServiceProcess::builder(&db)
        .env("IAM_KEY_ENCRYPTION_KEY", key_encryption_key)
        .args(&["--config=prod"])
        .start()
        .await;
    assert_eq!(api.get("/api/v1/healthcheck", None).await.status(), 200);
}

#[tokio::test]
async fn two_replicas_starting_together_create_one_signing_key() {
    let db = TestDatabase::create().await;
    let (first, second) = tokio::join!(ServiceProcess::start(&db), ServiceProcess::start(&db));
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert_eq!(keys, 1);
    // A token from one replica is accepted by the other.
    let (_, token) = first.user_with_token("ada@example.com").await;
    assert_eq!(second.get("/api/v1/me", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn local_creates_a_missing_database_and_accepts_python_style_urls() {
    let db = TestDatabase::unused();
    assert!(!db.exists().await);
    let python_style = db.url.replacen("postgres://", "postgresql+asyncpg://", 1);
    let api = ServiceProcess::builder(&db)
        .env("POSTGRES_CONNECTION_STRING", python_style)
        .start()
        .await;
    assert!(db.exists().await);
    assert_eq!(api.get("/api/v1/healthcheck", None).await.status(), 200);
}

#[tokio::test]
async fn stage_does_not_create_a_missing_database() {
    let db = TestDatabase::unused();
    let output = ServiceProcess::builder(&db)
        .env(
            "IAM_KEY_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .args(&["--config=stage", "--migrate=true"])
        .run(None)
        .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!db.exists().await);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let db = TestDatabase::create().await;
    // An expensive hash makes a login slow enough to be in flight during the signal.
    let mut api = ServiceProcess::builder(&db)
        .env("PASSWORD_HASH_MEMORY_KIB", "65536")
        .env("PASSWORD_HASH_ITERATIONS", "8")
        .start()
        .await;
    let body = json!({"email": "nobody@example.com", "password": "some password"});
    let login = api.post_json("/api/v1/tokens", None, &body);
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        api.terminate();
    };
    let (response, ()) = tokio::join!(login, terminate);
    expect_problem(response, 401).await;
    let started = Instant::now();
    let status = api.wait(Duration::from_secs(35)).await;
    assert_eq!(status.code(), Some(0), "{}", api.logs());
    assert!(started.elapsed() < Duration::from_secs(35));
    assert!(api.logs().contains("shutting down"));
}
