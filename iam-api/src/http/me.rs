//! `GET /api/v1/me`: the caller's own account; `PUT /api/v1/me/password`: change one's
//! password; `DELETE /api/v1/me/sessions`: sign out everywhere.

use chrono::{DateTime, Utc};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use serde::Serialize;
use uuid::Uuid;

use super::auth::{actor_of, authenticate};
use super::tokens::TokenPairResponse;
use super::{Accepts, BodyFields, NoContent, Ok200, app_state};
use crate::domain::{own_password, sign_out};
use crate::error::AppError;

/// The caller's account with its current permissions.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"id": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "email": "alice@example.com", "role": "editor", "created_at": "2026-12-01T09:30:00Z", "permissions": ["orders:read", "orders:write"]})))]
pub struct MeResponse {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub permissions: Vec<String>,
}

/// The authenticated user, read from the database now (a changed role shows at once).
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "The caller", body = MeResponse),
        (status_code = 401, description = "No valid access token, or the user no longer exists"),
    )
)]
pub async fn me(req: &mut Request, depot: &mut Depot) -> Result<Ok200<MeResponse>, AppError> {
    let state = app_state(depot)?;
    let user = authenticate(req, state).await?;
    Ok(Ok200(MeResponse {
        id: user.id,
        email: user.email,
        role: user.role,
        created_at: user.created_at,
        permissions: user.permissions,
    }))
}

/// A change of one's own password.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"current_password": "correct horse battery", "new_password": "a new long passphrase"})))]
pub struct ChangePasswordRequest {
    /// Any string: a wrong one is a 403.
    pub current_password: String,
    /// 8 to 128 characters.
    #[salvo(schema(min_length = 8, max_length = 128))]
    pub new_password: String,
}

/// Changes the caller's password. A wrong `current_password` counts as a failed login of the
/// account (429 when they are too many). On success every session of the account ends, this
/// request's access token included, and the answer is a fresh token pair.
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status_code = 200, description = "Changed; a fresh token pair", body = TokenPairResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "current_password is wrong"),
        (status_code = 422, description = "A field is missing, or new_password is not 8 to 128 characters"),
        (status_code = 429, description = "Too many failed attempts for this account; see Retry-After"),
        (status_code = 503, description = "Password hashing is saturated, or the database is unavailable; see Retry-After"),
    )
)]
pub async fn change_password(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Ok200<TokenPairResponse>, AppError> {
    let state = app_state(depot)?;
    let user = authenticate(req, state).await?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = ChangePasswordRequest {
        current_password: body.required_string("current_password"),
        new_password: body.required_string("new_password"),
    };
    body.finish()?;
    let pair = own_password::change_own_password(
        state,
        &actor_of(req, state, &user),
        &user,
        &request.current_password,
        &request.new_password,
    )
    .await?;
    Ok(Ok200(pair.into()))
}

/// Signs the caller out everywhere: every refresh token of the account is revoked, and
/// every access token issued until now is refused (here at once, at sidecars within the
/// revocation feed's interval).
#[endpoint(
    tags("users"),
    security(("bearer" = [])),
    responses(
        (status_code = 204, description = "Signed out of every session"),
        (status_code = 401, description = "No valid access token"),
    )
)]
pub async fn sign_out_everywhere(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<NoContent, AppError> {
    let state = app_state(depot)?;
    let user = authenticate(req, state).await?;
    sign_out::sign_out_everywhere(state, &actor_of(req, state, &user), user.id).await?;
    Ok(NoContent)
}

/// The `/me` routes.
pub fn router() -> Router {
    Router::with_path("me")
        .get(me)
        .push(Router::with_path("password").put(change_password))
        .push(Router::with_path("sessions").delete(sign_out_everywhere))
}
