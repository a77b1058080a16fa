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
#[derive(Debug)]
pub struct VerifiedTokens {
    capacity: usize,
    tokens: RwLock<HashMap<String, Arc<AccessTokenClaims>>>,
}

impl VerifiedTokens {
    /// An empty memory of at most `capacity` tokens (when full it is cleared and refilled,
    /// which bounds memory without per-entry bookkeeping on the hot path).
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            tokens: RwLock::new(HashMap::new()),
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
        let claims = self.tokens.read().ok()?.get(token).cloned()?;
        Some(judge_claims(&claims, rules, revoked, now).map(|()| claims))
    }

    /// Remembers a token whose signature and claims have just been verified.
    pub fn remember(&self, token: &str, claims: Arc<AccessTokenClaims>) {
        if let Ok(mut tokens) = self.tokens.write() {
            if tokens.len() >= self.capacity {
                tokens.clear();
            }
            tokens.insert(token.to_owned(), claims);
        }
    }

    /// Forgets every token (call when the key set changes).
    pub fn forget_all(&self) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.clear();
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
        memory.remember("t", claims(100));
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
        memory.remember("t", claims(100));
        let revoked = Revocations::new([], ["j".to_owned()]);
        assert_eq!(
            memory.recall("t", &rules(), &revoked, 50).map(|r| r.err()),
            Some(Some(Reason::Revoked))
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let memory = VerifiedTokens::new(2);
        memory.remember("a", claims(100));
        memory.remember("b", claims(100));
        memory.remember("c", claims(100));
        assert!(
            memory
                .recall("a", &rules(), &Revocations::NONE, 1)
                .is_none()
        );
        assert!(
            memory
                .recall("c", &rules(), &Revocations::NONE, 1)
                .is_some()
        );
    }
}
