//! `/api/v1/users`: registration, listing, look-up, role assignment, disabling, deletion and
//! passwords set by an admin.

use chrono::{DateTime, Utc};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use salvo_oapi::extract::{PathParam, QueryParam};
use serde::Serialize;
use uuid::Uuid;

use super::auth::{Authorized, anonymous, authorize};
use super::rate_limit;
use super::{Accepts, BodyFields, Created, NoContent, Ok200, app_state, query_cursor, query_limit};
use crate::config::Registration;
use crate::domain::accounts;
use crate::domain::password::Password;
use crate::domain::rbac::{UsersRead, UsersWrite};
use crate::domain::users;
use crate::error::AppError;
use crate::store::users::UserRecord;

/// A user account.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"id": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "email": "alice@example.com", "role": "user", "disabled": false, "created_at": "2026-12-01T09:30:00Z"})))]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    /// A disabled user cannot log in, refresh or use its tokens.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<UserRecord> for UserResponse {
    fn from(user: UserRecord) -> Self {
        UserResponse {
            id: user.id,
            email: user.email,
            role: user.role,
            disabled: user.disabled,
            created_at: user.created_at,
        }
    }
}

/// Registration: an email (trimmed, lowercased, at most 254 characters) and a password of
/// 8 to 128 characters.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"email": "alice@example.com", "password": "correct horse battery"})))]
pub struct CreateUserRequest {
    /// ASCII (an internationalised domain in its `xn--` form), with a dotted domain; the
    /// length is judged after trimming.
    #[salvo(schema(format = Email, max_length = 254))]
    pub email: String,
    /// 8 to 128 characters.
    #[salvo(schema(min_length = 8, max_length = 128))]
    pub password: String,
}

impl CreateUserRequest {
    async fn read(req: &mut Request) -> Result<Self, AppError> {
        let mut body = BodyFields::read(req, Accepts::Json).await?;
        let request = CreateUserRequest {
            email: body.required_string("email"),
            password: body.required_string("password"),
        };
        body.finish()?;
        Ok(request)
    }
}

/// One page of users.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"items": [{"id": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "email": "alice@example.com", "role": "user", "disabled": false, "created_at": "2026-12-01T09:30:00Z"}], "next": null})))]
pub struct UserPageResponse {
    pub items: Vec<UserResponse>,
    /// Pass as `after` to get the next page; null on the last page.
    pub next: Option<Uuid>,
}

/// A change of an account's state.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"disabled": true})))]
pub struct UpdateUserRequest {
    /// `true` disables the account (its sessions end, it cannot log in); `false` enables it.
    pub disabled: bool,
}

/// A password set by an admin.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"password": "a new long passphrase"})))]
pub struct SetPasswordRequest {
    /// 8 to 128 characters.
    #[salvo(schema(min_length = 8, max_length = 128))]
    pub password: String,
}

/// A role assignment.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"role": "editor"})))]
pub struct AssignRoleRequest {
    /// The name of an existing role.
    #[salvo(schema(pattern = r"^[a-z][a-z0-9_.-]{1,62}$"))]
    pub role: String,
}

/// Registers a new user with the role `user`. Open to anyone with `REGISTRATION=open` (the
/// default); with `REGISTRATION=closed` it requires `iam:users:write`.
#[endpoint(
    tags("users"),
    request_body = CreateUserRequest,
    responses(
        (status_code = 201, description = "Registered", body = UserResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "REGISTRATION=closed and no valid access token"),
        (status_code = 403, description = "REGISTRATION=closed and the caller lacks iam:users:write"),
        (status_code = 409, description = "The email is already registered"),
        (status_code = 413, description = "Body over 64 KiB"),
        (status_code = 422, description = "Invalid email or password"),
        (status_code = 429, description = "Too many requests from this client address; see Retry-After"),
        (status_code = 503, description = "Password hashing is saturated, or the database is unavailable; see Retry-After"),
    )
)]
pub async fn create_user(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<UserResponse>, AppError> {
    let state = app_state(depot)?;
    rate_limit::admit(req, state)?;
    let actor = match state.config.registration {
        Registration::Open => anonymous(req, state),
        Registration::Closed => authorize::<UsersWrite>(req, depot).await?.actor,
    };
    let request = CreateUserRequest::read(req).await?;
    let user = users::register(state, &actor, &request.email, &request.password).await?;
    Ok(Created {
        location: format!("/api/v1/users/{}", user.id),
        body: user.into(),
    })
}

/// Lists users in creation order (requires `iam:users:read`); with `email`, the one user
/// with that email (trimmed and lowercased first), or none.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "One page of users", body = UserPageResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:read"),
        (status_code = 422, description = "Invalid limit, cursor or email"),
    )
)]
pub async fn list_users(
    req: &mut Request,
    depot: &mut Depot,
    limit: QueryParam<String, false>,
    after: QueryParam<String, false>,
    email: QueryParam<String, false>,
) -> Result<Ok200<UserPageResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<UsersRead>(req, depot).await?;
    if let Some(email) = email.into_inner() {
        let found = users::find_by_email(&permission, &state.db, &email).await?;
        return Ok(Ok200(UserPageResponse {
            items: found.into_iter().map(Into::into).collect(),
            next: None,
        }));
    }
    let limit = query_limit(limit.into_inner())?;
    let after = query_cursor(after.into_inner(), "a user")?;
    let page = users::list(&permission, &state.read_db, after, limit).await?;
    Ok(Ok200(UserPageResponse {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

fn parse_user_id(raw: &str) -> Result<Uuid, AppError> {
    // A malformed id cannot name a user.
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("user"))
}

/// One user by id (requires `iam:users:read`).
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "The user", body = UserResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:read"),
        (status_code = 404, description = "No such user"),
    )
)]
pub async fn get_user(
    req: &mut Request,
    depot: &mut Depot,
    id: PathParam<String>,
) -> Result<Ok200<UserResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<UsersRead>(req, depot).await?;
    let user = users::get(&permission, state, parse_user_id(&id)?).await?;
    Ok(Ok200(user.into()))
}

