//! `/api/v1/users`: registration, listing, look-up and role assignment.

use chrono::{DateTime, Utc};
use salvo::oapi::ToSchema;
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::auth::authorize;
use super::rate_limit;
use super::{Accepts, BodyFields, Created, Ok200, app_state};
use crate::domain::rbac::{UsersRead, UsersWrite};
use crate::domain::users;
use crate::error::AppError;
use crate::store::users::UserRecord;

/// A user account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

impl From<UserRecord> for UserResponse {
    fn from(user: UserRecord) -> Self {
        UserResponse {
            id: user.id,
            email: user.email,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

/// Registration: an email (trimmed, lowercased, at most 254 characters) and a password of
/// 8 to 128 characters.
#[derive(Debug, ToSchema)]
pub struct CreateUserRequest {
    pub email: String,
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
pub struct UserPageResponse {
    pub items: Vec<UserResponse>,
    /// Pass as `after` to get the next page; null on the last page.
    pub next: Option<Uuid>,
}

/// A role assignment.
#[derive(Debug, ToSchema)]
pub struct AssignRoleRequest {
    /// The name of an existing role.
    pub role: String,
}

/// Registers a new user with the role `user`.
#[endpoint(
    tags("users"),
    request_body = CreateUserRequest,
    responses(
        (status_code = 201, description = "Registered", body = UserResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 409, description = "The email is already registered"),
        (status_code = 413, description = "Body over 64 KiB"),
        (status_code = 422, description = "Invalid email or password"),
    )
)]
pub async fn create_user(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<UserResponse>, AppError> {
    let state = app_state(depot)?;
    rate_limit::admit(req, state)?;
    let request = CreateUserRequest::read(req).await?;
    let user = users::register(state, &request.email, &request.password).await?;
    Ok(Created {
        location: format!("/api/v1/users/{}", user.id),
        body: user.into(),
    })
}

/// Lists users in creation order (requires `iam:users:read`).
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "One page of users", body = UserPageResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:users:read"),
        (status_code = 422, description = "Invalid limit or cursor"),
    )
)]
pub async fn list_users(
    req: &mut Request,
    depot: &mut Depot,
    limit: QueryParam<String, false>,
    after: QueryParam<String, false>,
) -> Result<Ok200<UserPageResponse>, AppError> {
    let (state, permission) = authorize::<UsersRead>(req, depot).await?;
    let limit = match limit.into_inner() {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            AppError::invalid_field("limit", "must be an integer between 1 and 200")
        })?),
    };
    let after = match after.into_inner() {
        None => None,
        Some(raw) => Some(
            Uuid::parse_str(&raw)
                .map_err(|_| AppError::invalid_field("after", "must be a user id from `next`"))?,
        ),
    };
    let page = users::list(&permission, state, after, limit).await?;
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
    let (state, permission) = authorize::<UsersRead>(req, depot).await?;
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
    let (state, permission) = authorize::<UsersWrite>(req, depot).await?;
    let user_id = parse_user_id(&id)?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = AssignRoleRequest {
        role: body.required_string("role"),
    };
    body.finish()?;
    let user = users::assign_role(&permission, state, user_id, &request.role).await?;
    Ok(Ok200(user.into()))
}

/// The user routes.
pub fn router() -> Router {
    Router::with_path("users")
        .post(create_user)
        .get(list_users)
        .push(
            Router::with_path("{id}")
                .get(get_user)
                .push(Router::with_path("role").put(assign_role)),
        )
}
