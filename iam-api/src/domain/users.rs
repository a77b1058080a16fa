//! Users: registration, look-up, listing and role assignment (disabling, deletion and
//! passwords set by an admin are in `accounts`).

use iam_core::database::connections::Database;
use serde_json::json;
use uuid::Uuid;

use crate::domain::accounts::Accounts;
use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::domain::email::Email;
use crate::domain::paging;
use crate::domain::password::Password;
use crate::domain::rbac::{
    ADMIN_ROLE, DEFAULT_ROLE, RoleName, UsersRead, UsersWrite, within_ceiling,
};
use crate::domain::revocation;
use crate::error::{AppError, FieldError, violated_constraint};
use crate::state::AppState;
use crate::store::users::{self, EMAIL_UNIQUE_INDEX, ROLE_FOREIGN_KEY, UserRecord};
use crate::store::{refresh_tokens, roles};

/// Registers a user with the default role. Both fields are checked before anything is
/// hashed, and every problem is reported.
pub async fn register(
    state: &AppState,
    actor: &Actor,
    email: &str,
    password: &str,
) -> Result<UserRecord, AppError> {
    let (email, password) = parse_credentials(email, password)?;
    let hash = state.hasher.hash(password).await?;
    let mut tx = state.db.begin().await?;
    let user = users::insert(
        &mut *tx,
        Uuid::now_v7(),
        email.as_str(),
        &hash,
        DEFAULT_ROLE,
    )
    .await
    .map_err(|error| match violated_constraint(&error) {
        Some(EMAIL_UNIQUE_INDEX) => {
            AppError::Conflict("this email is already registered".to_owned())
        }
        _ => error.into(),
    })?;
    let event = AuditEvent::success(EventType::UserRegistered, user.id)
        .with_detail(json!({ "email": user.email }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(user)
}

fn parse_credentials(email: &str, password: &str) -> Result<(Email, Password), AppError> {
    let email = Email::parse(email);
    let password = Password::parse(password);
    match (email, password) {
        (Ok(email), Ok(password)) => Ok((email, password)),
        (email, password) => {
            let mut errors = Vec::new();
            if let Err(why) = email {
                errors.push(FieldError::new("email", why));
            }
            if let Err(why) = password {
                errors.push(FieldError::new("password", why));
            }
            Err(AppError::Validation(errors))
        }
    }
}

/// What [`ensure_admin`] may do with an account that already exists and is not an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingAccount {
    /// Refuse: whoever registered the address first must not become admin (`BOOTSTRAP_ADMIN_*`,
    /// and `admin create` without `--promote`).
    Refuse,
    /// Promote it, set the operator's password and revoke every session it has
    /// (`admin create --promote`).
    Promote,
}

/// What [`ensure_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    /// A new admin account with the given password.
    Created,
    /// An existing account became admin with the given password; its sessions were revoked.
    Promoted { revoked_sessions: u64 },
    /// The account was an admin already; nothing changed (its password neither).
    AlreadyAdmin,
}

/// Makes sure `email` is an admin. A new account is created with `password`; an existing
/// admin is left as it is (idempotent); an existing non-admin account is refused with a
/// 409 unless `existing` is [`ExistingAccount::Promote`], which in one transaction gives it
/// the admin role and `password` and revokes its refresh tokens, so that an account
/// registered by someone else under the operator's address is taken over by the operator,
/// not handed to its registrant.
pub async fn ensure_admin(
    accounts: &Accounts<'_>,
    actor: &Actor,
    email: &Email,
    password: &Password,
    existing: ExistingAccount,
) -> Result<(UserRecord, AdminOutcome), AppError> {
    let Accounts { db, config, hasher } = *accounts;
    // Hashed before any lock is taken: the hash is the slow part.
    let hash = hasher.hash(password.clone()).await?;
    let mut tx = db.begin().await?;
    if let Some(id) = users::lock_by_email(&mut *tx, email.as_str()).await? {
        let account = users::find_by_id(&mut *tx, id)
            .await?
            .ok_or(AppError::NotFound("user"))?;
        if account.role == ADMIN_ROLE {
            tx.rollback().await?;
            return Ok((account, AdminOutcome::AlreadyAdmin));
        }
        if existing == ExistingAccount::Refuse {
            return Err(AppError::Conflict(format!(
                "{email} is already registered as a non-admin account; promoting it would hand \
                 admin to whoever registered it (use `iam-api admin create --promote`, which \
                 also replaces its password and signs it out everywhere)",
                email = email.as_str()
            )));
        }
        users::update_password_hash(&mut *tx, account.id, &hash).await?;
        let user = users::update_role(&mut *tx, account.id, ADMIN_ROLE)
            .await?
            .ok_or(AppError::NotFound("user"))?;
        // The registrant's sessions end: refresh tokens (which would now mint admin tokens) and
        // access tokens (which the api judges by the account's current role).
        let now = chrono::Utc::now();
        let revoked_sessions =
            refresh_tokens::revoke_all_of_user(&mut *tx, account.id, now).await?;
        revocation::revoke_access_tokens(&mut tx, config, account.id, now).await?;
        let event = AuditEvent::success(EventType::AdminPromoted, user.id)
            .with_detail(json!({ "email": user.email, "revoked_sessions": revoked_sessions }));
        let recorded = audit::record(&mut *tx, actor, event).await?;
        tx.commit().await?;
        recorded.log();
        return Ok((user, AdminOutcome::Promoted { revoked_sessions }));
    }
    match users::insert(&mut *tx, Uuid::now_v7(), email.as_str(), &hash, ADMIN_ROLE).await {
        Ok(user) => {
            let event = AuditEvent::success(EventType::AdminCreated, user.id)
                .with_detail(json!({ "email": user.email }));
            let recorded = audit::record(&mut *tx, actor, event).await?;
            tx.commit().await?;
            recorded.log();
            Ok((user, AdminOutcome::Created))
        }
        // Someone registered the address between our look-up and insert (or another replica
        // bootstrapped it): judge the account that now exists.
        Err(error) if violated_constraint(&error) == Some(EMAIL_UNIQUE_INDEX) => {
            tx.rollback().await?;
            Box::pin(ensure_admin(accounts, actor, email, password, existing)).await
        }
        Err(error) => Err(error.into()),
    }
}

