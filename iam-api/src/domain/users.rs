//! Users: registration, look-up, listing and role assignment.

use uuid::Uuid;

use crate::domain::email::Email;
use crate::domain::password::{Password, PasswordHasherPool};
use crate::domain::rbac::{ADMIN_ROLE, DEFAULT_ROLE, RoleName, UsersRead, UsersWrite};
use crate::error::{AppError, FieldError, violated_constraint};
use crate::state::AppState;
use crate::store::users::{self, EMAIL_UNIQUE_INDEX, ROLE_FOREIGN_KEY, UserRecord};

/// Largest page of the user listing.
pub const MAX_PAGE_SIZE: i64 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// Registers a user with the default role. Both fields are checked before anything is
/// hashed, and every problem is reported.
pub async fn register(
    state: &AppState,
    email: &str,
    password: &str,
) -> Result<UserRecord, AppError> {
    let (email, password) = parse_credentials(email, password)?;
    let hash = state.hasher.hash(password).await?;
    users::insert(
        &state.db,
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
    })
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

/// Whether [`create_or_promote_admin`] made a new account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    Created,
    Promoted,
    AlreadyAdmin,
}

/// Makes sure `email` is an admin: creates the account with `password`, or gives an
/// existing account the admin role (its password is left as it is). Idempotent.
pub async fn create_or_promote_admin(
    db: &sqlx::PgPool,
    hasher: &PasswordHasherPool,
    email: &Email,
    password: &Password,
) -> Result<(UserRecord, AdminOutcome), AppError> {
    if let Some(existing) = users::find_credentials_by_email(db, email.as_str()).await? {
        if existing.role == ADMIN_ROLE {
            let user = users::find_by_id(db, existing.id).await?;
            return user
                .map(|user| (user, AdminOutcome::AlreadyAdmin))
                .ok_or(AppError::NotFound("user"));
        }
        let user = users::update_role(db, existing.id, ADMIN_ROLE).await?;
        return user
            .map(|user| (user, AdminOutcome::Promoted))
            .ok_or(AppError::NotFound("user"));
    }
    let hash = hasher.hash(password.clone()).await?;
    match users::insert(db, Uuid::now_v7(), email.as_str(), &hash, ADMIN_ROLE).await {
        Ok(user) => Ok((user, AdminOutcome::Created)),
        // Another replica created it between our look-up and insert: promote instead.
        Err(error) if violated_constraint(&error) == Some(EMAIL_UNIQUE_INDEX) => {
            Box::pin(create_or_promote_admin(db, hasher, email, password)).await
        }
        Err(error) => Err(error.into()),
    }
}

/// The user with this id, as seen by its owner (`/me`).
pub async fn find_self(state: &AppState, id: Uuid) -> Result<Option<UserRecord>, AppError> {
    Ok(users::find_by_id(&state.db, id).await?)
}

/// The user with this id, for callers allowed to read users.
pub async fn get(_: &UsersRead, state: &AppState, id: Uuid) -> Result<UserRecord, AppError> {
    users::find_by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound("user"))
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
    state: &AppState,
    after: Option<Uuid>,
    limit: Option<i64>,
) -> Result<UserPage, AppError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(AppError::invalid_field(
            "limit",
            "must be between 1 and 200",
        ));
    }
    // One extra row tells whether another page follows.
    let mut items = users::list_after(&state.db, after, limit + 1).await?;
    let has_more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if has_more {
        items.last().map(|user| user.id)
    } else {
        None
    };
    Ok(UserPage { items, next })
}

/// Gives a user another role. The role must exist; the foreign key also protects against a
/// concurrent deletion of that role.
pub async fn assign_role(
    _: &UsersWrite,
    state: &AppState,
    id: Uuid,
    role: &str,
) -> Result<UserRecord, AppError> {
    let role = RoleName::parse(role).map_err(|why| AppError::invalid_field("role", why))?;
    users::update_role(&state.db, id, role.as_str())
        .await
        .map_err(|error| match violated_constraint(&error) {
            Some(ROLE_FOREIGN_KEY) => AppError::invalid_field("role", "no such role"),
            _ => error.into(),
        })?
        .ok_or(AppError::NotFound("user"))
}
