//! The identity headers the sidecar gives a request whose token it accepted, built once per
//! verified token and remembered with its claims: a client's repeated requests with one
//! token then clone them (a reference count each) instead of formatting and validating them
//! again.

use std::borrow::Borrow;

use hyper::header::{HeaderName, HeaderValue};
use iam_core::AccessTokenClaims;

const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
const X_USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
const X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
const X_USER_ROLE: HeaderName = HeaderName::from_static("x-user-role");
const X_USER_PERMISSIONS: HeaderName = HeaderName::from_static("x-user-permissions");

/// A claim that cannot be sent as a header value (a control character, say): the token is
/// refused as having invalid claims rather than passed on without the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsendableClaim;

/// A verified token's claims with the identity headers they give.
#[derive(Debug)]
pub struct VerifiedIdentity {
    pub claims: AccessTokenClaims,
    /// `X-User-Id`, `X-User-Email`, `X-Client-Id`, `X-User-Role`, `X-User-Permissions`; a
    /// claim the token does not have is no header at all (never an empty one).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl VerifiedIdentity {
    /// The identity of verified `claims`, unless one of them cannot be a header value.
    pub fn new(claims: AccessTokenClaims) -> Result<Self, UnsendableClaim> {
        let headers = identity_headers(&claims)?;
        Ok(VerifiedIdentity { claims, headers })
    }
}

impl Borrow<AccessTokenClaims> for VerifiedIdentity {
    fn borrow(&self) -> &AccessTokenClaims {
        &self.claims
    }
}

fn identity_headers(
    claims: &AccessTokenClaims,
) -> Result<Vec<(HeaderName, HeaderValue)>, UnsendableClaim> {
    let permissions = claims.permissions.join(",");
    let claimed = [
        (X_USER_ID, Some(claims.sub.as_str())),
        (X_USER_EMAIL, claims.email.as_deref()),
        (X_CLIENT_ID, claims.client_id.as_deref()),
        (X_USER_ROLE, Some(claims.role.as_str())),
        (X_USER_PERMISSIONS, Some(permissions.as_str())),
    ];
    claimed
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .map(|(name, value)| {
            HeaderValue::from_str(value)
                .map(|value| (name, value))
                .map_err(|_| UnsendableClaim)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::expect_used)] // tests report failure by panicking
mod tests {
    use super::*;
    use iam_core::token::Audience;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "iam".into(),
            sub: "user-1".into(),
            aud: Audience::One("iam".into()),
            exp: 600,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            client_id: None,
            email: Some("ada@example.com".into()),
            role: "admin".into(),
            permissions: vec!["orders:read".into(), "orders:write".into()],
            scope: None,
        }
    }

    fn sent(identity: &VerifiedIdentity) -> Vec<(&str, &str)> {
        identity
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().expect("text")))
            .collect()
    }

    #[test]
    fn a_users_token_gives_its_identity_and_no_client_header() {
        let identity = VerifiedIdentity::new(claims()).expect("sendable");
        assert_eq!(
            sent(&identity),
            [
                ("x-user-id", "user-1"),
                ("x-user-email", "ada@example.com"),
                ("x-user-role", "admin"),
                ("x-user-permissions", "orders:read,orders:write"),
            ]
        );
        let borrowed: &AccessTokenClaims = identity.borrow();
        assert_eq!(borrowed.jti, "j");
    }

    #[test]
    fn a_clients_token_gives_its_client_and_no_email_header() {
        let identity = VerifiedIdentity::new(AccessTokenClaims {
            sub: "client-1".into(),
            client_id: Some("client-1".into()),
            email: None,
            permissions: vec![],
            ..claims()
        })
        .expect("sendable");
        assert_eq!(
            sent(&identity),
            [
                ("x-user-id", "client-1"),
                ("x-client-id", "client-1"),
                ("x-user-role", "admin"),
                ("x-user-permissions", ""),
            ]
        );
    }

    #[test]
    fn a_claim_that_cannot_be_a_header_value_spoils_the_identity() {
        for spoiled in [
            AccessTokenClaims {
                sub: "user\r\nx-user-role: admin".into(),
                ..claims()
            },
            AccessTokenClaims {
                email: Some("a\0@example.com".into()),
                ..claims()
            },
            AccessTokenClaims {
                client_id: Some("c\n".into()),
                ..claims()
            },
            AccessTokenClaims {
                role: "admin\x7f".into(),
                ..claims()
            },
            AccessTokenClaims {
                permissions: vec!["orders:read".into(), "x\ry".into()],
                ..claims()
            },
        ] {
            assert_eq!(
                VerifiedIdentity::new(spoiled).map(|_| ()),
                Err(UnsendableClaim)
            );
        }
    }
}
