//! iam-jwks: the published key set, caching, rotation order, outages, discovery, and
//! verification of our tokens by a verifier we did not write.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use iam_core::{KeySet, PublicJwks, VerificationRules, verify_access_token};
use integration_tests::api::{access_token, kid_of};
use integration_tests::{
    ServiceProcess, TestDatabase, eventually, eventually_some, interop_verifier,
};
use serde_json::Value;

const USER: &str = "ada@example.com";
const PASSWORD: &str = "user-password-1";

async fn rotate(db: &TestDatabase, envs: &[(&str, &str)]) {
    let mut command = ServiceProcess::builder(db).args(&["--config=local", "keys", "rotate"]);
    for (name, value) in envs {
        command = command.env(name, *value);
    }
    let output = command.run(None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_jwks_lists_public_keys_only_and_verifies_issued_tokens() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let response = jwks.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );
    let document: Value = response.json().await.expect("json");
    let keys = document["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    for key in keys {
        let mut members: Vec<&str> = key
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "RS256");
    }

    let (_, token) = api.user_with_token(USER).await;
    let set: PublicJwks = serde_json::from_value(document).expect("jwks");
    let rules = VerificationRules {
        issuer: "iam".into(),
        audience: "iam".into(),
        leeway_seconds: 30,
    };
    verify_access_token(
        &token,
        &KeySet::from_jwks(&set).expect("set"),
        &rules,
        &iam_core::revocation::Revocations::NONE,
        chrono::Utc::now().timestamp(),
    )
    .expect("the published key verifies the token");
}

#[tokio::test]
async fn if_none_match_gives_304_until_the_key_set_changes() {
    let db = TestDatabase::create().await;
    let _api = ServiceProcess::start(&db).await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let first = jwks.get("/.well-known/jwks.json", None).await;
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    for candidate in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let response = jwks
            .client
            .get(jwks.url("/.well-known/jwks.json"))
            .header("if-none-match", &candidate)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 304, "{candidate}");
        assert_eq!(response.headers()["etag"], etag.as_str());
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let stale = jwks
        .client
        .get(jwks.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 200);

    rotate(&db, &[("KEY_ROTATION_GRACE", "60")]).await;
    eventually(Duration::from_secs(10), "the etag changes", || async {
        let response = jwks
            .client
            .get(jwks.url("/.well-known/jwks.json"))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("send");
        response.status() == 200 && response.headers()["etag"] != etag.as_str()
    })
    .await;
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_kept_until_its_tokens_expire() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .env("ACCESS_TOKEN_TTL", "3")
        .env("JWT_LEEWAY", "0")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    api.register(USER, PASSWORD).await;
    let old_kid = kid_of(&access_token(&api.login(USER, PASSWORD).await));

    rotate(
        &db,
        &[
            ("KEY_ROTATION_GRACE", "4"),
            ("ACCESS_TOKEN_TTL", "3"),
            ("JWT_LEEWAY", "0"),
        ],
    )
    .await;
    let rotated_at = Instant::now();
    // Published at once (within a reload)...
    eventually(
        Duration::from_secs(3),
        "the new key is published",
        || async { jwks.published_kids().await.len() == 2 },
    )
    .await;
    let new_kid = jwks
        .published_kids()
        .await
        .into_iter()
        .find(|kid| *kid != old_kid)
        .expect("new kid");
    // ...while the old key still signs.
    if rotated_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            kid_of(&access_token(&api.login(USER, PASSWORD).await)),
            old_kid
        );
    }
    // After the grace the new key signs; the old one stays published meanwhile.
    eventually(
        Duration::from_secs(10),
        "the api signs with the new key",
        || async { kid_of(&access_token(&api.login(USER, PASSWORD).await)) == new_kid },
    )
    .await;
    // Once every token of the old key has expired (TTL 3 s after retirement), it is dropped.
    eventually(
        Duration::from_secs(10),
        "the old key is unpublished",
        || async { jwks.published_kids().await == [new_kid.clone()] },
    )
    .await;
    assert!(
        rotated_at.elapsed() >= Duration::from_secs(7),
        "dropped too early: {:?}",
        rotated_at.elapsed()
    );
}

