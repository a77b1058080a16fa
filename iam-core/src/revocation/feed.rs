//! The revocation feed's document (contract §5): what iam-jwks serves and the sidecar reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Revocations;

/// Where iam-jwks serves the feed.
pub const REVOCATIONS_PATH: &str = "/api/v1/revocations";

/// `{"subjects":{"<sub>":<cut-off>},"tokens":{"<jti>":<exp>},"generated_at":<unix seconds>}`.
/// Sorted maps, so that the same revocations always serialise to the same bytes and the
/// strong ETag only changes when they do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Subject → cut-off (unix seconds): its tokens issued before it are refused.
    pub subjects: BTreeMap<String, i64>,
    /// Token id → the token's expiry (unix seconds): refused until then.
    pub tokens: BTreeMap<String, i64>,
    /// When the document was built (unix seconds).
    pub generated_at: i64,
}

impl RevocationFeed {
    /// What a verifier consults; takes the entries without copying them.
    pub fn into_revocations(self) -> Revocations {
        Revocations::new(self.subjects, self.tokens.into_keys())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use crate::token::{AccessTokenClaims, Audience};

    fn claims(sub: &str, jti: &str, iat: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "iam".into(),
            sub: sub.into(),
            aud: Audience::One("iam".into()),
            exp: iat + 900,
            iat,
            nbf: iat,
            jti: jti.into(),
            email: String::new(),
            role: "user".into(),
            permissions: vec![],
        }
    }

    #[test]
    fn the_document_has_the_contracts_shape_and_revokes_what_it_lists() {
        let text = r#"{"subjects":{"u1":1000},"tokens":{"j1":2000},"generated_at":1500}"#;
        let feed: RevocationFeed = serde_json::from_str(text).expect("feed");
        assert_eq!(serde_json::to_string(&feed).expect("json"), text);
        let revoked = feed.into_revocations();
        assert!(revoked.revokes(&claims("u1", "x", 999)));
        assert!(!revoked.revokes(&claims("u1", "x", 1000)));
        assert!(revoked.revokes(&claims("u2", "j1", 1900)));
        assert!(!revoked.revokes(&claims("u2", "j2", 1900)));
    }

    #[test]
    fn the_same_entries_serialise_to_the_same_bytes() {
        let mut one = RevocationFeed::default();
        let mut other = RevocationFeed::default();
        for subject in ["b", "a", "c"] {
            one.subjects.insert(subject.to_owned(), 1);
        }
        for subject in ["c", "b", "a"] {
            other.subjects.insert(subject.to_owned(), 1);
        }
        assert_eq!(
            serde_json::to_vec(&one).expect("json"),
            serde_json::to_vec(&other).expect("json")
        );
    }
}
