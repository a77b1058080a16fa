//! Public JSON Web Keys (RFC 7517) for RS256, key ids, and the verifying key set.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

pub mod rs256;

use rs256::Rs256Key;

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
    /// Two keys under one id: which one a token's `kid` means would be a guess.
    #[error("key id {kid:?} is published more than once")]
    DuplicateKid { kid: String },
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

    /// The RS256 verification key this JWK describes: `kty` RSA, `alg` RS256 and `use` sig,
    /// a modulus of at least 2048 bits and a usable exponent.
    fn verification_key(&self) -> Result<Rs256Key, JwkError> {
        if self.kty != "RSA" || self.alg != SIGNING_ALGORITHM || self.key_use != "sig" {
            return Err(JwkError::NotRs256 {
                kid: self.kid.clone(),
            });
        }
        let invalid = |message: String| JwkError::InvalidKey {
            kid: self.kid.clone(),
            message,
        };
        let modulus = URL_SAFE_NO_PAD
            .decode(&self.n)
            .map_err(|error| invalid(format!("n is not base64url: {error}")))?;
        let exponent = URL_SAFE_NO_PAD
            .decode(&self.e)
            .map_err(|error| invalid(format!("e is not base64url: {error}")))?;
        Rs256Key::from_components(&modulus, &exponent).map_err(|error| invalid(error.to_string()))
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
    verifiers: HashMap<String, PublishedKey>,
}

/// A key of the set with the JWK it was built from.
struct PublishedKey {
    jwk: PublicJwk,
    verifier: Rs256Key,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.verifiers.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// Builds the set from a JWKS, skipping nothing: one unusable key, or a key id published
    /// twice, fails the whole set so that a broken publication is noticed instead of
    /// silently shrinking the set.
    pub fn from_jwks(jwks: &PublicJwks) -> Result<Self, JwkError> {
        let mut verifiers = HashMap::with_capacity(jwks.keys.len());
        for key in &jwks.keys {
            let published = PublishedKey {
                jwk: key.clone(),
                verifier: key.verification_key()?,
            };
            if verifiers.insert(key.kid.clone(), published).is_some() {
                return Err(JwkError::DuplicateKid {
                    kid: key.kid.clone(),
                });
            }
        }
        Ok(KeySet { verifiers })
    }

    /// The verifier for `kid`, if that key is in the set.
    pub fn verifier(&self, kid: &str) -> Option<&Rs256Key> {
        self.verifiers.get(kid).map(|published| &published.verifier)
    }

    /// Whether this set verifies every token `earlier` verified: it has each of `earlier`'s
    /// key ids with the very same key. Then what was verified with `earlier` may be
    /// remembered on; otherwise a key was withdrawn or replaced and it must be verified again.
    pub fn holds_every_key_of(&self, earlier: &KeySet) -> bool {
        earlier.verifiers.iter().all(|(kid, theirs)| {
            self.verifiers
                .get(kid)
                .is_some_and(|ours| ours.jwk == theirs.jwk)
        })
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
    fn one_unusable_key_refuses_the_whole_set() {
        let good = {
            let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
            PublicJwk::from_rsa_components(&rsa.n().to_vec(), &rsa.e().to_vec())
        };
        assert_eq!(
            KeySet::from_jwks(&PublicJwks {
                keys: vec![good.clone()]
            })
            .expect("a 2048-bit key")
            .len(),
            1
        );
        let short = PublicJwk::from_rsa_components(&[0xc3; 128], &[1, 0, 1]);
        let exponent_one = PublicJwk::from_rsa_components(&[0xc3; 256], &[1]);
        let mut not_base64 = good.clone();
        not_base64.n.push('*');
        for bad in [short, exponent_one, not_base64] {
            let jwks = PublicJwks {
                keys: vec![good.clone(), bad.clone()],
            };
            match KeySet::from_jwks(&jwks) {
                Err(JwkError::InvalidKey { kid, .. }) => assert_eq!(kid, bad.kid),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_set_holds_every_key_of_another_only_with_the_same_key_under_each_id() {
        let key = |kid: &str, n: u8| PublicJwk {
            kid: kid.to_owned(),
            ..PublicJwk::from_rsa_components(&[n; 256], &[1, 0, 1])
        };
        let set = |keys: Vec<PublicJwk>| KeySet::from_jwks(&PublicJwks { keys }).expect("set");
        let current = set(vec![key("a", 0xc3), key("b", 0xc5)]);
        // The same keys, in any order, or more of them: nothing verified before changes.
        for later in [
            set(vec![key("a", 0xc3), key("b", 0xc5)]),
            set(vec![key("b", 0xc5), key("a", 0xc3)]),
            set(vec![key("a", 0xc3), key("b", 0xc5), key("c", 0xc7)]),
        ] {
            assert!(later.holds_every_key_of(&current), "{later:?}");
        }
        // A key withdrawn, or another key published under its id.
        for later in [
            set(vec![key("a", 0xc3)]),
            set(vec![key("a", 0xc3), key("c", 0xc5)]),
            set(vec![key("a", 0xc3), key("b", 0xc7)]),
            set(vec![]),
        ] {
            assert!(!later.holds_every_key_of(&current), "{later:?}");
        }
        assert!(current.holds_every_key_of(&KeySet::default()));
        assert!(current.contains("a") && !current.contains("c"));
        assert_eq!((current.len(), current.is_empty()), (2, false));
        assert!(KeySet::default().is_empty());
        assert_eq!(format!("{current:?}"), r#"KeySet { kids: ["a", "b"] }"#);
    }

    #[test]
    fn a_key_id_published_twice_refuses_the_whole_set() {
        let key = |kid: &str, n: u8| PublicJwk {
            kid: kid.to_owned(),
            ..PublicJwk::from_rsa_components(&[n; 256], &[1, 0, 1])
        };
        // Another key under the same id, or the same key twice.
        for keys in [
            vec![key("a", 0xc7), key("b", 0xc5), key("a", 0xc3)],
            vec![key("a", 0xc3), key("a", 0xc3)],
        ] {
            match KeySet::from_jwks(&PublicJwks { keys }) {
                Err(JwkError::DuplicateKid { kid }) => assert_eq!(kid, "a"),
                other => panic!("{other:?}"),
            }
        }
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