#[tokio::test]
async fn two_api_replicas_switch_to_the_new_key_without_restart() {
    let db = TestDatabase::create().await;
    let first = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let second = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    first.register(USER, PASSWORD).await;
    let old_kid = kid_of(&access_token(&first.login(USER, PASSWORD).await));
    rotate(&db, &[("KEY_ROTATION_GRACE", "1")]).await;
    for replica in [&first, &second] {
        eventually(
            Duration::from_secs(10),
            "a replica signs with the new key",
            || async { kid_of(&access_token(&replica.login(USER, PASSWORD).await)) != old_kid },
        )
        .await;
    }
    let token = access_token(&first.login(USER, PASSWORD).await);
    assert_eq!(second.get("/api/v1/me", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn a_database_outage_keeps_the_jwks_and_reports_degraded_health() {
    let db = TestDatabase::create().await;
    drop(ServiceProcess::start(&db).await);
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let before = jwks
        .get("/.well-known/jwks.json", None)
        .await
        .text()
        .await
        .expect("body");

    db.refuse_connections().await;
    let health = eventually_some(Duration::from_secs(10), "health says degraded", || async {
        let health = jwks.get("/api/v1/healthcheck", None).await;
        assert_eq!(health.status(), 200, "a degraded jwks still serves");
        let health: Value = health.json().await.expect("json");
        (health["status"] == "degraded").then_some(health)
    })
    .await;
    assert_eq!(health["database"], "unreachable");
    let during = jwks.get("/.well-known/jwks.json", None).await;
    assert_eq!(during.status(), 200);
    assert_eq!(during.text().await.expect("body"), before);

    db.allow_connections().await;
    eventually(Duration::from_secs(10), "health recovers", || async {
        let health: Value = jwks
            .get("/api/v1/healthcheck", None)
            .await
            .json()
            .await
            .expect("json");
        health["status"] == "ok"
    })
    .await;
}

#[tokio::test]
async fn jwks_does_not_serve_before_the_first_key_set_loads() {
    let db = TestDatabase::create().await;
    // No schema yet: iam-jwks must wait rather than publish an empty or broken set.
    let mut jwks = ServiceProcess::jwks_builder(&db).spawn();
    eventually(
        Duration::from_secs(20),
        "iam-jwks reports that it cannot load the keys",
        || async { jwks.logs().contains("cannot load the signing keys yet") },
    )
    .await;
    assert!(!jwks.is_healthy().await);
    let _api = ServiceProcess::start(&db).await;
    jwks.wait_until_healthy().await;
    assert_eq!(jwks.published_kids().await.len(), 1);
}

#[tokio::test]
async fn jwks_needs_nothing_but_select_on_the_public_view() {
    let db = TestDatabase::create().await;
    drop(ServiceProcess::start(&db).await);
    let role = format!("jwks_{}", &db.name["iam_test_".len()..][..12]);
    let pool = db.pool().await;
    for statement in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'jwks-password'"),
        format!("GRANT CONNECT ON DATABASE {} TO {role}", db.name),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON published_signing_keys TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("grant");
    }
    let restricted_url = with_user(&db.url, &format!("{role}:jwks-password"));
    let restricted = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&restricted_url)
        .await
        .expect("connect as the restricted role");
    let denied = sqlx::query("SELECT private_key_ciphertext FROM signing_keys")
        .execute(&restricted)
        .await;
    assert!(
        denied.is_err(),
        "the restricted role must not read private keys"
    );
    restricted.close().await;

    let jwks = ServiceProcess::jwks_builder(&db)
        .env("POSTGRES_CONNECTION_STRING", restricted_url)
        .start()
        .await;
    assert_eq!(jwks.published_kids().await.len(), 1);
    drop(jwks);
    // Remove the role again: its privileges first, then the role itself.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY {role}")))
        .execute(&pool)
        .await
        .expect("drop owned");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&pool)
        .await
        .expect("drop role");
}