/// Gives a user another role (requires `iam:users:write`).
///
/// A change of role revokes every access token of the user issued before it (here at once,
/// at sidecars through the revocation feed); the user's refresh tokens give tokens with the
/// new role.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    request_body = AssignRoleRequest,
    responses(
        (status_code = 200, description = "The user with its new role", body = UserResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:write, or the role (new or current) holds a permission the caller lacks"),
        (status_code = 404, description = "No such user"),
        (status_code = 409, description = "The user is the last admin"),
        (status_code = 422, description = "Unknown or invalid role"),
    )
)]
pub async fn assign_role(
    req: &mut Request,
    depot: &mut Depot,
    id: PathParam<String>,
) -> Result<Ok200<UserResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<UsersWrite>(req, depot).await?;
    let user_id = parse_user_id(&id)?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = AssignRoleRequest {
        role: body.required_string("role"),
    };
    body.finish()?;
    let user = users::assign_role(
        &permission,
        &state.accounts(),
        &actor,
        user_id,
        &request.role,
    )
    .await?;
    Ok(Ok200(user.into()))
}

/// Disables or enables a user (requires `iam:users:write`).
///
/// Disabling ends every session of the account (refresh tokens, and access tokens: here at
/// once, at sidecars through the revocation feed) and refuses its logins with the answer a
/// wrong password gets. Enabling lets it log in again.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    request_body = UpdateUserRequest,
    responses(
        (status_code = 200, description = "The user as it is now", body = UserResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:write, or the user holds a permission the caller lacks"),
        (status_code = 404, description = "No such user"),
        (status_code = 409, description = "The user is the last enabled admin"),
        (status_code = 422, description = "disabled missing or not a boolean"),
    )
)]
pub async fn update_user(
    req: &mut Request,
    depot: &mut Depot,
    id: PathParam<String>,
) -> Result<Ok200<UserResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<UsersWrite>(req, depot).await?;
    let user_id = parse_user_id(&id)?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = UpdateUserRequest {
        disabled: body.required_bool("disabled"),
    };
    body.finish()?;
    let user = accounts::set_disabled(
        &permission,
        &state.accounts(),
        &actor,
        user_id,
        request.disabled,
    )
    .await?;
    Ok(Ok200(user.into()))
}

/// Deletes a user (requires `iam:users:write`); its tokens stop working everywhere.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 204, description = "Deleted"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:write, or the user holds a permission the caller lacks"),
        (status_code = 404, description = "No such user"),
        (status_code = 409, description = "The user is the last enabled admin"),
    )
)]
pub async fn delete_user(
    req: &mut Request,
    depot: &mut Depot,
    id: PathParam<String>,
) -> Result<NoContent, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<UsersWrite>(req, depot).await?;
    accounts::delete(&permission, &state.accounts(), &actor, parse_user_id(&id)?).await?;
    Ok(NoContent)
}

/// Sets a user's password (requires `iam:users:write`); every session of the account ends.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    request_body = SetPasswordRequest,
    responses(
        (status_code = 204, description = "Set; the account's sessions have ended"),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:write, or the user holds a permission the caller lacks"),
        (status_code = 404, description = "No such user"),
        (status_code = 422, description = "The password is not 8 to 128 characters"),
        (status_code = 503, description = "Password hashing is saturated, or the database is unavailable; see Retry-After"),
    )
)]
pub async fn set_password(
    req: &mut Request,
    depot: &mut Depot,
    id: PathParam<String>,
) -> Result<NoContent, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<UsersWrite>(req, depot).await?;
    let user_id = parse_user_id(&id)?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = SetPasswordRequest {
        password: body.required_string("password"),
    };
    body.finish()?;
    let password = Password::parse(&request.password)
        .map_err(|why| AppError::invalid_field("password", why))?;
    accounts::set_password(&permission, &state.accounts(), &actor, user_id, password).await?;
    Ok(NoContent)
}

/// The user routes.
pub fn router() -> Router {
    Router::with_path("users")
        .post(create_user)
        .get(list_users)
        .push(
            Router::with_path("{id}")
                .get(get_user)
                .patch(update_user)
                .delete(delete_user)
                .push(Router::with_path("role").put(assign_role))
                .push(Router::with_path("password").put(set_password)),
        )
}
