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

/// SQL of [`insert`].
const INSERT_SQL: &str = "INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3)
         RETURNING name, description, permissions, built_in";

/// Inserts a custom role; fails on [`NAME_PRIMARY_KEY`] when it exists.
#[tracing::instrument(name = "db roles::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<RoleRecord, sqlx::Error> {
    sqlx::query_as(INSERT_SQL)
        .bind(name)
        .bind(description)
        .bind(permissions)
        .fetch_one(executor)
        .await
}

/// SQL of [`list`].
const LIST_SQL: &str = "SELECT name, description, permissions, built_in FROM roles ORDER BY name";

/// Every role, by name.
#[tracing::instrument(name = "db roles::list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "list", db.query.text = LIST_SQL))]
pub async fn list<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<RoleRecord>, sqlx::Error> {
    sqlx::query_as(LIST_SQL).fetch_all(executor).await
}

/// SQL of [`find`].
const FIND_SQL: &str = "SELECT name, description, permissions, built_in FROM roles WHERE name = $1";

/// The role with this name.
#[tracing::instrument(name = "db roles::find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "find", db.query.text = FIND_SQL))]
pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as(FIND_SQL)
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// SQL of [`permissions_of`].
const PERMISSIONS_OF_SQL: &str = "SELECT permissions FROM roles WHERE name = $1";

/// The permissions of the role with this name.
#[tracing::instrument(name = "db roles::permissions_of", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "permissions_of", db.query.text = PERMISSIONS_OF_SQL))]
pub async fn permissions_of<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar(PERMISSIONS_OF_SQL)
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// SQL of [`find_for_share`].
const FIND_FOR_SHARE_SQL: &str =
    "SELECT name, description, permissions, built_in FROM roles WHERE name = $1 FOR SHARE";

/// The role with this name, its row locked against changes until the transaction ends (so
/// the permissions a caller was judged on are the ones granted).
#[tracing::instrument(name = "db roles::find_for_share", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "find_for_share", db.query.text = FIND_FOR_SHARE_SQL))]
pub async fn find_for_share<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as(FIND_FOR_SHARE_SQL)
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// SQL of [`find_for_update`].
const FIND_FOR_UPDATE_SQL: &str =
    "SELECT name, description, permissions, built_in FROM roles WHERE name = $1 FOR UPDATE";

/// The role with this name, its row locked for a change in this transaction.
#[tracing::instrument(name = "db roles::find_for_update", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "find_for_update", db.query.text = FIND_FOR_UPDATE_SQL))]
pub async fn find_for_update<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as(FIND_FOR_UPDATE_SQL)
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// SQL of [`replace`].
const REPLACE_SQL: &str =
    "UPDATE roles SET description = $2, permissions = $3, updated_at = now() WHERE name = $1
         RETURNING name, description, permissions, built_in";

/// Replaces description and permissions; `None` when there is no such role.
#[tracing::instrument(name = "db roles::replace", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "replace", db.query.text = REPLACE_SQL))]
pub async fn replace<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<Option<RoleRecord>, sqlx::Error> {
    sqlx::query_as(REPLACE_SQL)
        .bind(name)
        .bind(description)
        .bind(permissions)
        .fetch_optional(executor)
        .await
}

/// SQL of [`delete_custom`].
const DELETE_CUSTOM_SQL: &str = "DELETE FROM roles WHERE name = $1 AND NOT built_in";

/// Deletes a custom role; returns whether a row went. Fails on the users' role foreign key
/// while a user still has it.
#[tracing::instrument(name = "db roles::delete_custom", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "roles", db.operation.name = "delete_custom", db.query.text = DELETE_CUSTOM_SQL))]
pub async fn delete_custom<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(DELETE_CUSTOM_SQL)
        .bind(name)
        .execute(executor)
        .await?;
    Ok(result.rows_affected() > 0)
}
