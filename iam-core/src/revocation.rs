//! Revocation rules: when an access token that verified must still be refused, and what a
//! token minted after a revocation must look like so that it is not.
//!
//! A subject cut-off revokes every token of that subject issued before it. `iat` has whole
//! seconds, so the cut-off is the revocation instant rounded *up* to a whole second: every
//! token minted before the revocation (even in the same second) has an `iat` below it. A
//! token minted afterwards in that same second is given the cut-off as its `iat` (at most a
//! second ahead, well within the verifiers' leeway), so it is not refused by it.

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
