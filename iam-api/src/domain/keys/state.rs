//! Where a signing key is in its lifecycle.

use chrono::{DateTime, Utc};

use crate::store::signing_keys::SigningKeyRecord;

/// Where a key is in its lifecycle at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyState {
    Published,
    Active,
    Retired,
    Unpublished,
}

impl SigningKeyState {
    /// The state of `key` at `now`. Whether it is still published is the database's answer
    /// (the view `published_signing_keys`), not decided again here.
    pub fn of(key: &SigningKeyRecord, now: DateTime<Utc>) -> Self {
        if !key.published {
            SigningKeyState::Unpublished
        } else if key.retires_at.is_some_and(|at| at <= now) {
            SigningKeyState::Retired
        } else if key.activates_at <= now {
            SigningKeyState::Active
        } else {
            SigningKeyState::Published
        }
    }

    /// Lowercase name for `keys list`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyState::Published => "published",
            SigningKeyState::Active => "active",
            SigningKeyState::Retired => "retired",
            SigningKeyState::Unpublished => "unpublished",
        }
    }
}