/// `url` with its user (and password) replaced by `userinfo`.
fn with_user(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{userinfo}@{host}/{path}")
}

#[tokio::test]
async fn discovery_names_the_issuer_endpoints_and_algorithms() {
    let db = TestDatabase::create().await;
    drop(ServiceProcess::start(&db).await);
    let jwks = ServiceProcess::jwks_builder(&db)
        .env("JWT_ISSUER", "https://id.example.com")
        .env("JWKS_PUBLIC_URL", "https://keys.example.com/")
        .env("API_PUBLIC_URL", "https://id.example.com")
        .start()
        .await;
    let response = jwks.get("/.well-known/openid-configuration", None).await;
    assert_eq!(response.status(), 200);
    let discovery: Value = response.json().await.expect("json");
    assert_eq!(discovery["issuer"], "https://id.example.com");
    assert_eq!(
        discovery["jwks_uri"],
        "https://keys.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        discovery["token_endpoint"],
        "https://id.example.com/api/v1/tokens"
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        discovery["grant_types_supported"],
        serde_json::json!(["password", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none", "client_secret_basic", "client_secret_post"])
    );
}

#[tokio::test]
async fn jwks_configuration_errors_exit_2_and_sigterm_exits_0() {
    let db = TestDatabase::create().await;
    let output = ServiceProcess::jwks_builder(&db)
        .without_env("POSTGRES_CONNECTION_STRING")
        .env("JWKS_REFRESH_INTERVAL", "soon")
        .args(&["--config=prod"])
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("POSTGRES_CONNECTION_STRING") && stderr.contains("JWKS_REFRESH_INTERVAL"),
        "{stderr}"
    );

    drop(ServiceProcess::start(&db).await);
    let mut jwks = ServiceProcess::jwks_builder(&db).start().await;
    jwks.terminate();
    assert_eq!(jwks.wait(Duration::from_secs(10)).await.code(), Some(0));
}

#[tokio::test]
async fn a_third_party_verifier_accepts_tokens_from_before_and_after_a_rotation() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    api.register(USER, PASSWORD).await;
    let before = access_token(&api.login(USER, PASSWORD).await);
    rotate(&db, &[("KEY_ROTATION_GRACE", "1")]).await;
    let after = eventually_some(
        Duration::from_secs(10),
        "the api signs with the new key",
        || async {
            let token = access_token(&api.login(USER, PASSWORD).await);
            (kid_of(&token) != kid_of(&before)).then_some(token)
        },
    )
    .await;
    assert_ne!(kid_of(&before), kid_of(&after));

    let jwks_url = jwks.url("/.well-known/jwks.json");
    let verify = |tokens: Vec<String>| {
        let jwks_url = jwks_url.clone();
        async move {
            let mut args = vec![
                interop_verifier().to_string_lossy().into_owned(),
                jwks_url,
                "iam".into(),
                "iam".into(),
            ];
            args.extend(tokens);
            tokio::process::Command::new("node")
                .args(&args)
                .output()
                .await
                .expect("run node")
        }
    };
    let output = verify(vec![before.clone(), after.clone()]).await;
    assert!(
        output.status.success(),
        "jose refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_ne!(lines[0]["kid"], lines[1]["kid"]);
    assert!(
        lines.iter().all(|line| line["client_id"] == "iam"),
        "{lines:?}"
    );

    // The same verifier refuses a tampered token, so the check above can fail.
    let mut parts: Vec<String> = after.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    claims["role"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let output = verify(vec![parts.join(".")]).await;
    assert!(!output.status.success(), "a tampered token was accepted");
}
