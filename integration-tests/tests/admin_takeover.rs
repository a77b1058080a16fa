//! The first admin cannot be taken over by whoever registered the operator's address first:
//! `admin create` refuses an existing non-admin account unless `--promote` is given (which
//! replaces its password and revokes its sessions), and `BOOTSTRAP_ADMIN_*` never promotes.

use integration_tests::api::{access_token, string};
use integration_tests::{ServiceProcess, TestDatabase};
use serde_json::{Value, json};

const SQUATTER_PASSWORD: &str = "squatter-password-1";
const OPERATOR_PASSWORD: &str = "operator-password-1";

/// An api without a bootstrap admin, so that accounts can be registered first.
async fn api_without_bootstrap(db: &TestDatabase) -> ServiceProcess {
    ServiceProcess::builder(db)
        .without_env("BOOTSTRAP_ADMIN_EMAIL")
        .without_env("BOOTSTRAP_ADMIN_PASSWORD")
        .start()
        .await
}

async fn admin_create(db: &TestDatabase, email: &str, promote: bool) -> std::process::Output {
    admin_create_with(db, email, promote, OPERATOR_PASSWORD).await
}

async fn admin_create_with(
    db: &TestDatabase,
    email: &str,
    promote: bool,
    password: &str,
) -> std::process::Output {
    let mut args = vec!["admin", "create", "--email", email, "--password-stdin"];
    if promote {
        args.push("--promote");
    }
    ServiceProcess::builder(db)
        .args(&args)
        .run(Some(&format!("{password}\n")))
        .await
}

async fn role_of(api: &ServiceProcess, email: &str, password: &str) -> String {
    let pair = api.login(email, password).await;
    let me: Value = api
        .get("/api/v1/me", Some(&access_token(&pair)))
        .await
        .json()
        .await
        .expect("json");
    string(&me["role"])
}

#[tokio::test]
async fn admin_create_refuses_an_address_someone_else_registered() {
    let db = TestDatabase::create().await;
    let api = api_without_bootstrap(&db).await;
    // The squatter registers the operator's address in another spelling.
    api.register("Ops@Example.com", SQUATTER_PASSWORD).await;
    for spelling in ["ops@example.com", "OPS@EXAMPLE.COM", "  ops@Example.com "] {
        let output = admin_create(&db, spelling, false).await;
        assert_eq!(output.status.code(), Some(2), "{spelling}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("already registered") && stderr.contains("--promote"),
            "the refusal says why and what to do: {stderr}"
        );
    }
    // Nothing changed: still a user, still the squatter's password, operator's refused.
    assert_eq!(
        role_of(&api, "ops@example.com", SQUATTER_PASSWORD).await,
        "user"
    );
    assert_eq!(
        api.login_attempt("ops@example.com", OPERATOR_PASSWORD)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn promote_takes_the_account_over_and_signs_the_squatter_out() {
    let db = TestDatabase::create().await;
    let api = api_without_bootstrap(&db).await;
    api.register("ops@example.com", SQUATTER_PASSWORD).await;
    // The squatter holds two sessions, from two logins.
    let first = api.login("ops@example.com", SQUATTER_PASSWORD).await;
    let second = api.login("ops@example.com", SQUATTER_PASSWORD).await;

    let squatter_token = access_token(&first);
    assert_eq!(
        api.get("/api/v1/me", Some(&squatter_token)).await.status(),
        200
    );

    let output = admin_create(&db, "OPS@example.com", true).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("promoted"), "{stdout}");
    assert!(stdout.contains("2 refresh token(s) revoked"), "{stdout}");

    // The squatter's password and refresh tokens are gone; a refresh would have minted an
    // admin token from the promoted account.
    assert_eq!(
        api.login_attempt("ops@example.com", SQUATTER_PASSWORD)
            .await
            .status(),
        401
    );
    for pair in [&first, &second] {
        let refreshed = api
            .post_json(
                "/api/v1/tokens",
                None,
                &json!({"grant_type": "refresh_token", "refresh_token": string(&pair["refresh_token"])}),
            )
            .await;
        assert_eq!(refreshed.status(), 401);
    }
    // Its access tokens too: the api judges them by the account's current role, so one left
    // valid would now act as admin.
    assert_eq!(
        api.get("/api/v1/me", Some(&squatter_token)).await.status(),
        401
    );
    let listing = api.get("/api/v1/users", Some(&squatter_token)).await;
    assert_eq!(listing.status(), 401);
    assert_eq!(
        role_of(&api, "ops@example.com", OPERATOR_PASSWORD).await,
        "admin"
    );
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn admin_create_on_an_existing_admin_changes_nothing() {
    let db = TestDatabase::create().await;
    let api = api_without_bootstrap(&db).await;
    let created = admin_create(&db, "ops@example.com", false).await;
    assert!(created.status.success());
    let pair = api.login("ops@example.com", OPERATOR_PASSWORD).await;
    for promote in [false, true] {
        let again = admin_create_with(&db, "ops@example.com", promote, "another-password-1").await;
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stdout).contains("already an admin"));
    }
    // The password and the session stay.
    assert_eq!(
        api.login_attempt("ops@example.com", "another-password-1")
            .await
            .status(),
        401
    );
    let refreshed = api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"grant_type": "refresh_token", "refresh_token": string(&pair["refresh_token"])}),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn the_bootstrap_admin_never_promotes_an_existing_account() {
    let db = TestDatabase::create().await;
    let api = api_without_bootstrap(&db).await;
    api.register("ops@example.com", SQUATTER_PASSWORD).await;
    drop(api);
    for spelling in ["ops@example.com", "Ops@Example.COM"] {
        let api = ServiceProcess::builder(&db)
            .env("BOOTSTRAP_ADMIN_EMAIL", spelling)
            .env("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD)
            .start()
            .await;
        // It serves, and says in its log why it did not create the admin.
        let logs = api.logs();
        assert!(
            logs.contains("BOOTSTRAP_ADMIN_EMAIL belongs to an existing non-admin account")
                && logs.contains("ops@example.com"),
            "{logs}"
        );
        assert_eq!(
            role_of(&api, "ops@example.com", SQUATTER_PASSWORD).await,
            "user"
        );
        assert_eq!(
            api.login_attempt("ops@example.com", OPERATOR_PASSWORD)
                .await
                .status(),
            401
        );
    }
}
