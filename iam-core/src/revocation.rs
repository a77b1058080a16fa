//! Revocation rules: when an access token that verified must still be refused, and what a
//! token minted after a revocation must look like so that it is not.
//!
//! A subject cut-off revokes every token of that subject issued before it. `iat` has whole
//! seconds, so the cut-off is the revocation instant rounded *up* to a whole second: every
//! token minted before the revocation (even in the same second) has an `iat` below it. A
//! token minted afterwards in that same second is given the cut-off as its `iat` (at most a
//! second ahead, well within the verifiers' leeway), so it is not refused by it.

use crate::token::AccessTokenClaims;

pub mod feed;
mod keyed;

use keyed::Keyed;

/// What a verifier knows to be revoked: per-subject cut-offs (every token of the subject
/// issued before the cut-off is refused) and single token ids (`jti`). The verifier only
/// reads it, after the signature and the claims have been checked; whoever learns of
/// revocations (the api from its database, the sidecar from the revocation feed) builds a
/// new one and swaps it in. Hash maps: a look-up costs the same with 100,000 entries as
/// with none, and it happens on every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    subject_cutoffs: Keyed<i64>,
    token_ids: Keyed<()>,
}

impl Revocations {
    /// Nothing revoked.
    pub const NONE: Revocations = Revocations {
        subject_cutoffs: Keyed::new(),
        token_ids: Keyed::new(),
    };

    /// Revocations of subjects (`sub`, cut-off second) and of token ids. A subject listed
    /// twice keeps its latest cut-off, which revokes the most.
    pub fn new(
        subject_cutoffs: impl IntoIterator<Item = (String, i64)>,
        token_ids: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut revocations = Revocations::default();
        for (subject, cutoff) in subject_cutoffs {
            revocations.revoke_subject(&subject, cutoff);
        }
        for token_id in token_ids {
            revocations.revoke_token(&token_id);
        }
        revocations
    }

    /// Refuses the tokens of `subject` issued before `cutoff` (unix seconds); a subject
    /// revoked again keeps its latest cut-off, which revokes the most.
    pub fn revoke_subject(&mut self, subject: &str, cutoff: i64) {
        self.subject_cutoffs
            .upsert(subject, cutoff, |latest, cutoff| {
                *latest = (*latest).max(cutoff)
            });
    }

    /// Refuses the token with this `jti`.
    pub fn revoke_token(&mut self, token_id: &str) {
        self.token_ids.upsert(token_id, (), |_, _| {});
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// How many subjects and how many single tokens are revoked.
    pub fn len(&self) -> (usize, usize) {
        (self.subject_cutoffs.len(), self.token_ids.len())
    }

    /// Whether a token with these (verified) claims is revoked.
    pub fn revokes(&self, claims: &AccessTokenClaims) -> bool {
        self.token_ids.get(&claims.jti).is_some()
            || self
                .subject_cutoffs
                .get(&claims.sub)
                .is_some_and(|&cutoff| revoked_by_subject_cutoff(claims.iat, cutoff))
    }
}

/// The cut-off second of a revocation made at `revoked_at_micros` (unix microseconds, the
/// database's precision: rounding from milliseconds would let a token minted in the first
/// millisecond of the revocation's second, before it, pass).
pub fn cutoff_second(revoked_at_micros: i64) -> i64 {
    revoked_at_micros.div_euclid(1_000_000)
        + i64::from(revoked_at_micros.rem_euclid(1_000_000) != 0)
}

/// The instant (unix microseconds) to record for a revocation of a subject made at
/// `now_micros`, when its previous revocation was recorded at `previous_micros`. Tokens
/// minted after the previous revocation may carry its cut-off as their `iat` (see
/// [`issued_at`]), so the new cut-off must lie above that one even when both revocations
/// fall in the same second; otherwise those tokens would survive the second revocation.
pub fn revocation_instant(now_micros: i64, previous_micros: Option<i64>) -> i64 {
    previous_micros.map_or(now_micros, |previous| {
        let after_previous_cutoff = cutoff_second(previous)
            .saturating_mul(1_000_000)
            .saturating_add(1);
        now_micros.max(after_previous_cutoff)
    })
}

/// Whether a token issued at `iat` falls under a subject cut-off at `cutoff` (unix seconds).
pub fn revoked_by_subject_cutoff(iat: i64, cutoff: i64) -> bool {
    iat < cutoff
}

/// The `iat` for a token minted at `now` for a subject whose cut-off is `cutoff`.
pub fn issued_at(now: i64, cutoff: Option<i64>) -> i64 {
    cutoff.map_or(now, |cutoff| now.max(cutoff))
}

/// Claims of a token of `sub` with id `jti` issued at `iat`, for the revocation tests here
/// and in `feed`.
#[cfg(test)]
pub(crate) fn test_claims(sub: &str, jti: &str, iat: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "iam".into(),
        sub: sub.into(),
        aud: crate::token::Audience::One("iam".into()),
        exp: iat + 900,
        iat,
        nbf: iat,
        jti: jti.into(),
        client_id: Some("iam".into()),
        email: None,
        role: "user".into(),
        permissions: vec![],
        scope: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_claims as claims;
    use super::*;

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
    fn len_counts_subjects_and_tokens() {
        let revoked = Revocations::new(
            [
                ("u".to_owned(), 1000),
                ("u".to_owned(), 900),
                ("v".to_owned(), 5),
            ],
            ["j1".to_owned()],
        );
        assert_eq!(revoked.len(), (2, 1));
        assert_eq!(Revocations::NONE.len(), (0, 0));
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
        assert_eq!(cutoff_second(1_000_000_000), 1000);
        assert_eq!(cutoff_second(1_000_000_001), 1001);
        assert_eq!(cutoff_second(1_000_000_400), 1001);
        assert_eq!(cutoff_second(1_000_999_999), 1001);
        assert_eq!(cutoff_second(0), 0);
        assert_eq!(cutoff_second(-1), 0);
        assert_eq!(cutoff_second(-1_000_000), -1);
    }

    #[test]
    fn a_second_revocation_in_the_same_second_still_revokes_what_was_minted_between() {
        // First revocation at 1000.3 s: cut-off 1001; a token minted at 1000.6 s gets iat 1001.
        let first = revocation_instant(1_000_300_000, None);
        assert_eq!(first, 1_000_300_000);
        let minted_between = issued_at(1000, Some(cutoff_second(first)));
        assert_eq!(minted_between, 1001);
        // Second revocation at 1000.8 s: its cut-off must refuse that token.
        let second = revocation_instant(1_000_800_000, Some(first));
        assert_eq!(second, 1_001_000_001);
        assert!(revoked_by_subject_cutoff(
            minted_between,
            cutoff_second(second)
        ));
        // A later revocation keeps its own instant.
        assert_eq!(
            revocation_instant(1_005_000_000, Some(first)),
            1_005_000_000
        );
        // Exactly one microsecond past the previous cut-off is enough, and needed.
        assert_eq!(
            revocation_instant(1_001_000_000, Some(first)),
            1_001_000_001
        );
        assert_eq!(
            revocation_instant(1_001_000_002, Some(first)),
            1_001_000_002
        );
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
        let cutoff = cutoff_second(1_000_700_000);
        assert!(revoked_by_subject_cutoff(1000, cutoff));
        assert!(!revoked_by_subject_cutoff(
            issued_at(1000, Some(cutoff)),
            cutoff
        ));
    }
}
