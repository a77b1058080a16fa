//! `GET /api/v1/me`: the caller's own account.

use chrono::{DateTime, Utc};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::auth::authenticate;
use super::{Ok200, app_state};
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

/// The `/me` route.
pub fn router() -> Router {
    Router::with_path("me").get(me)
}
