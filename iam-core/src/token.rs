//! Access tokens (RFC 9068 profile, RS256): the claims, the one verifier every process uses,
//! and (feature `sign`) the signer that only iam-api carries.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::jwk::{KeySet, SIGNING_ALGORITHM};
use crate::revocation::Revocations;

/// Tokens larger than this are refused before any parsing (a real token is well under 2 KiB).
pub const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token, as issued and as required by verifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The user id, or the client id of a client-credentials token.
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// The OAuth client the token was issued to (RFC 9068 §2.2). Every token this version
    /// issues has it; a token without it (issued before it was added) is still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user's email; absent from a client-credentials token (it has no user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub role: String,
    pub permissions: Vec<String>,
    /// The space-separated permissions a client-credentials token was asked for
    /// (RFC 9068 §2.2.3); `permissions` holds the same ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(value) => value == audience,
            Audience::Many(values) => values.iter().any(|value| value == audience),
        }
    }
}

/// Who a new token is for; the issuer fills in the rest.
#[derive(Debug, Clone)]
pub struct TokenSubject<'a> {
    /// The `sub`: a user id, or the client's id for a client-credentials token.
    pub subject: &'a str,
    /// The OAuth client the token is issued to.
    pub client_id: &'a str,
    /// The user's email; `None` for a client.
    pub email: Option<&'a str>,
    pub role: &'a str,
    pub permissions: &'a [String],
    /// The granted scope of a client-credentials token.
    pub scope: Option<&'a str>,
}

/// Issuer-side settings for building claims.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    pub issuer: String,
    pub audience: String,
    pub ttl_seconds: i64,
}

impl AccessTokenClaims {
    /// Claims for a token issued at `now` (unix seconds), valid for the policy's TTL.
    pub fn issue(policy: &IssuancePolicy, subject: &TokenSubject<'_>, now: i64) -> Self {
        AccessTokenClaims {
            iss: policy.issuer.clone(),
            sub: subject.subject.to_owned(),
            aud: Audience::One(policy.audience.clone()),
            exp: now.saturating_add(policy.ttl_seconds),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: Some(subject.client_id.to_owned()),
            email: subject.email.map(str::to_owned),
            role: subject.role.to_owned(),
            permissions: subject.permissions.to_vec(),
            scope: subject.scope.map(str::to_owned),
        }
    }
}

/// What a verifier requires of a token besides a valid signature.
#[derive(Debug, Clone)]
pub struct VerificationRules {
    pub issuer: String,
    pub audience: String,
    /// Allowed clock skew, in seconds, on `exp`, `nbf` and `iat`.
    pub leeway_seconds: i64,
}

/// Why a token was refused. Also the metric label and the log field, so keep names stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    WrongType,
    /// The header has a `crit` member (RFC 7515 §4.1.11): it names extensions the token
    /// must not be accepted without, and this verifier understands none.
    UnsupportedCritical,
    MissingKeyId,
    UnknownKeyId,
    BadSignature,
    InvalidClaims,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// Valid, but revoked since it was issued (its id, or its subject's earlier tokens).
    Revoked,
}

impl Reason {
    /// Every reason, in the order a token is checked (for metric labels and docs).
    pub const ALL: [Reason; 15] = [
        Reason::TooLarge,
        Reason::Malformed,
        Reason::AlgorithmNotAllowed,
        Reason::WrongType,
        Reason::UnsupportedCritical,
        Reason::MissingKeyId,
        Reason::UnknownKeyId,
        Reason::BadSignature,
        Reason::InvalidClaims,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::Revoked,
    ];

    /// Stable snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::WrongType => "wrong_type",
            Reason::UnsupportedCritical => "unsupported_crit",
            Reason::MissingKeyId => "missing_kid",
            Reason::UnknownKeyId => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::InvalidClaims => "invalid_claims",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header members a verifier looks at. Everything else, notably `jku`, `x5u` and `jwk`,
/// is ignored on purpose: keys come only from the verifier's own key set.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    /// Whether a `crit` member is present, whatever its value (even `[]` or `null`).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// Deserialises any value as "present"; with `#[serde(default)]`, absence is `false`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Verifies an access token at `now` (unix seconds), checking, in this order: size, the
/// `alg` allow-list and `typ`, no `crit` header, `kid` presence, the key from `keys` only,
/// the signature, then the claims (`iss`, `aud`, `exp`, `nbf`, `iat` with leeway), then
/// `revoked`.
pub fn verify_access_token(
    token: &str,
    keys: &KeySet,
    rules: &VerificationRules,
    revoked: &Revocations,
    now: i64,
) -> Result<AccessTokenClaims, Reason> {
    if token.len() > MAX_ACCESS_TOKEN_BYTES {
        return Err(Reason::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed);
    };

    let header: Header = decode_json_segment(header_b64).ok_or(Reason::Malformed)?;
    if header.alg.as_deref() != Some(SIGNING_ALGORITHM) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    if !header.typ.as_deref().is_some_and(is_access_token_type) {
        return Err(Reason::WrongType);
    }
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, and we understand
    // none. An empty or malformed `crit` is refused too (the RFC forbids both), and before
    // the key look-up, so such a token never triggers a key refetch.
    if header.crit {
        return Err(Reason::UnsupportedCritical);
    }
    let kid = header.kid.ok_or(Reason::MissingKeyId)?;
    let verifier = keys.verifier(&kid).ok_or(Reason::UnknownKeyId)?;

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| Reason::Malformed)?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    if !verifier.verify(&token.as_bytes()[..signed_len], &signature) {
        return Err(Reason::BadSignature);
    }

