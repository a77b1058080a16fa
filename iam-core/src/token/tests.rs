#![allow(clippy::expect_used)] // test helpers report failure by panicking
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;

use super::*;
use crate::jwk::{PublicJwk, PublicJwks};
use crate::revocation::Revocations;

const NOW: i64 = 1_800_000_000;

struct TestKey {
    signer: AccessTokenSigner,
    jwk: PublicJwk,
    private: PKey<Private>,
}

fn test_key() -> TestKey {
    let rsa = Rsa::generate(2048).expect("rsa key");
    let jwk = PublicJwk::from_rsa_components(&rsa.n().to_vec(), &rsa.e().to_vec());
    let der = rsa.private_key_to_der().expect("der");
    let signer = AccessTokenSigner::from_private_key_der(&jwk.kid, &der).expect("signer");
    let private = PKey::from_rsa(rsa).expect("pkey");
    TestKey {
        signer,
        jwk,
        private,
    }
}

/// A correctly RS256-signed token with any header text (the issuer's signer fixes its own).
fn sign_with_header(key: &TestKey, header_json: &str, claims: &AccessTokenClaims) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"))
    );
    let mut signer = Signer::new(MessageDigest::sha256(), &key.private).expect("signer");
    signer.update(signing_input.as_bytes()).expect("update");
    let signature = signer.sign_to_vec().expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn rules() -> VerificationRules {
    VerificationRules {
        issuer: "iam".into(),
        audience: "iam".into(),
        leeway_seconds: 30,
    }
}

fn claims(now: i64) -> AccessTokenClaims {
    let permissions = vec!["iam:users:read".to_owned()];
    AccessTokenClaims::issue(
        &IssuancePolicy {
            issuer: "iam".into(),
            audience: "iam".into(),
            ttl_seconds: 300,
        },
        &TokenSubject {
            subject: "0193a0c4-0000-7000-8000-000000000001",
            client_id: "iam",
            email: Some("ada@example.com"),
            role: "admin",
            permissions: &permissions,
            scope: None,
        },
        now,
    )
}

fn keys_of(key: &TestKey) -> KeySet {
    KeySet::from_jwks(&PublicJwks {
        keys: vec![key.jwk.clone()],
    })
    .expect("key set")
}

fn forge(header: serde_json::Value, claims: &AccessTokenClaims, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json")),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn a_signed_token_verifies_and_round_trips_its_claims() {
    let key = test_key();
    let issued = claims(NOW);
    let token = key.signer.sign(&issued).expect("sign");
    let verified = verify_access_token(&token, &keys_of(&key), &rules(), &Revocations::NONE, NOW)
        .expect("verify");
    assert_eq!(verified, issued);
}

#[test]
fn a_client_token_has_no_email_and_carries_its_scope() {
    let key = test_key();
    let permissions = vec!["orders:read".to_owned()];
    let issued = AccessTokenClaims::issue(
        &IssuancePolicy {
            issuer: "iam".into(),
            audience: "iam".into(),
            ttl_seconds: 300,
        },
        &TokenSubject {
            subject: "svc-0123456789abcdefghij",
            client_id: "svc-0123456789abcdefghij",
            email: None,
            role: "billing",
            permissions: &permissions,
            scope: Some("orders:read"),
        },
        NOW,
    );
    let token = key.signer.sign(&issued).expect("sign");
    let payload = token.split('.').nth(1).expect("payload");
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    assert!(json.get("email").is_none(), "{json}");
    assert_eq!(json["scope"], "orders:read");
    assert_eq!(json["sub"], "svc-0123456789abcdefghij");
    let verified = verify_access_token(&token, &keys_of(&key), &rules(), &Revocations::NONE, NOW)
        .expect("verify");
    assert_eq!(verified.email, None);
    assert_eq!(verified.scope.as_deref(), Some("orders:read"));
    // A user's token has no scope claim.
    let user = claims(NOW);
    let json = serde_json::to_value(&user).expect("json");
    assert!(json.get("scope").is_none(), "{json}");
    assert_eq!(json["email"], "ada@example.com");
}

