//! Token forgery for negative tests: signs arbitrary headers and claims, with the service's
//! own key (read from the test database and opened with the local development key) or with
//! keys an attacker would have.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::symm::{Cipher, decrypt_aead};
use serde_json::{Value, json};

use crate::database::TestDatabase;

/// The key-encryption key iam-api uses in `--config=local` without `IAM_KEY_ENCRYPTION_KEY`.
const LOCAL_DEVELOPMENT_KEK: &[u8; 32] = b"iam-local-development-only-key!!";

/// The service's currently signing key: its kid and private key.
pub async fn service_signing_key(db: &TestDatabase) -> (String, PKey<Private>) {
    let (kid, sealed): (String, Vec<u8>) = sqlx::query_as(
        "SELECT kid, private_key_ciphertext FROM signing_keys
         WHERE activates_at <= now() AND (retires_at IS NULL OR retires_at > now())
         ORDER BY activates_at DESC LIMIT 1",
    )
    .fetch_one(&db.pool().await)
    .await
    .expect("an active signing key");
    let (nonce, rest) = sealed.split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    let der = decrypt_aead(
        Cipher::aes_256_gcm(),
        LOCAL_DEVELOPMENT_KEK,
        Some(nonce),
        kid.as_bytes(),
        ciphertext,
        tag,
    )
    .expect("the key opens with the local development key");
    (kid, PKey::private_key_from_der(&der).expect("der"))
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A compact JWS over `header` and `claims`, RS256-signed with `key`.
pub fn sign_rs256(header: &Value, claims: &Value, key: &PKey<Private>) -> String {
    let signing_input = format!("{}.{}", encode(header), encode(claims));
    let mut signer = Signer::new(MessageDigest::sha256(), key).expect("signer");
    signer.update(signing_input.as_bytes()).expect("update");
    let signature = signer.sign_to_vec().expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A compact JWS HMAC-SHA256-signed with `secret` (the classic key-confusion attack uses the
/// RSA public key as the secret).
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", encode(header), encode(claims));
    let key = PKey::hmac(secret).expect("hmac key");
    let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("signer");
    signer.update(signing_input.as_bytes()).expect("update");
    let signature = signer.sign_to_vec().expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The access-token header for `kid`.
pub fn header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "at+jwt", "kid": kid})
}

/// A valid claim set (issuer and audience `iam`) issued `issued_ago` seconds ago and valid
/// for `ttl` seconds from issuance.
pub fn claims(permissions: &[&str], issued_ago: i64, ttl: i64) -> Value {
    let now = chrono::Utc::now().timestamp() - issued_ago;
    json!({
        "iss": "iam",
        "sub": "0193a0c4-0000-7000-8000-00000000beef",
        "aud": "iam",
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "email": "forged@example.com",
        "role": "forged",
        "permissions": permissions,
    })
}
