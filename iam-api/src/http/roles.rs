//! `/api/v1/roles`: role management.

use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use salvo_oapi::extract::PathParam;
use serde::Serialize;

use super::auth::{Authorized, authorize};
use super::{Accepts, BodyFields, Created, NoContent, Ok200};
use crate::domain::rbac::{RolesRead, RolesWrite};
use crate::domain::roles;
use crate::error::AppError;
use crate::store::roles::RoleRecord;

/// A role and the permissions it grants.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"name": "editor", "description": "Edits orders", "permissions": ["orders:read", "orders:write"], "built_in": false})))]
pub struct RoleResponse {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Built-in roles (`admin`, `user`) cannot be deleted.
    pub built_in: bool,
}

impl From<RoleRecord> for RoleResponse {
    fn from(role: RoleRecord) -> Self {
        RoleResponse {
            name: role.name,
            description: role.description,
            permissions: role.permissions,
            built_in: role.built_in,
        }
    }
}

/// A new role. `name` matches `^[a-z][a-z0-9_.-]{1,62}$`; each permission
/// `^[A-Za-z0-9_.:*-]{1,128}$`.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"name": "editor", "description": "Edits orders", "permissions": ["orders:read", "orders:write"]})))]
pub struct CreateRoleRequest {
    #[salvo(schema(pattern = r"^[a-z][a-z0-9_.-]{1,62}$"))]
    pub name: String,
    /// At most 1024 characters, no control characters but line breaks and tabs; empty
    /// when left out.
    #[salvo(schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub description: Option<String>,
    /// At most 256 (none when left out), each held by the caller; duplicates are dropped.
    #[salvo(schema(max_items = 256, required = false))]
    pub permissions: Vec<String>,
}

/// The new content of a role (replaces both fields).
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"description": "Edits and ships orders", "permissions": ["orders:read", "orders:write", "orders:ship"]})))]
pub struct ReplaceRoleRequest {
    /// At most 1024 characters, no control characters but line breaks and tabs; empty
    /// when left out.
    #[salvo(schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub description: Option<String>,
    /// At most 256; each held by the caller. Duplicates are dropped.
    #[salvo(schema(max_items = 256))]
    pub permissions: Vec<String>,
}

async fn read_content(req: &mut Request) -> Result<ReplaceRoleRequest, AppError> {
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = ReplaceRoleRequest {
        description: body.optional_string("description"),
        permissions: body.string_list("permissions", true),
    };
    body.finish()?;
    Ok(request)
}

/// Creates a role (requires `iam:roles:write`).
#[endpoint(
    tags("roles"),
    security(("bearer" = [])),
    request_body = CreateRoleRequest,
    responses(
        (status_code = 201, description = "Created", body = RoleResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:roles:write, or a permission the caller lacks"),
        (status_code = 409, description = "A role with this name exists"),
        (status_code = 422, description = "Invalid name or permissions"),
    )
)]
pub async fn create_role(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<RoleResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<RolesWrite>(req, depot).await?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = CreateRoleRequest {
        name: body.required_string("name"),
        description: body.optional_string("description"),
        permissions: body.string_list("permissions", false),
    };
    body.finish()?;
    let role = roles::create(
        &permission,
        state,
        &actor,
        &request.name,
        request.description.as_deref(),
        &request.permissions,
    )
    .await?;
    Ok(Created {
        location: format!("/api/v1/roles/{}", role.name),
        body: role.into(),
    })
}

/// Lists every role (requires `iam:roles:read`).
#[endpoint(
    tags("roles"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "All roles", body = Vec<RoleResponse>),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:roles:read"),
    )
)]
pub async fn list_roles(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Ok200<Vec<RoleResponse>>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<RolesRead>(req, depot).await?;
    let roles = roles::list(&permission, state).await?;
    Ok(Ok200(roles.into_iter().map(Into::into).collect()))
}

/// One role (requires `iam:roles:read`).
#[endpoint(
    tags("roles"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "The role", body = RoleResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:roles:read"),
        (status_code = 404, description = "No such role"),
    )
)]
pub async fn get_role(
    req: &mut Request,
    depot: &mut Depot,
    name: PathParam<String>,
) -> Result<Ok200<RoleResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<RolesRead>(req, depot).await?;
    Ok(Ok200(roles::get(&permission, state, &name).await?.into()))
}

/// Replaces a role's description and permissions (requires `iam:roles:write`). A
/// permission the role loses revokes the access tokens of every user and client holding it.
#[endpoint(
    tags("roles"),
    security(("bearer" = [])),
    request_body = ReplaceRoleRequest,
    responses(
        (status_code = 200, description = "The updated role", body = RoleResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:roles:write, or the role would gain a permission the caller lacks"),
        (status_code = 404, description = "No such role"),
        (status_code = 422, description = "Invalid permissions"),
    )
)]
pub async fn replace_role(
    req: &mut Request,
    depot: &mut Depot,
    name: PathParam<String>,
) -> Result<Ok200<RoleResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<RolesWrite>(req, depot).await?;
    let request = read_content(req).await?;
    let role = roles::replace(
        &permission,
        state,
        &actor,
        &name,
        request.description.as_deref(),
        &request.permissions,
    )
    .await?;
    Ok(Ok200(role.into()))
}

/// Deletes a custom role that no user has (requires `iam:roles:write`).
#[endpoint(
    tags("roles"),
    security(("bearer" = [])),
    responses(
        (status_code = 204, description = "Deleted"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:roles:write"),
        (status_code = 404, description = "No such role"),
        (status_code = 409, description = "Built in, or still assigned to users"),
    )
)]
pub async fn delete_role(
    req: &mut Request,
    depot: &mut Depot,
    name: PathParam<String>,
) -> Result<NoContent, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<RolesWrite>(req, depot).await?;
    roles::delete(&permission, state, &actor, &name).await?;
    Ok(NoContent)
}

/// The role routes.
pub fn router() -> Router {
    Router::with_path("roles")
        .post(create_role)
        .get(list_roles)
        .push(
            Router::with_path("{name}")
                .get(get_role)
                .put(replace_role)
                .delete(delete_role),
        )
}