#[test]
fn the_header_names_rs256_at_jwt_and_the_kid() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let header_b64 = token.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("b64")).expect("json");
    assert_eq!(
        header,
        serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": key.jwk.kid})
    );
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = claims(NOW);
    forged.role = "superuser".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
    let tampered = parts.join(".");
    assert_eq!(
        verify_access_token(&tampered, &keys_of(&key), &rules(), &Revocations::NONE, NOW),
        Err(Reason::BadSignature)
    );
}

#[test]
fn a_stripped_signature_is_refused() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let stripped = format!("{}.", token.rsplit_once('.').expect("dot").0);
    assert_eq!(
        verify_access_token(&stripped, &keys_of(&key), &rules(), &Revocations::NONE, NOW),
        Err(Reason::BadSignature)
    );
}

#[test]
fn alg_none_and_hs256_are_refused_before_any_key_is_used() {
    let key = test_key();
    let keys = keys_of(&key);
    for alg in ["none", "HS256", "RS512", "PS256"] {
        let token = forge(
            serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": key.jwk.kid}),
            &claims(NOW),
            b"",
        );
        assert_eq!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
            Err(Reason::AlgorithmNotAllowed),
            "alg {alg}"
        );
    }
}

#[test]
fn only_the_access_token_type_is_accepted() {
    let key = test_key();
    let keys = keys_of(&key);
    for typ in [Some("JWT"), None, Some("id_token+jwt")] {
        let mut header = serde_json::json!({"alg": "RS256", "kid": key.jwk.kid});
        if let Some(typ) = typ {
            header["typ"] = typ.into();
        }
        let token = forge(header, &claims(NOW), b"sig");
        assert_eq!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
            Err(Reason::WrongType),
            "typ {typ:?}"
        );
    }
    assert!(is_access_token_type("application/AT+JWT"));
}

#[test]
fn a_key_named_inside_the_token_is_never_used() {
    let trusted = test_key();
    let attacker = test_key();
    // The attacker signs with its own key and points at it via an embedded `jwk`.
    let token = attacker.signer.sign(&claims(NOW)).expect("sign");
    assert_eq!(
        verify_access_token(
            &token,
            &keys_of(&trusted),
            &rules(),
            &Revocations::NONE,
            NOW
        ),
        Err(Reason::UnknownKeyId)
    );
    let embedded = forge(
        serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": trusted.jwk.kid, "jwk": attacker.jwk}),
        &claims(NOW),
        b"x",
    );
    assert_eq!(
        verify_access_token(
            &embedded,
            &keys_of(&trusted),
            &rules(),
            &Revocations::NONE,
            NOW
        ),
        Err(Reason::BadSignature)
    );
}

#[test]
fn missing_kid_garbage_and_oversized_tokens_are_refused() {
    let key = test_key();
    let keys = keys_of(&key);
    let no_kid = forge(
        serde_json::json!({"alg": "RS256", "typ": "at+jwt"}),
        &claims(NOW),
        b"x",
    );
    assert_eq!(
        verify_access_token(&no_kid, &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::MissingKeyId)
    );
    assert_eq!(
        verify_access_token("not-a-token", &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::Malformed)
    );
    assert_eq!(
        verify_access_token("a.b.c.d", &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::Malformed)
    );
    let huge = "a".repeat(MAX_ACCESS_TOKEN_BYTES + 1);
    assert_eq!(
        verify_access_token(&huge, &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::TooLarge)
    );
}

#[test]
fn a_correctly_signed_token_with_a_crit_header_is_refused() {
    let key = test_key();
    let keys = keys_of(&key);
    let kid = &key.jwk.kid;
    let plain = format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#);
    // The same header without `crit` verifies, so each case fails for `crit` alone.
    assert!(
        verify_access_token(
            &sign_with_header(&key, &plain, &claims(NOW)),
            &keys,
            &rules(),
            &Revocations::NONE,
            NOW
        )
        .is_ok()
    );
    for crit in [
        r#""crit":[]"#,
        r#""crit":["exp"]"#,
        r#""crit":["b64"],"b64":false"#,
        r#""crit":["https://example.com/ext"],"https://example.com/ext":1"#,
        r#""crit":["kid"]"#,
        r#""crit":"b64""#,
        r#""crit":null"#,
        r#""crit":{}"#,
        r#""crit":0"#,
        r#""crit":[[]]"#,
    ] {
        for header in [
            format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}",{crit}}}"#),
            format!(r#"{{{crit},"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#),
        ] {
            let token = sign_with_header(&key, &header, &claims(NOW));
            assert_eq!(
                verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
                Err(Reason::UnsupportedCritical),
                "{header}"
            );
        }
    }
}

