//! Roles: creation, replacement and deletion of custom roles; built-in roles are protected.

use serde_json::json;

use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::domain::rbac::{
    ADMIN_ROLE, IAM_PERMISSIONS, Permission, RoleName, RolesRead, RolesWrite, within_ceiling,
};
use crate::domain::revocation::{self, RevokedHolders};
use crate::error::{AppError, FieldError, violated_constraint};
use crate::state::AppState;
use crate::store::roles::{self, NAME_PRIMARY_KEY, RoleRecord};
use crate::store::{clients, users};

/// Longest role description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most permissions one role may carry.
pub const MAX_PERMISSIONS: usize = 256;

/// A role's editable content, validated.
#[derive(Debug)]
pub struct RoleContent {
    pub description: String,
    pub permissions: Vec<String>,
}

impl RoleContent {
    /// Validates description and permissions, reporting every bad entry; duplicates are
    /// dropped and the permissions sorted, so equal roles compare equal.
    pub fn parse(
        description: Option<&str>,
        permissions: &[String],
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let description = description.unwrap_or("").to_owned();
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            errors.push(FieldError::new(
                "description",
                "must be at most 1024 characters",
            ));
        }
        // PostgreSQL text cannot hold NUL, and control characters have no place in a label
        // that admin UIs and logs show; line breaks and tabs are fine.
        if description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            errors.push(FieldError::new(
                "description",
                "must not contain control characters other than line breaks and tabs",
            ));
        }
        if permissions.len() > MAX_PERMISSIONS {
            errors.push(FieldError::new("permissions", "at most 256 permissions"));
        }
        let mut parsed = Vec::with_capacity(permissions.len());
        for (index, permission) in permissions.iter().enumerate() {
            match Permission::parse(permission) {
                Ok(permission) => parsed.push(permission.as_str().to_owned()),
                Err(why) => errors.push(FieldError::new(format!("permissions[{index}]"), why)),
            }
        }
        parsed.sort();
        parsed.dedup();
        if errors.is_empty() {
            Ok(RoleContent {
                description,
                permissions: parsed,
            })
        } else {
            Err(errors)
        }
    }
}

/// A role name from a request path. A string that is not a valid name cannot name a role, so
/// it is a 404 before it reaches the database (which refuses some, such as a NUL byte).
fn parse_path_name(name: &str) -> Result<RoleName, AppError> {
    RoleName::parse(name).map_err(|_| AppError::NotFound("role"))
}

fn parse_name(name: &str) -> Result<RoleName, FieldError> {
    RoleName::parse(name).map_err(|why| FieldError::new("name", why))
}