/// The user with this id as the bearer of the access token `jti` (`/me` and every
/// authenticated request).
pub async fn find_bearer(
    state: &AppState,
    id: Uuid,
    jti: &str,
) -> Result<Option<users::BearerRecord>, AppError> {
    Ok(users::find_bearer(&mut *state.db.acquire().await?, id, jti).await?)
}

/// The user with this id, for callers allowed to read users.
pub async fn get(_: &UsersRead, state: &AppState, id: Uuid) -> Result<UserRecord, AppError> {
    users::find_by_id(&mut *state.db.acquire().await?, id)
        .await?
        .ok_or(AppError::NotFound("user"))
}

/// The user with this email (trimmed and lowercased first), for callers allowed to read
/// users; `None` when nobody has it.
pub async fn find_by_email(
    _: &UsersRead,
    db: &Database,
    email: &str,
) -> Result<Option<UserRecord>, AppError> {
    let email = Email::parse(email).map_err(|why| AppError::invalid_field("email", why))?;
    Ok(users::find_by_email(&mut *db.acquire().await?, email.as_str()).await?)
}

/// 409 when `target` is the last enabled admin, whom the change would remove (`what`: how).
/// Call it holding [`users::lock_admin_set`], so that two concurrent changes cannot both see
/// another admin left.
pub(super) async fn refuse_removing_last_admin(
    tx: &mut sqlx::PgConnection,
    target: &UserRecord,
    what: &str,
) -> Result<(), AppError> {
    if target.role == ADMIN_ROLE
        && !target.disabled
        && users::count_enabled_with_role(&mut *tx, ADMIN_ROLE).await? <= 1
    {
        return Err(AppError::Conflict(format!(
            "this is the last enabled admin and cannot be {what}; make another user admin first"
        )));
    }
    Ok(())
}

/// One page of the user listing.
#[derive(Debug)]
pub struct UserPage {
    pub items: Vec<UserRecord>,
    /// The `after` value of the next page, when there is one.
    pub next: Option<Uuid>,
}

/// Lists users in creation order, `limit` at a time, after the user id `after`.
pub async fn list(
    _: &UsersRead,
    db: &Database,
    after: Option<Uuid>,
    limit: Option<i64>,
) -> Result<UserPage, AppError> {
    let limit = paging::page_size(limit)?;
    let rows = users::list_after(
        &mut *db.acquire().await?,
        after,
        paging::rows_to_read(limit),
    )
    .await?;
    let (items, next) = paging::page_of(rows, limit, |user| user.id);
    Ok(UserPage { items, next })
}

/// Gives a user another role, within the delegation ceiling: the caller must hold every
/// permission of the new role and of the user's current one (nobody grants, or takes from
/// someone, more than they hold). The last admin cannot be demoted (409). The role must exist;
/// its row stays locked until the change commits, so it cannot gain permissions meanwhile.
pub async fn assign_role(
    permission: &UsersWrite,
    accounts: &Accounts<'_>,
    actor: &Actor,
    id: Uuid,
    role: &str,
) -> Result<UserRecord, AppError> {
    let role = RoleName::parse(role).map_err(|why| AppError::invalid_field("role", why))?;
    let mut tx = accounts.db.begin().await?;
    users::lock_admin_set(&mut *tx).await?;
    if !users::lock_by_id(&mut *tx, id).await? {
        return Err(AppError::NotFound("user"));
    }
    let target = users::find_by_id(&mut *tx, id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let new_role = roles::find_for_share(&mut *tx, role.as_str())
        .await?
        .ok_or_else(|| AppError::invalid_field("role", "no such role"))?;
    within_ceiling(permission, &target.permissions)?;
    within_ceiling(permission, &new_role.permissions)?;
    if new_role.name != ADMIN_ROLE {
        refuse_removing_last_admin(&mut tx, &target, "demoted").await?;
    }
    let user = users::update_role(&mut *tx, id, role.as_str())
        .await
        .map_err(|error| match violated_constraint(&error) {
            Some(ROLE_FOREIGN_KEY) => AppError::invalid_field("role", "no such role"),
            _ => error.into(),
        })?
        .ok_or(AppError::NotFound("user"))?;
    if target.role == user.role {
        tx.rollback().await?;
        return Ok(user);
    }
    // Tokens carry the role: those minted before the change must stop working at every
    // verifier, not only here (the api reads the role from the database anyway).
    revocation::revoke_access_tokens(&mut tx, accounts.config, id, chrono::Utc::now()).await?;
    let event = AuditEvent::success(EventType::UserRoleChanged, id)
        .with_detail(json!({ "from": target.role, "to": user.role }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(user)
}
