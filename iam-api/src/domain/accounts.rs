//! What an admin does to an account: disable or enable it, delete it, set its password.
//! Each change that ends the account's sessions revokes its access tokens (at the api at
//! once, at every verifier through the revocation feed) before its refresh tokens, in the
//! transaction that makes the change. Each is within the delegation ceiling: nobody
//! disables, deletes or takes over (by setting the password of) an account that holds a
//! permission they do not.

use chrono::Utc;
use iam_core::database::connections::Database;
use serde_json::json;
use uuid::Uuid;

use crate::config::ApiConfig;
use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::domain::password::{Password, PasswordHasherPool};
use crate::domain::rbac::{UsersWrite, within_ceiling};
use crate::domain::revocation;
use crate::domain::users::refuse_removing_last_admin;
use crate::error::AppError;
use crate::store::users::{self, UserRecord};
use crate::store::{login_failures, refresh_tokens};

/// What account changes work with: the api's state, or what the command line opened.
#[derive(Debug, Clone, Copy)]
pub struct Accounts<'a> {
    pub db: &'a Database,
    pub config: &'a ApiConfig,
    pub hasher: &'a PasswordHasherPool,
}

/// Locks the user's row (and, when `admin_set` is asked, the set of enabled admins first)
/// and reads the user as it is now; 404 when there is none.
async fn lock_target(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    admin_set: bool,
) -> Result<UserRecord, AppError> {
    if admin_set {
        users::lock_admin_set(&mut *tx).await?;
    }
    if !users::lock_by_id(&mut *tx, id).await? {
        return Err(AppError::NotFound("user"));
    }
    users::find_by_id(&mut *tx, id)
        .await?
        .ok_or(AppError::NotFound("user"))
}

/// Ends every session of the user: access tokens first (this also locks the user's row),
/// then refresh tokens.
async fn end_sessions(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    id: Uuid,
) -> Result<(), AppError> {
    let now = Utc::now();
    revocation::revoke_access_tokens(tx, config, id, now).await?;
    refresh_tokens::revoke_all_of_user(&mut *tx, id, now).await?;
    Ok(())
}

/// Disables (`true`) or enables (`false`) a user. Disabling ends every session of the
/// account and refuses its logins; the last enabled admin cannot be disabled (409).
/// Enabling lets it log in again (its old sessions stay ended). Setting the state it
/// already has changes nothing.
pub async fn set_disabled(
    permission: &UsersWrite,
    accounts: &Accounts<'_>,
    actor: &Actor,
    id: Uuid,
    disabled: bool,
) -> Result<UserRecord, AppError> {
    let mut tx = accounts.db.begin().await?;
    let target = lock_target(&mut tx, id, disabled).await?;
    within_ceiling(permission, &target.permissions)?;
    if target.disabled == disabled {
        tx.rollback().await?;
        return Ok(target);
    }
    if disabled {
        refuse_removing_last_admin(&mut tx, &target, "disabled").await?;
    }
    let user = users::set_disabled(&mut *tx, id, disabled)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let kind = if disabled {
        end_sessions(&mut tx, accounts.config, id).await?;
        EventType::UserDisabled
    } else {
        EventType::UserEnabled
    };
    let event = AuditEvent::success(kind, id).with_detail(json!({ "email": user.email }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(user)
}

/// Deletes a user. Its access tokens are revoked first: the revocation outlives the account
/// in the feed for as long as any of its tokens could be valid. The last enabled admin
/// cannot be deleted (409).
pub async fn delete(
    permission: &UsersWrite,
    accounts: &Accounts<'_>,
    actor: &Actor,
    id: Uuid,
) -> Result<(), AppError> {
    let mut tx = accounts.db.begin().await?;
    let target = lock_target(&mut tx, id, true).await?;
    within_ceiling(permission, &target.permissions)?;
    refuse_removing_last_admin(&mut tx, &target, "deleted").await?;
    // The refresh tokens go with the row (ON DELETE CASCADE).
    revocation::revoke_access_tokens(&mut tx, accounts.config, id, Utc::now()).await?;
    if !users::delete(&mut *tx, id).await? {
        return Err(AppError::NotFound("user"));
    }
    let event = AuditEvent::success(EventType::UserDeleted, id)
        .with_detail(json!({ "email": target.email, "role": target.role }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}

/// Sets a user's password (an admin's reset): every session of the account ends and its
/// failed-login record is cleared, so the new password works at once.
pub async fn set_password(
    permission: &UsersWrite,
    accounts: &Accounts<'_>,
    actor: &Actor,
    id: Uuid,
    password: Password,
) -> Result<(), AppError> {
    // Hashed before any lock is taken: the hash is the slow part.
    let hash = accounts.hasher.hash(password).await?;
    let mut tx = accounts.db.begin().await?;
    let target = lock_target(&mut tx, id, false).await?;
    within_ceiling(permission, &target.permissions)?;
    users::update_password_hash(&mut *tx, id, &hash).await?;
    end_sessions(&mut tx, accounts.config, id).await?;
    login_failures::clear(&mut *tx, &target.email).await?;
    let recorded = audit::record(
        &mut *tx,
        actor,
        AuditEvent::success(EventType::UserPasswordSet, id),
    )
    .await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}