/// Creates a custom role holding only permissions the caller holds itself.
pub async fn create(
    permission: &RolesWrite,
    state: &AppState,
    actor: &Actor,
    name: &str,
    description: Option<&str>,
    permissions: &[String],
) -> Result<RoleRecord, AppError> {
    let name = parse_name(name);
    let content = RoleContent::parse(description, permissions);
    let (name, content) = match (name, content) {
        (Ok(name), Ok(content)) => (name, content),
        (name, content) => {
            let mut errors: Vec<FieldError> = name.err().into_iter().collect();
            errors.extend(content.err().unwrap_or_default());
            return Err(AppError::Validation(errors));
        }
    };
    within_ceiling(permission, &content.permissions)?;
    let mut tx = state.db.begin().await?;
    let role = roles::insert(
        &mut *tx,
        name.as_str(),
        &content.description,
        &content.permissions,
    )
    .await
    .map_err(|error| match violated_constraint(&error) {
        Some(NAME_PRIMARY_KEY) => AppError::Conflict(format!("role {name} exists already")),
        _ => error.into(),
    })?;
    let event = AuditEvent::success(EventType::RoleCreated, &role.name)
        .with_detail(json!({ "permissions": role.permissions }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(role)
}

/// Every role, from the read replica when there is one (a listing; nothing is decided by it).
pub async fn list(_: &RolesRead, state: &AppState) -> Result<Vec<RoleRecord>, AppError> {
    Ok(roles::list(&mut *state.read_db.acquire().await?).await?)
}

/// One role by name.
pub async fn get(_: &RolesRead, state: &AppState, name: &str) -> Result<RoleRecord, AppError> {
    let name = parse_path_name(name)?;
    roles::find(&mut *state.db.acquire().await?, name.as_str())
        .await?
        .ok_or(AppError::NotFound("role"))
}

/// Replaces a role's description and permissions. Every permission it gains must be one the
/// caller holds (the delegation ceiling); the built-in admin role must keep every `iam:*`
/// permission, so the service can always be administered.
pub async fn replace(
    permission: &RolesWrite,
    state: &AppState,
    actor: &Actor,
    name: &str,
    description: Option<&str>,
    permissions: &[String],
) -> Result<RoleRecord, AppError> {
    let name = parse_path_name(name)?;
    let content = RoleContent::parse(description, permissions).map_err(AppError::Validation)?;
    if name.as_str() == ADMIN_ROLE
        && !IAM_PERMISSIONS
            .iter()
            .all(|required| content.permissions.iter().any(|held| held == required))
    {
        return Err(AppError::invalid_field(
            "permissions",
            format!(
                "the built-in admin role must keep {}",
                IAM_PERMISSIONS.join(", ")
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    // A role change locks the admin set, then the user, then the role; a permission loss
    // locks the role, then its holders. Taking the admin set first here too keeps the two
    // from each holding what the other waits for.
    users::lock_admin_set(&mut *tx).await?;
    let current = roles::find_for_update(&mut *tx, name.as_str())
        .await?
        .ok_or(AppError::NotFound("role"))?;
    let gained: Vec<String> = content
        .permissions
        .iter()
        .filter(|permission| !current.permissions.contains(permission))
        .cloned()
        .collect();
    within_ceiling(permission, &gained)?;
    let role = roles::replace(
        &mut *tx,
        name.as_str(),
        &content.description,
        &content.permissions,
    )
    .await?
    .ok_or(AppError::NotFound("role"))?;
    // The holders' tokens carry the permissions they had; the api reads them from the
    // database, but every other verifier trusts the token, so a loss must revoke them.
    let lost_any = current
        .permissions
        .iter()
        .any(|held| !role.permissions.contains(held));
    let revoked = if lost_any {
        revocation::revoke_holders_of_role(&mut tx, &state.config, name.as_str()).await?
    } else {
        RevokedHolders {
            users: 0,
            clients: 0,
        }
    };
    let event = AuditEvent::success(EventType::RoleUpdated, &role.name).with_detail(json!({
        "permissions_before": current.permissions,
        "permissions": role.permissions,
        "revoked_holders": { "users": revoked.users, "clients": revoked.clients },
    }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(role)
}

/// Deletes a custom role that no user has.
pub async fn delete(
    _: &RolesWrite,
    state: &AppState,
    actor: &Actor,
    name: &str,
) -> Result<(), AppError> {
    let name = parse_path_name(name)?;
    let name = name.as_str();
    let role = roles::find(&mut *state.db.acquire().await?, name)
        .await?
        .ok_or(AppError::NotFound("role"))?;
    if role.built_in {
        return Err(AppError::Conflict(format!(
            "role {name} is built in and cannot be deleted"
        )));
    }
    let mut tx = state.db.begin().await?;
    let deleted = roles::delete_custom(&mut *tx, name)
        .await
        .map_err(|error| match violated_constraint(&error) {
            Some(users::ROLE_FOREIGN_KEY) => {
                AppError::Conflict(format!("role {name} is still assigned to users"))
            }
            Some(clients::ROLE_FOREIGN_KEY) => {
                AppError::Conflict(format!("role {name} is still assigned to clients"))
            }
            _ => error.into(),
        })?;
    if !deleted {
        return Err(AppError::NotFound("role"));
    }
    let event = AuditEvent::success(EventType::RoleDeleted, name)
        .with_detail(json!({ "permissions": role.permissions }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}
