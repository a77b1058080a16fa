//! `GET /api/v1/me`: the caller's own account; `DELETE /api/v1/me/sessions`: sign out
//! everywhere.

use chrono::{DateTime, Utc};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::auth::authenticate;
use super::{NoContent, Ok200, app_state};
use crate::domain::sessions;
use crate::error::AppError;

/// The caller's account with its current permissions.
#[derive(Debug, Serialize, ToSchema)]
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
    sessions::sign_out_everywhere(state, user.id).await?;
    Ok(NoContent)
}

/// The `/me` routes.
pub fn router() -> Router {
    Router::with_path("me")
        .get(me)
        .push(Router::with_path("sessions").delete(sign_out_everywhere))
}