    let claims: AccessTokenClaims =
        decode_json_segment(payload_b64).ok_or(Reason::InvalidClaims)?;
    judge_claims(&claims, rules, revoked, now)?;
    Ok(claims)
}

/// Judges claims whose signature has already been verified: [`validate_claims`], then
/// whether `revoked` revokes them. [`verify_access_token`] calls it last; the memory of
/// verified tokens calls it on every recall.
pub fn judge_claims(
    claims: &AccessTokenClaims,
    rules: &VerificationRules,
    revoked: &Revocations,
    now: i64,
) -> Result<(), Reason> {
    validate_claims(claims, rules, now)?;
    if revoked.revokes(claims) {
        return Err(Reason::Revoked);
    }
    Ok(())
}

/// Whether claims are past their `exp` by more than the leeway at `now` (Unix seconds): the
/// one expiry rule, for the verifier and for what remembers verified tokens.
pub fn expired(claims: &AccessTokenClaims, rules: &VerificationRules, now: i64) -> bool {
    now > claims.exp.saturating_add(rules.leeway_seconds)
}

/// Checks `iss`, `aud` and the validity window (`exp`, `nbf`, `iat` with leeway) of claims
/// whose signature has already been verified.
fn validate_claims(
    claims: &AccessTokenClaims,
    rules: &VerificationRules,
    now: i64,
) -> Result<(), Reason> {
    if claims.iss != rules.issuer {
        return Err(Reason::WrongIssuer);
    }
    if !claims.aud.contains(&rules.audience) {
        return Err(Reason::WrongAudience);
    }
    let leeway = rules.leeway_seconds;
    if expired(claims, rules, now) {
        return Err(Reason::Expired);
    }
    if now.saturating_add(leeway) < claims.nbf {
        return Err(Reason::NotYetValid);
    }
    if now.saturating_add(leeway) < claims.iat {
        return Err(Reason::IssuedInFuture);
    }
    Ok(())
}

/// RFC 9068 allows `at+jwt` and the full media type `application/at+jwt`, case-insensitively.
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == ACCESS_TOKEN_TYPE || typ.strip_prefix("application/") == Some(ACCESS_TOKEN_TYPE)
}

fn decode_json_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(feature = "sign")]
pub use signing::{AccessTokenSigner, SigningError};

#[cfg(feature = "sign")]
mod signing {
    use std::fmt;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use josekit::jws::alg::rsassa::RsassaJwsSigner;
    use josekit::jws::{JwsSigner as _, RS256};

    use super::{ACCESS_TOKEN_TYPE, AccessTokenClaims};
    use crate::jwk::SIGNING_ALGORITHM;

    /// Why a signer could not be built or a token not signed.
    #[derive(Debug, thiserror::Error)]
    pub enum SigningError {
        #[error("the private key is not a usable RSA key: {0}")]
        InvalidKey(String),
        #[error("signing failed: {0}")]
        Sign(String),
    }

    /// Signs access tokens with one RSA private key. Its header is encoded once, so issuing
    /// a token costs one JSON serialisation and one RSA signature.
    pub struct AccessTokenSigner {
        kid: String,
        header_b64: String,
        signer: RsassaJwsSigner,
    }

    impl fmt::Debug for AccessTokenSigner {
        // Never print key material.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AccessTokenSigner")
                .field("kid", &self.kid)
                .finish_non_exhaustive()
        }
    }

    impl AccessTokenSigner {
        /// A signer from a DER-encoded (PKCS#8 or PKCS#1) RSA private key.
        pub fn from_private_key_der(kid: &str, der: &[u8]) -> Result<Self, SigningError> {
            let signer = RS256
                .signer_from_der(der)
                .map_err(|error| SigningError::InvalidKey(error.to_string()))?;
            let header = serde_json::json!({
                "alg": SIGNING_ALGORITHM,
                "typ": ACCESS_TOKEN_TYPE,
                "kid": kid,
            });
            Ok(AccessTokenSigner {
                kid: kid.to_owned(),
                header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
                signer,
            })
        }

        /// The key id written into every token's header.
        pub fn kid(&self) -> &str {
            &self.kid
        }

        /// Serialises and signs `claims` as a compact JWS.
        pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, SigningError> {
            self.sign_json(claims)
        }

        /// Signs any JSON payload under the access-token header. Tests use it to build
        /// tokens with a broken claim set; issuance goes through [`Self::sign`].
        pub fn sign_json<T: serde::Serialize>(&self, payload: &T) -> Result<String, SigningError> {
            let payload = serde_json::to_vec(payload)
                .map_err(|error| SigningError::Sign(error.to_string()))?;
            let mut token = String::with_capacity(1024);
            token.push_str(&self.header_b64);
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
            let signature = self
                .signer
                .sign(token.as_bytes())
                .map_err(|error| SigningError::Sign(error.to_string()))?;
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
            Ok(token)
        }
    }
}

#[cfg(all(test, feature = "sign"))]
mod tests;
