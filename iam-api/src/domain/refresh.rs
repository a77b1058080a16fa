//! Refresh tokens: opaque 256-bit random values, stored only as SHA-256 hashes, rotated on
//! every use; presenting a used token again revokes its whole family.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::error::AppError;
use crate::store::refresh_tokens::RefreshTokenRecord;

/// Bytes of randomness in a refresh token.
const TOKEN_BYTES: usize = 32;
/// Anything longer cannot be one of our tokens; refused before hashing.
pub const MAX_REFRESH_TOKEN_LENGTH: usize = 512;

/// A freshly generated refresh token: the value for the client, the hash for the database.
pub struct NewRefreshTokenValue {
    pub value: String,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewRefreshTokenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewRefreshTokenValue(<redacted>)")
    }
}

/// Draws a new token from the OS CSPRNG.
pub fn generate() -> Result<NewRefreshTokenValue, AppError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    openssl::rand::rand_bytes(&mut bytes)
        .map_err(|error| AppError::Internal(format!("cannot draw random bytes: {error}")))?;
    let value = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&value);
    Ok(NewRefreshTokenValue { value, hash })
}

/// The stored form of a token. Look-ups go through the hash's unique index, so comparing
/// happens on a hash of a secret and leaks nothing useful through timing.
pub fn hash(value: &str) -> [u8; 32] {
    openssl::sha::sha256(value.as_bytes())
}

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
    fn tokens_carry_256_bits_and_are_stored_as_hashes() {
        let token = generate().expect("token");
        assert_eq!(URL_SAFE_NO_PAD.decode(&token.value).expect("b64").len(), 32);
        assert_eq!(token.hash, hash(&token.value));
        assert_ne!(generate().expect("token").value, token.value);
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
