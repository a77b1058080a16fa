//! Revocation rules: when an access token that verified must still be refused, and what a
//! token minted after a revocation must look like so that it is not.
//!
//! A subject cut-off revokes every token of that subject issued before it. `iat` has whole
//! seconds, so the cut-off is the revocation instant rounded *up* to a whole second: every
//! token minted before the revocation (even in the same second) has an `iat` below it. A
//! token minted afterwards in that same second is given the cut-off as its `iat` (at most a
//! second ahead, well within the verifiers' leeway), so it is not refused by it.

use std::collections::{BTreeMap, BTreeSet};

use crate::token::AccessTokenClaims;

/// What a verifier knows to be revoked: per-subject cut-offs (every token of the subject
/// issued before the cut-off is refused) and single token ids (`jti`). The verifier only
/// reads it, after the signature and the claims have been checked; whoever learns of
/// revocations (the api from its database, the sidecar from the revocation feed) builds a
/// new one and swaps it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    subject_cutoffs: BTreeMap<String, i64>,
    token_ids: BTreeSet<String>,
}

impl Revocations {
    /// Nothing revoked.
    pub const NONE: Revocations = Revocations {
        subject_cutoffs: BTreeMap::new(),
        token_ids: BTreeSet::new(),
    };

    /// Revocations of subjects (`sub`, cut-off second) and of token ids. A subject listed
    /// twice keeps its latest cut-off, which revokes the most.
    pub fn new(
        subject_cutoffs: impl IntoIterator<Item = (String, i64)>,
        token_ids: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut cutoffs = BTreeMap::new();
        for (subject, cutoff) in subject_cutoffs {
            let latest = cutoffs.entry(subject).or_insert(cutoff);
            *latest = (*latest).max(cutoff);
        }
        Revocations {
            subject_cutoffs: cutoffs,
            token_ids: token_ids.into_iter().collect(),
        }
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.subject_cutoffs.is_empty() && self.token_ids.is_empty()
    }

    /// Whether a token with these (verified) claims is revoked.
    pub fn revokes(&self, claims: &AccessTokenClaims) -> bool {
        self.token_ids.contains(&claims.jti)
            || self
                .subject_cutoffs
                .get(&claims.sub)
                .is_some_and(|&cutoff| revoked_by_subject_cutoff(claims.iat, cutoff))
    }
}

/// The cut-off second of a revocation made at `revoked_at_millis` (unix milliseconds).
pub fn cutoff_second(revoked_at_millis: i64) -> i64 {
    revoked_at_millis.div_euclid(1000) + i64::from(revoked_at_millis.rem_euclid(1000) != 0)
}

/// Whether a token issued at `iat` falls under a subject cut-off at `cutoff` (unix seconds).
pub fn revoked_by_subject_cutoff(iat: i64, cutoff: i64) -> bool {
    iat < cutoff
}

/// The `iat` for a token minted at `now` for a subject whose cut-off is `cutoff`.
pub fn issued_at(now: i64, cutoff: Option<i64>) -> i64 {
    cutoff.map_or(now, |cutoff| now.max(cutoff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Audience;

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
    fn nothing_is_revoked_by_none() {
        assert!(Revocations::NONE.is_empty());
        assert_eq!(Revocations::default(), Revocations::NONE);
        assert!(!Revocations::NONE.revokes(&claims("u", "j", 1000)));
    }

    #[test]
    fn a_subject_cutoff_revokes_only_that_subjects_older_tokens() {
        let revoked = Revocations::new([("u".to_owned(), 1000)], []);
        assert!(!revoked.is_empty());
        assert!(revoked.revokes(&claims("u", "j", 999)));
        assert!(!revoked.revokes(&claims("u", "j", 1000)));
        assert!(!revoked.revokes(&claims("other", "j", 999)));
    }

    #[test]
    fn a_token_id_revokes_that_token_only() {
        let revoked = Revocations::new([], ["j1".to_owned()]);
        assert!(!revoked.is_empty());
        assert!(revoked.revokes(&claims("u", "j1", 5000)));
        assert!(!revoked.revokes(&claims("u", "j2", 5000)));
    }

    #[test]
    fn a_subject_listed_twice_keeps_its_latest_cutoff() {
        for order in [[1000, 2000], [2000, 1000]] {
            let revoked = Revocations::new(order.map(|cutoff| ("u".to_owned(), cutoff)), []);
            assert!(revoked.revokes(&claims("u", "j", 1999)), "{order:?}");
            assert!(!revoked.revokes(&claims("u", "j", 2000)), "{order:?}");
        }
    }

    #[test]
    fn the_cutoff_is_the_revocation_rounded_up_to_a_second() {
        assert_eq!(cutoff_second(1_000_000), 1000);
        assert_eq!(cutoff_second(1_000_001), 1001);
        assert_eq!(cutoff_second(1_000_999), 1001);
        assert_eq!(cutoff_second(0), 0);
        assert_eq!(cutoff_second(-1), 0);
        assert_eq!(cutoff_second(-1000), -1);
    }

    #[test]
    fn tokens_issued_before_the_cutoff_are_revoked() {
        assert!(revoked_by_subject_cutoff(999, 1000));
        assert!(!revoked_by_subject_cutoff(1000, 1000));
        assert!(!revoked_by_subject_cutoff(1001, 1000));
    }

    #[test]
    fn a_token_minted_after_a_revocation_is_never_under_it() {
        assert_eq!(issued_at(1000, None), 1000);
        assert_eq!(issued_at(1000, Some(1001)), 1001);
        assert_eq!(issued_at(1002, Some(1001)), 1002);
        // Revoked at 1000.7 s, minted at 1000.9 s: refused before, accepted after.
        let cutoff = cutoff_second(1_000_700);
        assert!(revoked_by_subject_cutoff(1000, cutoff));
        assert!(!revoked_by_subject_cutoff(
            issued_at(1000, Some(cutoff)),
            cutoff
        ));
    }
}
