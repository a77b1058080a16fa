//! Refresh tokens: opaque 256-bit random values, stored only as SHA-256 hashes, rotated on
//! every use; presenting a used token again revokes its whole family.

use chrono::{DateTime, Utc};

use crate::store::refresh_tokens::RefreshTokenRecord;

/// Anything longer cannot be one of our tokens; refused before hashing.
pub const MAX_REFRESH_TOKEN_LENGTH: usize = 512;

/// A refresh token is an opaque secret.
pub use super::opaque_secret::{generate, hash};

/// What presenting a stored token at `now` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedToken {
    /// Exchange it for a new pair.
    Valid,
    /// Used before (or its family was revoked): a replay, so revoke the family.
    Replayed,
    /// Past its expiry.
    Expired,
}

/// Judges a stored token presented at `now`.
pub fn judge(record: &RefreshTokenRecord, now: DateTime<Utc>) -> PresentedToken {
    if record.used_at.is_some() || record.revoked_at.is_some() {
        PresentedToken::Replayed
    } else if record.expires_at <= now {
        PresentedToken::Expired
    } else {
        PresentedToken::Valid
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(now: DateTime<Utc>) -> RefreshTokenRecord {
        RefreshTokenRecord {
            id: Uuid::now_v7(),
            family_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            expires_at: now + chrono::Duration::seconds(60),
            used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_used_or_revoked_token_is_a_replay() {
        let now = Utc::now();
        assert_eq!(judge(&record(now), now), PresentedToken::Valid);
        let used = RefreshTokenRecord {
            used_at: Some(now),
            ..record(now)
        };
        assert_eq!(judge(&used, now), PresentedToken::Replayed);
        let revoked = RefreshTokenRecord {
            revoked_at: Some(now),
            ..record(now)
        };
        assert_eq!(judge(&revoked, now), PresentedToken::Replayed);
        let expired = record(now);
        assert_eq!(
            judge(&expired, now + chrono::Duration::seconds(60)),
            PresentedToken::Expired
        );
    }
}
