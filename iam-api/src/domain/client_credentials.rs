//! The client-credentials grant (RFC 6749 §4.4): a client authenticates with its id and one
//! of its secrets and gets an access token (no refresh token) for its role, narrowed by the
//! requested scope.
//!
//! Failures are throttled per client id as failed logins are per email. Unlike a password,
//! a secret holds 256 random bits, so the throttle is there against floods, not guessing: the
//! throttle is read with the client in the grant's first query, and only a failure writes.

use chrono::{DateTime, Utc};
use iam_core::token::TokenSubject;
use serde_json::json;

use crate::domain::audit::{self, Actor, AuditEvent, EventType, Outcome};
use crate::domain::clients::is_client_id;
use crate::domain::opaque_secret;
use crate::domain::scope;
use crate::domain::sessions::sign_access_token;
use crate::domain::throttle;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::login_failures::{self, FailureRecord};
use crate::store::{clients, roles};

/// Anything longer cannot be one of our secrets; refused before hashing.
const MAX_SECRET_LENGTH: usize = 512;

/// An access token for a client.
pub struct ClientToken {
    pub access_token: String,
    pub expires_in: u64,
    /// The granted scope, when the token carries any permission.
    pub scope: Option<String>,
}

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientToken").finish_non_exhaustive()
    }
}

/// The client's key in `login_failures`. Emails always hold an `@` and client ids never do,
/// so the two kinds of key cannot meet.
fn throttle_key(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// Issues an access token to the client `client_id` authenticated by `secret`, for
/// `requested_scope` (absent: everything its role holds). Unknown clients, wrong secrets and
/// disabled clients all get the same 401 (`invalid_client`).
pub async fn issue(
    state: &AppState,
    actor: &Actor,
    client_id: &str,
    secret: &str,
    requested_scope: Option<&str>,
) -> Result<ClientToken, AppError> {
    // No client has a malformed id or secret, so answering at once reveals nothing.
    if !is_client_id(client_id) || secret.is_empty() || secret.len() > MAX_SECRET_LENGTH {
        return Err(AppError::InvalidClient);
    }
    let now = Utc::now();
    let key = throttle_key(client_id);
    let secret_hash = opaque_secret::hash(secret);
    // The read share-locks the client for its duration. A revocation (disabling, deletion,
    // a permission lost by its role) locks the client before it takes its revocation
    // instant: it either committed before this read (which then sees it) or takes its
    // instant after the read, so after `now`, the `iat` of this token, which its cut-off
    // therefore refuses. The role's permissions are read by a second statement, after the
    // lock: the locking read re-reads only the client's row when it waited for a change,
    // so permissions joined into it could predate the loss that revoked the client. No
    // transaction needs to span the signing.
    let found = clients::find_credentials(
        &mut *state.db.acquire().await?,
        client_id,
        &secret_hash,
        &key,
    )
    .await?;
    let Some(client) = found else {
        return Err(refuse(state, actor, &key, client_id, None, "unknown_client", now).await);
    };
    let failures = match (client.failure_count, client.last_failure_at) {
        (Some(failure_count), Some(last_failure_at)) => Some(FailureRecord {
            failure_count,
            last_failure_at,
        }),
        _ => None,
    };
    if let Some(retry_after_seconds) = throttle::retry_after(failures.as_ref(), now) {
        return Err(AppError::ClientThrottled {
            retry_after_seconds,
        });
    }
    let reason = match (client.secret_matches, client.disabled) {
        (true, false) => None,
        (false, _) => Some("wrong_secret"),
        (true, true) => Some("disabled"),
    };
    if let Some(reason) = reason {
        return Err(refuse(state, actor, &key, client_id, Some(client_id), reason, now).await);
    }
    let permissions = roles::permissions_of(&mut *state.db.acquire().await?, &client.role)
        .await?
        .ok_or_else(|| AppError::Internal(format!("the role of client {client_id} vanished")))?;
    let granted = scope::narrow(&permissions, requested_scope).map_err(|invalid| {
        AppError::InvalidScope(format!(
            "the client's role does not hold {}",
            invalid.permission
        ))
    })?;
    if failures.is_some() {
        login_failures::clear(&mut *state.db.acquire().await?, &key).await?;
    }
    let subject = TokenSubject {
        subject: &client.id,
        client_id: &client.id,
        email: None,
        role: &client.role,
        permissions: &granted.permissions,
        scope: granted.scope.as_deref(),
    };
    let access_token = sign_access_token(state, &subject, client.tokens_revoked_at, now)?;
    Ok(ClientToken {
        access_token,
        expires_in: state.config.access_token_ttl.as_secs(),
        scope: granted.scope,
    })
}

/// Charges a failed client authentication to the client's throttle (`key`), records it, and
/// returns the error to answer with: 401, or 429 when the throttle was closed meanwhile by
/// a concurrent failure. An unrecorded refusal must not pass as a plain one, so a failure
/// to record is the answer instead.
async fn refuse(
    state: &AppState,
    actor: &Actor,
    key: &str,
    client_id: &str,
    subject: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> AppError {
    let charged = async {
        let mut tx = state.db.begin().await?;
        let record = login_failures::lock(&mut *tx, key, now).await?;
        if let Some(retry_after_seconds) = throttle::retry_after(Some(&record), now) {
            tx.rollback().await?;
            return Ok(AppError::ClientThrottled {
                retry_after_seconds,
            });
        }
        login_failures::store(&mut *tx, key, throttle::charge(record, now)).await?;
        let event = AuditEvent {
            kind: EventType::ClientAuthentication,
            subject: subject.map(str::to_owned),
            outcome: Outcome::Failure,
            detail: json!({ "client_id": client_id, "reason": reason }),
        };
        let recorded = audit::record(&mut *tx, actor, event).await?;
        tx.commit().await?;
        recorded.log();
        Ok::<_, AppError>(AppError::InvalidClient)
    };
    charged.await.unwrap_or_else(|error| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_keys_of_clients_never_meet_an_email() {
        assert_eq!(throttle_key("svc-abc"), "client:svc-abc");
        assert!(!throttle_key("svc-abc").contains('@'));
    }
}