#[test]
fn crit_is_judged_after_alg_and_typ_and_before_the_key_is_looked_up() {
    let key = test_key();
    let keys = keys_of(&key);
    let kid = &key.jwk.kid;
    let cases = [
        (
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}","crit":[]}}"#),
            Reason::AlgorithmNotAllowed,
        ),
        (
            format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}","crit":[]}}"#),
            Reason::WrongType,
        ),
        (
            r#"{"alg":"RS256","typ":"at+jwt","crit":[]}"#.to_owned(),
            Reason::UnsupportedCritical,
        ),
        // An unknown kid with `crit` is refused without costing a key refetch.
        (
            r#"{"alg":"RS256","typ":"at+jwt","kid":"nope","crit":["exp"]}"#.to_owned(),
            Reason::UnsupportedCritical,
        ),
        // Two `crit` members cannot be read unambiguously.
        (
            format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","crit":[],"crit":[]}}"#),
            Reason::Malformed,
        ),
    ];
    for (header, expected) in cases {
        let token = sign_with_header(&key, &header, &claims(NOW));
        assert_eq!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
            Err(expected),
            "{header}"
        );
    }
}

#[test]
fn every_reason_is_listed_once_with_a_distinct_snake_case_name() {
    // Adding a variant breaks this match until it is listed in `Reason::ALL` too.
    let position = |reason: Reason| match reason {
        Reason::TooLarge => 0,
        Reason::Malformed => 1,
        Reason::AlgorithmNotAllowed => 2,
        Reason::WrongType => 3,
        Reason::UnsupportedCritical => 4,
        Reason::MissingKeyId => 5,
        Reason::UnknownKeyId => 6,
        Reason::BadSignature => 7,
        Reason::InvalidClaims => 8,
        Reason::WrongIssuer => 9,
        Reason::WrongAudience => 10,
        Reason::Expired => 11,
        Reason::NotYetValid => 12,
        Reason::IssuedInFuture => 13,
        Reason::Revoked => 14,
    };
    let mut names = std::collections::HashSet::new();
    for (index, reason) in Reason::ALL.into_iter().enumerate() {
        assert_eq!(position(reason), index, "{reason}");
        let name = reason.as_str();
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert_eq!(reason.to_string(), name);
        assert!(names.insert(name), "{name} twice");
    }
    assert_eq!(Reason::UnsupportedCritical.as_str(), "unsupported_crit");
}

#[test]
fn the_size_cap_refuses_only_what_is_over_it() {
    let keys = keys_of(&test_key());
    let at_cap = "a".repeat(MAX_ACCESS_TOKEN_BYTES);
    assert_eq!(
        verify_access_token(&at_cap, &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::Malformed)
    );
    let over = "a".repeat(MAX_ACCESS_TOKEN_BYTES + 1);
    assert_eq!(
        verify_access_token(&over, &keys, &rules(), &Revocations::NONE, NOW),
        Err(Reason::TooLarge)
    );
}

#[test]
fn the_signer_names_its_kid_and_never_prints_its_key() {
    let key = test_key();
    assert_eq!(key.signer.kid(), key.jwk.kid);
    let printed = format!("{:?}", key.signer);
    assert!(printed.starts_with("AccessTokenSigner"), "{printed}");
    assert!(printed.contains(&key.jwk.kid), "{printed}");
    let der = key.private.private_key_to_der().expect("der");
    let der_b64 = URL_SAFE_NO_PAD.encode(&der);
    assert!(!printed.contains(&der_b64[..32]), "{printed}");
}

/// The claims' rules: validity window, issuer, audience, required claims, revocation.
mod claims;
