//! Public JSON Web Keys (RFC 7517) for RS256, key ids, and the verifying key set.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::RS256;
use josekit::jws::alg::rsassa::RsassaJwsVerifier;
use serde::{Deserialize, Serialize};

/// The only signing algorithm the IAM issues and accepts.
pub const SIGNING_ALGORITHM: &str = "RS256";

/// A public RSA signing key as published in the JWKS: nothing private can be represented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// A JWKS document: `{"keys": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwks {
    pub keys: Vec<PublicJwk>,
}

/// Why a JWK cannot be used as an RS256 verification key.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    #[error("key {kid:?} is not an RSA signing key for RS256")]
    NotRs256 { kid: String },
    #[error("key {kid:?} has an invalid modulus or exponent: {message}")]
    InvalidKey { kid: String, message: String },
}

impl PublicJwk {
    /// Builds the public JWK of an RSA key from its big-endian modulus and exponent; the key
    /// id is the RFC 7638 thumbprint, so the same key always gets the same id.
    pub fn from_rsa_components(modulus: &[u8], exponent: &[u8]) -> Self {
        let n = URL_SAFE_NO_PAD.encode(modulus);
        let e = URL_SAFE_NO_PAD.encode(exponent);
        let kid = rsa_thumbprint(&n, &e);
        PublicJwk {
            kty: "RSA".to_owned(),
            key_use: "sig".to_owned(),
            alg: SIGNING_ALGORITHM.to_owned(),
            kid,
            n,
            e,
        }
    }

    /// Converts to josekit's representation (public members only).
    pub fn to_josekit(&self) -> Result<Jwk, JwkError> {
        let value = serde_json::to_value(self).map_err(|error| JwkError::InvalidKey {
            kid: self.kid.clone(),
            message: error.to_string(),
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(JwkError::NotRs256 {
                kid: self.kid.clone(),
            });
        };
        Jwk::from_map(map).map_err(|error| JwkError::InvalidKey {
            kid: self.kid.clone(),
            message: error.to_string(),
        })
    }

    fn verifier(&self) -> Result<RsassaJwsVerifier, JwkError> {
        if self.kty != "RSA" || self.alg != SIGNING_ALGORITHM || self.key_use != "sig" {
            return Err(JwkError::NotRs256 {
                kid: self.kid.clone(),
            });
        }
        RS256
            .verifier_from_jwk(&self.to_josekit()?)
            .map_err(|error| JwkError::InvalidKey {
                kid: self.kid.clone(),
                message: error.to_string(),
            })
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key.
fn rsa_thumbprint(n: &str, e: &str) -> String {
    // Members in lexicographic order, no whitespace, as RFC 7638 §3.2 requires.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
}

/// Verification keys by key id, each parsed once so that verifying a token costs one
/// signature check and no key parsing.
#[derive(Default)]
pub struct KeySet {
    verifiers: HashMap<String, RsassaJwsVerifier>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.verifiers.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// Builds the set from a JWKS, skipping nothing: one unusable key fails the whole set so
    /// that a broken publication is noticed instead of silently shrinking the set.
    pub fn from_jwks(jwks: &PublicJwks) -> Result<Self, JwkError> {
        let mut verifiers = HashMap::with_capacity(jwks.keys.len());
        for key in &jwks.keys {
            verifiers.insert(key.kid.clone(), key.verifier()?);
        }
        Ok(KeySet { verifiers })
    }

    /// The verifier for `kid`, if that key is in the set.
    pub fn verifier(&self, kid: &str) -> Option<&RsassaJwsVerifier> {
        self.verifiers.get(kid)
    }

    /// Whether the set holds a key with this id.
    pub fn contains(&self, kid: &str) -> bool {
        self.verifiers.contains_key(kid)
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.verifiers.len()
    }

    /// Whether the set has no key at all.
    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // The example key of RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rsa_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn key_set_refuses_keys_for_other_algorithms() {
        let mut key = PublicJwk::from_rsa_components(&[0xc3; 256], &[1, 0, 1]);
        key.alg = "HS256".to_owned();
        let jwks = PublicJwks { keys: vec![key] };
        assert!(matches!(
            KeySet::from_jwks(&jwks),
            Err(JwkError::NotRs256 { .. })
        ));
    }
}
