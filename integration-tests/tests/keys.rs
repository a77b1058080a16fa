//! Signing keys: created on first start, encrypted at rest, listed, rotated and imported
//! from the command line.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use integration_tests::api::{access_token, kid_of};
use integration_tests::{ServiceProcess, TestDatabase, eventually, eventually_some};
use openssl::rsa::Rsa;
use serde_json::Value;

fn keys_command(db: &TestDatabase, args: &[&str]) -> integration_tests::ServiceProcessBuilder {
    let mut full = vec!["--config=local", "keys"];
    full.extend_from_slice(args);
    ServiceProcess::builder(db)
        .env("KEY_ROTATION_GRACE", "0")
        .args(&full)
}

#[tokio::test]
async fn the_first_start_creates_one_active_2048_bit_key_encrypted_at_rest() {
    let db = TestDatabase::create().await;
    let _api = ServiceProcess::start(&db).await;
    let (jwk, sealed, kek_id): (sqlx::types::Json<Value>, Vec<u8>, String) = sqlx::query_as(
        "SELECT public_jwk, private_key_ciphertext, key_encryption_key_id FROM signing_keys",
    )
    .fetch_one(&db.pool().await)
    .await
    .expect("one key");
    let modulus = URL_SAFE_NO_PAD
        .decode(jwk.0["n"].as_str().expect("n"))
        .expect("b64");
    assert_eq!(modulus.len() * 8, 2048);
    assert!(
        jwk.0.get("d").is_none(),
        "no private member in the public JWK"
    );
    assert_eq!(kek_id.len(), 16);
    // AES-GCM output is not a DER structure (which would start with a SEQUENCE tag 0x30 0x82).
    assert_ne!(&sealed[..2], &[0x30, 0x82]);

    let output = keys_command(&db, &["list"]).run(None).await;
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(listing.contains("active"), "{listing}");
    assert!(
        listing.contains(jwk.0["kid"].as_str().expect("kid")),
        "{listing}"
    );
}

#[tokio::test]
async fn a_wrong_key_encryption_key_stops_the_start_with_a_clear_message() {
    let db = TestDatabase::create().await;
    drop(ServiceProcess::start(&db).await);
    let output = ServiceProcess::builder(&db)
        .env(
            "IAM_KEY_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("key-encryption key"));
}

#[tokio::test]
async fn a_rotation_reaches_the_running_service_and_old_tokens_stay_valid() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let (_, old_token) = api.user_with_token("ada@example.com").await;
    let old_kid = kid_of(&old_token);

    let output = keys_command(&db, &["rotate"]).run(None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let new_token = eventually_some(
        Duration::from_secs(10),
        "the service signs with the new key",
        || async {
            let token = access_token(&api.login("ada@example.com", "user-password-1").await);
            (kid_of(&token) != old_kid).then_some(token)
        },
    )
    .await;
    assert_eq!(api.get("/api/v1/me", Some(&new_token)).await.status(), 200);
    assert_eq!(api.get("/api/v1/me", Some(&old_token)).await.status(), 200);

    let listing = keys_command(&db, &["list"]).run(None).await;
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("retired") && listing.contains("active"),
        "{listing}"
    );
}

#[tokio::test]
async fn import_accepts_rsa_2048_pem_and_refuses_anything_weaker() {
    let db = TestDatabase::create().await;
    drop(ServiceProcess::start(&db).await);
    let dir = std::env::temp_dir().join(format!("iam-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");

    let good = dir.join("good.pem");
    let rsa = Rsa::generate(2048).expect("rsa");
    let pkcs8 = openssl::pkey::PKey::from_rsa(rsa)
        .expect("pkey")
        .private_key_to_pem_pkcs8()
        .expect("pem");
    std::fs::write(&good, pkcs8).expect("write");
    let output = keys_command(&db, &["import", "--pem-file", good.to_str().expect("path")])
        .run(None)
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let weak = dir.join("weak.pem");
    std::fs::write(
        &weak,
        Rsa::generate(1024)
            .expect("rsa")
            .private_key_to_pem()
            .expect("pem"),
    )
    .expect("write");
    let output = keys_command(&db, &["import", "--pem-file", weak.to_str().expect("path")])
        .run(None)
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("2048"));

    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    let output = keys_command(
        &db,
        &["import", "--pem-file", garbage.to_str().expect("path")],
    )
    .run(None)
    .await;
    assert_eq!(output.status.code(), Some(2));

    let duplicate = keys_command(&db, &["import", "--pem-file", good.to_str().expect("path")])
        .run(None)
        .await;
    assert_eq!(duplicate.status.code(), Some(2));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys")
        .fetch_one(&db.pool().await)
        .await
        .expect("count");
    assert_eq!(count, 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn automatic_rotation_rotates_once_per_interval_across_replicas() {
    let db = TestDatabase::create().await;
    let replica = || {
        ServiceProcess::builder(&db)
            .env("KEY_ROTATION_INTERVAL", "4")
            .env("KEY_ROTATION_GRACE", "1")
            .env("JWKS_REFRESH_INTERVAL", "1")
    };
    let first = replica().start().await;
    let _second = replica().start().await;
    let (_, token) = first.user_with_token("ada@example.com").await;
    let first_kid = kid_of(&token);
    eventually(
        Duration::from_secs(15),
        "an automatic rotation happens",
        || async {
            let token = access_token(&first.login("ada@example.com", "user-password-1").await);
            kid_of(&token) != first_kid
        },
    )
    .await;
    // Two replicas checking concurrently must not both rotate: keys are spaced by the interval.
    let activations: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT activates_at FROM signing_keys ORDER BY activates_at")
            .fetch_all(&db.pool().await)
            .await
            .expect("keys");
    for pair in activations.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(4),
            "{activations:?}"
        );
    }
}

#[tokio::test]
async fn during_an_encryption_key_rollout_old_replicas_keep_signing_and_verify_new_tokens() {
    const OLD_KEK: &str = "b2xkLWtleS1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg=";
    const NEW_KEK: &str = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg=";
    let db = TestDatabase::create().await;
    let old = ServiceProcess::builder(&db)
        .env("IAM_KEY_ENCRYPTION_KEY", OLD_KEK)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let (_, old_token) = old.user_with_token("ada@example.com").await;
    let output = keys_command(&db, &["rotate"])
        .env("IAM_KEY_ENCRYPTION_KEY", NEW_KEK)
        .run(None)
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new = ServiceProcess::builder(&db)
        .env("IAM_KEY_ENCRYPTION_KEY", NEW_KEK)
        .start()
        .await;
    let new_token = access_token(&new.login("ada@example.com", "user-password-1").await);
    assert_ne!(kid_of(&new_token), kid_of(&old_token));

    // The old replica reloads its keys every second; once it has seen the new key...
    eventually(
        Duration::from_secs(10),
        "the old replica meets the new key",
        || async { old.logs().contains("cannot open the new signing key") },
    )
    .await;
    // ...it cannot open it, so it keeps signing with its current one...
    let still_old = access_token(&old.login("ada@example.com", "user-password-1").await);
    assert_eq!(kid_of(&still_old), kid_of(&old_token));
    // ...but it learned the new public key and accepts the new replica's tokens.
    assert_eq!(old.get("/api/v1/me", Some(&new_token)).await.status(), 200);
    assert_eq!(new.get("/api/v1/me", Some(&still_old)).await.status(), 200);
}
