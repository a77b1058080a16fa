//! Memory of tokens that verified, so that a client's repeated requests with one token cost
//! a map look-up instead of an RSA verification.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::jwk::KeySet;
use crate::revocation::Revocations;
use crate::token::{AccessTokenClaims, Reason, VerificationRules, judge_claims};

/// How long (seconds) a remembered token may go without being recalled before it gives up
/// its place to a newly verified one in a full memory.
pub const IDLE_SECONDS: i64 = 30;

/// Remembers up to `capacity` verified tokens with their claims, as a `T` that holds them:
/// the claims themselves, or the claims with what a holder derives from them once per token
/// (the sidecar's identity headers). Holders must call
/// [`Self::key_set_replaced`] whenever they install a new key set;
/// the claims are judged again on every recall (issuer, audience, validity window and
/// revocations), so a remembered token that has since been revoked is refused.
///
/// When the memory is full, tokens that can no longer be valid and tokens not recalled for
/// [`IDLE_SECONDS`] are swept out (at most once a second); if it is still full, a newly
/// verified token is simply not remembered. Clearing the whole memory instead, as it once
/// did, gave a working set larger than the memory no hits at all (each token was dropped
/// before it came round again) and made one request pay for freeing every entry; now the
/// tokens in use keep hitting, the others cost a verification each, as they would anyway,
/// and a burst of tokens used once cannot keep a later client's token out for longer than
/// [`IDLE_SECONDS`].
#[derive(Debug)]
pub struct VerifiedTokens<T = AccessTokenClaims> {
    capacity: usize,
    tokens: RwLock<Remembered<T>>,
}

#[derive(Debug)]
struct Remembered<T> {
    /// Hashed with foldhash, seeded per process, rather than SipHash: a recall hashes the
    /// whole token (~800 bytes) and SipHash's flooding resistance buys nothing here, as only
    /// tokens that verified, whose bytes no client chooses, are ever stored.
    by_token: HashMap<String, Entry<T>, foldhash::fast::RandomState>,
    /// When (Unix seconds) the memory was last swept.
    swept_at: i64,
    /// Counts the times everything was forgotten: a token verified before the latest one
    /// (with a key set since withdrawn) must not be remembered after it.
    epoch: u64,
}

// Not derived: the derive would ask `T: Default`.
impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Remembered {
            by_token: HashMap::default(),
            swept_at: 0,
            epoch: 0,
        }
    }
}

#[derive(Debug)]
struct Entry<T> {
    verified: Arc<T>,
    /// When (Unix seconds) the token was last verified or recalled.
    used_at: AtomicI64,
}

/// The memory's state when a token was found unknown: pass it back to
/// [`VerifiedTokens::remember`] so that a token verified with a key set the memory has
/// forgotten since (see [`VerifiedTokens::key_set_replaced`]) is not remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// What the memory knows of a token.
#[derive(Debug)]
pub enum Recall<T = AccessTokenClaims> {
    /// It verified before: its claims if they are still valid now, else why not.
    Known(Result<Arc<T>, Reason>),
    /// It has to be verified. Take the key set *after* this answer, so that a key set
    /// replaced in between is either the one used or one the memory forgot afterwards.
    Unknown(Epoch),
}

