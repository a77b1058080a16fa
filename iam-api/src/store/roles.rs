//! The `roles` table.

use sqlx::PgExecutor;

/// A role row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleRecord {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub built_in: bool,
}

/// Name of the primary key, violated when a role name is taken.
pub const NAME_PRIMARY_KEY: &str = "roles_pkey";

/// Inserts a custom role; fails on [`NAME_PRIMARY_KEY`] when it exists.
#[tracing::instrument(name = "db roles::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "insert"))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<RoleRecord, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3)
         RETURNING name, description, permissions, built_in",
    )
    .bind(name)
    .bind(description)
    .bind(permissions)
    .fetch_one(executor)
    .await
}

/// Every role, by name.
#[tracing::instrument(name = "db roles::list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "list"))]
pub async fn list<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<RoleRecord>, sqlx::Error> {
    sqlx::query_as("SELECT name, description, permissions, built_in FROM roles ORDER BY name")
        .fetch_all(executor)
        .await
}

/// The role with this name.
#[tracing::instrument(name = "db roles::find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "find"))]
pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as("SELECT name, description, permissions, built_in FROM roles WHERE name = $1")
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// Replaces description and permissions; `None` when there is no such role.
#[tracing::instrument(name = "db roles::replace", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "replace"))]
pub async fn replace<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE roles SET description = $2, permissions = $3, updated_at = now() WHERE name = $1
         RETURNING name, description, permissions, built_in",
    )
    .bind(name)
    .bind(description)
    .bind(permissions)
    .fetch_optional(executor)
    .await
}

/// Deletes a custom role; returns whether a row went. Fails on the users' role foreign key
/// while a user still has it.
#[tracing::instrument(name = "db roles::delete_custom", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "delete_custom"))]
pub async fn delete_custom<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM roles WHERE name = $1 AND NOT built_in")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(result.rows_affected() > 0)
}
