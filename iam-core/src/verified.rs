//! Memory of tokens that verified, so that a client's repeated requests with one token cost
//! a map look-up instead of an RSA verification.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::revocation::Revocations;
use crate::token::{AccessTokenClaims, Reason, VerificationRules, judge_claims};

/// Remembers up to `capacity` verified tokens with their claims. Holders must call
/// [`Self::forget_all`] whenever their key set changes (a key may have been withdrawn); the
/// claims are judged again on every recall (issuer, audience, validity window and
/// revocations), so a remembered token that has since been revoked is refused.
///
/// When the memory is full, tokens that can no longer be valid are swept out (at most once
/// a second); if it is still full, a newly verified token is simply not remembered. Clearing
/// the whole memory instead, as it once did, gave a working set larger than the memory no
/// hits at all (each token was dropped before it came round again) and made one request pay
/// for freeing every entry; now the tokens already remembered keep hitting until they
/// expire, and the others cost a verification each, as they would anyway.
#[derive(Debug)]
pub struct VerifiedTokens {
    capacity: usize,
    tokens: RwLock<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    by_token: HashMap<String, Arc<AccessTokenClaims>>,
    /// When (Unix seconds) the expired entries were last swept out.
    swept_at: i64,
}

impl VerifiedTokens {
    /// An empty memory of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            tokens: RwLock::new(Remembered::default()),
        }
    }

    /// The claims of `token` if it verified before and is still valid at `now`:
    /// `None` when it is unknown, `Some(Err)` when it is known but no longer valid.
    pub fn recall(
        &self,
        token: &str,
        rules: &VerificationRules,
        revoked: &Revocations,
        now: i64,
    ) -> Option<Result<Arc<AccessTokenClaims>, Reason>> {
        let claims = self.tokens.read().ok()?.by_token.get(token).cloned()?;
        Some(judge_claims(&claims, rules, revoked, now).map(|()| claims))
    }

    /// Remembers a token whose signature and claims have just been verified under `rules`
    /// at `now`, if there is room (see the type's documentation).
    pub fn remember(
        &self,
        token: &str,
        claims: Arc<AccessTokenClaims>,
        rules: &VerificationRules,
        now: i64,
    ) {
        // Full and swept this second: nothing to do, and no write lock to keep the
        // recalls of other requests waiting.
        match self.tokens.read() {
            Ok(tokens) if tokens.by_token.len() >= self.capacity && tokens.swept_at >= now => {
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(mut tokens) = self.tokens.write() else {
            return;
        };
        if tokens.by_token.len() >= self.capacity && tokens.swept_at < now {
            // Expired past the leeway: refused on recall whatever else holds.
            tokens
                .by_token
                .retain(|_, claims| !crate::token::expired(claims, rules, now));
            tokens.swept_at = now;
        }
        if tokens.by_token.len() < self.capacity {
            tokens.by_token.insert(token.to_owned(), claims);
        }
    }

    /// Forgets every token (call when the key set changes).
    pub fn forget_all(&self) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.by_token.clear();
        }
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

    #[test]
    fn a_remembered_token_is_recalled_until_it_expires() {
        let memory = VerifiedTokens::new(10);
        assert!(
            memory
                .recall("t", &rules(), &Revocations::NONE, 5)
                .is_none()
        );
        memory.remember("t", claims(100), &rules(), 0);
        assert!(matches!(
            memory.recall("t", &rules(), &Revocations::NONE, 50),
            Some(Ok(_))
        ));
        assert_eq!(
            memory
                .recall("t", &rules(), &Revocations::NONE, 101)
                .map(|r| r.err()),
            Some(Some(Reason::Expired))
        );
        memory.forget_all();
        assert!(
            memory
                .recall("t", &rules(), &Revocations::NONE, 50)
                .is_none()
        );
    }

    #[test]
    fn a_remembered_token_revoked_since_is_refused() {
        let memory = VerifiedTokens::new(10);
        memory.remember("t", claims(100), &rules(), 0);
        let revoked = Revocations::new([], ["j".to_owned()]);
        assert_eq!(
            memory.recall("t", &rules(), &revoked, 50).map(|r| r.err()),
            Some(Some(Reason::Revoked))
        );
    }

    #[test]
    fn a_full_memory_keeps_what_it_holds_and_sweeps_out_expired_tokens() {
        let memory = VerifiedTokens::new(2);
        let known = |memory: &VerifiedTokens, token: &str, now: i64| {
            memory
                .recall(token, &rules(), &Revocations::NONE, now)
                .is_some()
        };
        memory.remember("a", claims(100), &rules(), 1);
        memory.remember("b", claims(10), &rules(), 1);
        memory.remember("c", claims(100), &rules(), 1);
        // Full of valid tokens: the newcomer is not remembered, the others stay.
        assert!(known(&memory, "a", 1) && known(&memory, "b", 1));
        assert!(!known(&memory, "c", 1));
        // Once "b" has expired (exp 10, no leeway), a newcomer takes its place.
        memory.remember("d", claims(100), &rules(), 11);
        assert!(known(&memory, "a", 11) && known(&memory, "d", 11));
        assert!(!known(&memory, "b", 11));
        // Re-remembering a known token never needs room.
        memory.remember("a", claims(100), &rules(), 11);
        assert!(known(&memory, "a", 11));
    }

    #[test]
    fn the_leeway_keeps_a_just_expired_token_and_sweeps_run_once_a_second() {
        let lenient = VerificationRules {
            leeway_seconds: 5,
            ..rules()
        };
        let memory = VerifiedTokens::new(1);
        memory.remember("a", claims(10), &lenient, 1);
        // Within the leeway "a" may still be accepted, so it stays.
        memory.remember("b", claims(100), &lenient, 15);
        assert!(
            memory
                .recall("a", &lenient, &Revocations::NONE, 15)
                .is_some()
        );
        // No second sweep within the same second: "b" still finds no room.
        memory.remember("b", claims(100), &lenient, 15);
        assert!(
            memory
                .recall("b", &lenient, &Revocations::NONE, 15)
                .is_none()
        );
        memory.remember("b", claims(100), &lenient, 16);
        assert!(
            memory
                .recall("b", &lenient, &Revocations::NONE, 16)
                .is_some()
        );
    }
}