impl<T: Borrow<AccessTokenClaims>> VerifiedTokens<T> {
    /// An empty memory of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            tokens: RwLock::new(Remembered::default()),
        }
    }

    /// What is known of `token` at `now`: its claims judged again (issuer, audience,
    /// validity window, `revoked`) if it verified before, else the epoch to remember it in.
    pub fn recall(
        &self,
        token: &str,
        rules: &VerificationRules,
        revoked: &Revocations,
        now: i64,
    ) -> Recall<T> {
        let tokens = match self.tokens.read() {
            Ok(tokens) => tokens,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(entry) = tokens.by_token.get(token) else {
            return Recall::Unknown(Epoch(tokens.epoch));
        };
        // Relaxed: the time only decides what a sweep keeps, never a verdict.
        entry.used_at.fetch_max(now, Ordering::Relaxed);
        let verified = Arc::clone(&entry.verified);
        drop(tokens);
        Recall::Known(judge_claims((*verified).borrow(), rules, revoked, now).map(|()| verified))
    }

    /// Remembers a token whose signature and claims have just been verified under `rules`
    /// at `now`, with a key set taken after [`Self::recall`] answered `verified_in`, if no
    /// forgetting came between (see [`Self::key_set_replaced`]) and there is room (see the
    /// type's documentation).
    pub fn remember(
        &self,
        token: &str,
        verified: Arc<T>,
        rules: &VerificationRules,
        now: i64,
        verified_in: Epoch,
    ) {
        // Read-locked first, so that the common refusals take no write lock to keep the
        // recalls of other requests waiting.
        {
            let Ok(tokens) = self.tokens.read() else {
                return;
            };
            // Verified with a key set the memory has forgotten since.
            if tokens.epoch != verified_in.0 {
                return;
            }
            // Full, and already swept this second: nothing new can have expired or idled.
            if tokens.by_token.len() >= self.capacity && tokens.swept_at == now {
                return;
            }
        }
        let Ok(mut tokens) = self.tokens.write() else {
            return;
        };
        if tokens.epoch != verified_in.0 {
            return;
        }
        // `!=` rather than `<`: a clock stepped back must not stop the sweeps.
        if tokens.by_token.len() >= self.capacity && tokens.swept_at != now {
            tokens.by_token.retain(|_, entry| {
                // Expired past the leeway: refused on recall whatever else holds.
                !crate::token::expired((*entry.verified).borrow(), rules, now)
                    && now - entry.used_at.load(Ordering::Relaxed) < IDLE_SECONDS
            });
            tokens.swept_at = now;
        }
        if tokens.by_token.len() < self.capacity {
            let entry = Entry {
                verified,
                used_at: AtomicI64::new(now),
            };
            tokens.by_token.insert(token.to_owned(), entry);
        }
    }

    /// Call after installing `installed` in place of `previous`: forgets every token, and
    /// every verification under way, unless `installed` verifies all that `previous` did
    /// (the same keys again, or more of them). After the install, not before, so that no
    /// verification with `previous` outlives it here (see [`Recall::Unknown`]).
    pub fn key_set_replaced(&self, previous: &KeySet, installed: &KeySet) {
        if !installed.holds_every_key_of(previous) {
            self.forget_all();
        }
    }

    /// Forgets every token, and every verification under way (see [`Epoch`]).
    fn forget_all(&self) {
        let mut tokens = match self.tokens.write() {
            Ok(tokens) => tokens,
            Err(poisoned) => poisoned.into_inner(),
        };
        tokens.by_token.clear();
        tokens.epoch = tokens.epoch.wrapping_add(1);
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use crate::token::Audience;

    fn claims(exp: i64) -> Arc<AccessTokenClaims> {
        Arc::new(AccessTokenClaims {
            iss: "iam".into(),
            sub: "user".into(),
            aud: Audience::One("iam".into()),
            exp,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            client_id: Some("iam".into()),
            email: Some("a@example.com".into()),
            role: "user".into(),
            permissions: vec![],
            scope: None,
        })
    }

    fn rules() -> VerificationRules {
        VerificationRules {
            issuer: "iam".into(),
            audience: "iam".into(),
            leeway_seconds: 0,
        }
    }

    /// Whether `token` is remembered at `now` (valid or not).
    fn known(memory: &VerifiedTokens, token: &str, now: i64) -> bool {
        matches!(
            memory.recall(token, &rules(), &Revocations::NONE, now),
            Recall::Known(_)
        )
    }

    /// Remembers `token` (expiring at `exp`) as a caller does: recall, then remember in the
    /// epoch the recall gave.
    fn verify_and_remember(memory: &VerifiedTokens, token: &str, exp: i64, now: i64) {
        remember_with(memory, token, exp, &rules(), now);
    }

    fn remember_with(
        memory: &VerifiedTokens,
        token: &str,
        exp: i64,
        rules: &VerificationRules,
        now: i64,
    ) {
        if let Recall::Unknown(epoch) = memory.recall(token, rules, &Revocations::NONE, now) {
            memory.remember(token, claims(exp), rules, now, epoch);
        }
    }

    fn verdict(
        memory: &VerifiedTokens,
        token: &str,
        revoked: &Revocations,
        now: i64,
    ) -> Option<Result<(), Reason>> {
        match memory.recall(token, &rules(), revoked, now) {
            Recall::Known(result) => Some(result.map(|_| ())),
            Recall::Unknown(_) => None,
        }
    }

    #[test]
    fn a_remembered_token_is_recalled_until_it_expires() {
        let memory = VerifiedTokens::new(10);
        assert_eq!(verdict(&memory, "t", &Revocations::NONE, 5), None);
        verify_and_remember(&memory, "t", 100, 0);
        assert_eq!(verdict(&memory, "t", &Revocations::NONE, 50), Some(Ok(())));
        assert_eq!(
            verdict(&memory, "t", &Revocations::NONE, 101),
            Some(Err(Reason::Expired))
        );
        memory.forget_all();
        assert_eq!(verdict(&memory, "t", &Revocations::NONE, 50), None);
    }

    #[test]
    fn a_remembered_token_revoked_since_is_refused() {
        let memory = VerifiedTokens::new(10);
        verify_and_remember(&memory, "t", 100, 0);
        let revoked = Revocations::new([], ["j".to_owned()]);
        assert_eq!(
            verdict(&memory, "t", &revoked, 50),
            Some(Err(Reason::Revoked))
        );
    }

    #[test]
    fn a_token_verified_before_the_memory_forgot_is_not_remembered_after() {
        // A request finds the token unknown and verifies it with the key set of the moment;
        // meanwhile a key set without that key is installed and the memory forgets.
        let memory = VerifiedTokens::new(10);
        let Recall::Unknown(epoch) = memory.recall("t", &rules(), &Revocations::NONE, 1) else {
            panic!("an empty memory knows no token");
        };
        memory.forget_all();
        memory.remember("t", claims(100), &rules(), 1, epoch);
        assert!(!known(&memory, "t", 1));
        // Verified after the forgetting, it is remembered.
        verify_and_remember(&memory, "t", 100, 1);
        assert!(known(&memory, "t", 1));
        // And a verification that began before a second forgetting is refused again.
        let Recall::Unknown(epoch) = memory.recall("u", &rules(), &Revocations::NONE, 1) else {
            panic!("u is unknown");
        };
        memory.forget_all();
        memory.remember("u", claims(100), &rules(), 1, epoch);
        assert!(!known(&memory, "u", 1) && !known(&memory, "t", 1));
    }

    #[test]
    fn a_new_key_set_forgets_only_when_it_lacks_or_changes_a_key() {
        let key = |kid: &str, n: u8| crate::PublicJwk {
            kid: kid.to_owned(),
            ..crate::PublicJwk::from_rsa_components(&[n; 256], &[1, 0, 1])
        };
        let set = |keys| KeySet::from_jwks(&crate::PublicJwks { keys }).expect("set");
        let first = set(vec![key("a", 0xc3)]);
        let memory = VerifiedTokens::new(10);
        verify_and_remember(&memory, "t", 100, 1);
        let grown = set(vec![key("a", 0xc3), key("b", 0xc5)]);
        memory.key_set_replaced(&first, &grown);
        assert!(known(&memory, "t", 1));
        // A verification under way is remembered after an install that forgets nothing.
        let Recall::Unknown(epoch) = memory.recall("u", &rules(), &Revocations::NONE, 1) else {
            panic!("u is unknown");
        };
        memory.key_set_replaced(&grown, &set(vec![key("b", 0xc5), key("a", 0xc3)]));
        memory.remember("u", claims(100), &rules(), 1, epoch);
        assert!(known(&memory, "u", 1));
        memory.key_set_replaced(&grown, &set(vec![key("b", 0xc5)]));
        assert!(!known(&memory, "t", 1) && !known(&memory, "u", 1));
    }

    #[test]
    fn a_full_memory_keeps_what_it_holds_and_sweeps_out_expired_tokens() {
        let memory = VerifiedTokens::new(2);
        verify_and_remember(&memory, "a", 100, 1);
        verify_and_remember(&memory, "b", 10, 1);
        verify_and_remember(&memory, "c", 100, 1);
        // Full of valid tokens: the newcomer is not remembered, the others stay.
        assert!(known(&memory, "a", 1) && known(&memory, "b", 1));
        assert!(!known(&memory, "c", 1));
        // Once "b" has expired (exp 10, no leeway), a newcomer takes its place.
        verify_and_remember(&memory, "d", 100, 11);
        assert!(known(&memory, "a", 11) && known(&memory, "d", 11));
        assert!(!known(&memory, "b", 11));
    }

    #[test]
    fn a_full_memory_gives_the_place_of_a_token_idle_for_the_limit_to_a_newcomer() {
        let memory = VerifiedTokens::new(2);
        verify_and_remember(&memory, "used", 1_000, 0);
        verify_and_remember(&memory, "once", 1_000, 0);
        // Not full: no sweep, an idle token stays.
        let roomy = VerifiedTokens::new(3);
        verify_and_remember(&roomy, "once", 1_000, 0);
        verify_and_remember(&roomy, "b", 1_000, 100);
        assert!(known(&roomy, "once", 100) && known(&roomy, "b", 100));
        // "used" keeps being recalled; "once" never is again.
        for now in (0..IDLE_SECONDS).step_by(10) {
            assert!(known(&memory, "used", now));
        }
        // One second short of the limit, "once" keeps its place.
        verify_and_remember(&memory, "late", 1_000, IDLE_SECONDS - 1);
        assert!(!known(&memory, "late", IDLE_SECONDS - 1));
        // At the limit it gives it up; "used" (recalled at IDLE_SECONDS - 10) stays.
        verify_and_remember(&memory, "late", 1_000, IDLE_SECONDS);
        assert!(known(&memory, "late", IDLE_SECONDS));
        assert!(known(&memory, "used", IDLE_SECONDS));
        assert!(!known(&memory, "once", IDLE_SECONDS));
        // A sweep that frees several places serves every newcomer of its second.
        let memory = VerifiedTokens::new(3);
        for token in ["used", "once", "twice"] {
            verify_and_remember(&memory, token, 1_000, 0);
        }
        assert!(known(&memory, "used", 10));
        for token in ["late", "later"] {
            verify_and_remember(&memory, token, 1_000, IDLE_SECONDS);
            assert!(known(&memory, token, IDLE_SECONDS), "{token}");
        }
        assert!(known(&memory, "used", IDLE_SECONDS));
    }

    #[test]
    fn the_leeway_keeps_a_just_expired_token_and_sweeps_run_once_a_second() {
        let lenient = VerificationRules {
            leeway_seconds: 5,
            ..rules()
        };
        let memory = VerifiedTokens::new(1);
        let known_under = |token: &str, now: i64| {
            matches!(
                memory.recall(token, &lenient, &Revocations::NONE, now),
                Recall::Known(_)
            )
        };
        remember_with(&memory, "a", 10, &lenient, 1);
        // Within the leeway "a" may still be accepted, so it stays.
        remember_with(&memory, "b", 100, &lenient, 15);
        assert!(known_under("a", 15));
        // No second sweep within the same second: "b" still finds no room.
        remember_with(&memory, "b", 100, &lenient, 15);
        assert!(!known_under("b", 15));
        remember_with(&memory, "b", 100, &lenient, 16);
        assert!(known_under("b", 16));
    }
}
