//! Prints, as one JSON object, the single-core cost of the operations that bound each
//! benchmark scenario: argon2id verify (at `PASSWORD_HASH_*`, default OWASP), RS256 signing
//! of an access token, and verify-and-validate of one. `bench/run` divides scenario
//! throughput by these limits.

use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use iam_core::revocation::Revocations;
use iam_core::token::{AccessTokenClaims, AccessTokenSigner, IssuancePolicy, TokenSubject};
use iam_core::{KeySet, PublicJwk, PublicJwks, VerificationRules, verify_access_token};
use openssl::rsa::Rsa;

/// Runs `operation` repeatedly for about `budget` and returns the mean time per call.
fn time_per_call(budget: Duration, mut operation: impl FnMut()) -> Duration {
    operation();
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < budget {
        operation();
        calls += 1;
    }
    started.elapsed() / calls.max(1)
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let budget = Duration::from_millis(u64::from(env_u32("LIMITS_MILLIS_PER_OPERATION", 2000)));
    let memory = env_u32("PASSWORD_HASH_MEMORY_KIB", 19_456);
    let iterations = env_u32("PASSWORD_HASH_ITERATIONS", 2);
    let parallelism = env_u32("PASSWORD_HASH_PARALLELISM", 1);
    let argon2 = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(memory, iterations, parallelism, None).map_err(|error| error.to_string())?,
    );
    let stored = argon2
        .hash_password(b"correct horse battery")
        .map_err(|error| error.to_string())?
        .to_string();
    let parsed = PasswordHash::new(&stored).map_err(|error| error.to_string())?;
    let argon2_verify = time_per_call(budget, || {
        let _ = argon2.verify_password(b"correct horse battery", &parsed);
    });

    let rsa = Rsa::generate(2048)?;
    let jwk = PublicJwk::from_rsa_components(&rsa.n().to_vec(), &rsa.e().to_vec());
    let signer = AccessTokenSigner::from_private_key_der(&jwk.kid, &rsa.private_key_to_der()?)
        .map_err(|error| error.to_string())?;
    let keys =
        KeySet::from_jwks(&PublicJwks { keys: vec![jwk] }).map_err(|error| error.to_string())?;
    let permissions = vec!["orders:read".to_owned(), "orders:write".to_owned()];
    let policy = IssuancePolicy {
        issuer: "iam".into(),
        audience: "iam".into(),
        ttl_seconds: 86_400,
    };
    let subject = TokenSubject {
        subject: "01a20f53-974a-70fa-8c7a-0e795749980f",
        client_id: "iam",
        email: Some("bench@example.com"),
        role: "clerk",
        permissions: &permissions,
        scope: None,
    };
    let now = 1_800_000_000;
    let claims = AccessTokenClaims::issue(&policy, &subject, now);
    let rs256_sign = time_per_call(budget, || {
        let _ = signer.sign(&claims);
    });
    let token = signer.sign(&claims).map_err(|error| error.to_string())?;
    let rules = VerificationRules {
        issuer: "iam".into(),
        audience: "iam".into(),
        leeway_seconds: 30,
    };
    let rs256_verify = time_per_call(budget, || {
        let _ = verify_access_token(&token, &keys, &rules, &Revocations::NONE, now);
    });
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let report = serde_json::json!({
        "argon2id": {"memory_kib": memory, "iterations": iterations, "parallelism": parallelism,
                      "verify_us": micros(argon2_verify), "verifies_per_second_per_core": 1.0 / argon2_verify.as_secs_f64()},
        "rs256_sign_us": micros(rs256_sign),
        "signs_per_second_per_core": 1.0 / rs256_sign.as_secs_f64(),
        "token_verify_us": micros(rs256_verify),
        "verifies_per_second_per_core": 1.0 / rs256_verify.as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}
