//! Changing one's own password (`PUT /me/password`).

use chrono::Utc;
use serde_json::json;

use super::sessions::{Holder, TokenPair, charge_attempt, start_family};
use crate::domain::audit::{self, Actor, AuditEvent, EventType, Outcome};
use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::domain::revocation;
use crate::error::{AppError, BearerFailure};
use crate::state::AppState;
use crate::store::users::UserRecord;
use crate::store::{login_failures, refresh_tokens, users};

/// `PUT /me/password`: checks the caller's current password (charged to the login throttle
/// of the account, so a stolen access token is no unthrottled password oracle), sets the new
/// one, revokes every session of the account (refresh tokens and access tokens, the caller's
/// own included) and returns a fresh pair, issued after that revocation.
/// `account` is the caller as its access token was authenticated, just now.
pub async fn change_own_password(
    state: &AppState,
    actor: &Actor,
    account: &UserRecord,
    current_password: &str,
    new_password: &str,
) -> Result<TokenPair, AppError> {
    let user_id = account.id;
    let new_password = Password::parse(new_password)
        .map_err(|why| AppError::invalid_field("new_password", why))?;
    let email = Email::parse(&account.email)
        .map_err(|why| AppError::Internal(format!("stored email unusable: {why}")))?;
    charge_attempt(state, &email, Utc::now()).await?;
    let Some(stored) = users::password_state(&mut *state.db.acquire().await?, user_id).await?
    else {
        return Err(AppError::Unauthenticated(BearerFailure::UnknownUser));
    };
    // A current password out of the accepted range cannot be the account's.
    let matches = match Password::parse(current_password) {
        Ok(current) => {
            state
                .hasher
                .verify(current, Some(&stored.password_hash))
                .await?
                .matches
        }
        Err(_) => false,
    };
    if !matches {
        let event = AuditEvent {
            kind: EventType::UserPasswordChanged,
            subject: Some(user_id.to_string()),
            outcome: Outcome::Failure,
            detail: json!({ "reason": "wrong_current_password" }),
        };
        audit::record(&mut *state.db.acquire().await?, actor, event)
            .await?
            .log();
        return Err(AppError::WrongCurrentPassword);
    }
    let new_hash = state.hasher.hash(new_password).await?;

    let mut tx = state.db.begin().await?;
    if !users::lock_by_id(&mut *tx, user_id).await? {
        return Err(AppError::Unauthenticated(BearerFailure::UnknownUser));
    }
    match users::password_state(&mut *tx, user_id).await? {
        Some(now_stored) if now_stored.disabled => {
            return Err(AppError::Unauthenticated(BearerFailure::Disabled));
        }
        // Changed by someone else since it was checked: what was given is not current.
        Some(now_stored) if now_stored.password_hash != stored.password_hash => {
            return Err(AppError::WrongCurrentPassword);
        }
        Some(_) => {}
        None => return Err(AppError::Unauthenticated(BearerFailure::UnknownUser)),
    }
    let now = Utc::now();
    login_failures::clear(&mut *tx, email.as_str()).await?;
    users::update_password_hash(&mut *tx, user_id, &new_hash).await?;
    revocation::revoke_access_tokens(&mut tx, &state.config, user_id, now).await?;
    refresh_tokens::revoke_all_of_user(&mut *tx, user_id, now).await?;
    // Read after the revocation, under the lock: the new pair carries the role as it is and
    // is issued after the cut-off just written.
    let user = users::find_by_id(&mut *tx, user_id)
        .await?
        .ok_or(AppError::Unauthenticated(BearerFailure::UnknownUser))?;
    let pair = start_family(state, &mut tx, &Holder::from(&user), now).await?;
    let recorded = audit::record(
        &mut *tx,
        actor,
        AuditEvent::success(EventType::UserPasswordChanged, user_id),
    )
    .await?;
    tx.commit().await?;
    recorded.log();
    Ok(pair)
}
