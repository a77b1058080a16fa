//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A user as the API shows it, with its role's permissions.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub permissions: Vec<String>,
    /// Access tokens of this user issued before it are refused.
    pub tokens_revoked_at: Option<DateTime<Utc>>,
    /// A disabled user cannot log in, refresh or use a token.
    pub disabled: bool,
}

/// What a login checks before anything else: the user's password hash. (The role and its
/// permissions are read after the check, under the session's lock.)
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserCredentials {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub disabled: bool,
}

/// Name of the unique index on `lower(email)`.
pub const EMAIL_UNIQUE_INDEX: &str = "users_email_key";
/// Name of the foreign key from `users.role` to `roles.name`.
pub const ROLE_FOREIGN_KEY: &str = "users_role_fkey";

/// SQL of [`insert`].
const INSERT_SQL: &str = "WITH inserted AS (
             INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, $4)
             RETURNING id, email, role, created_at, tokens_revoked_at, disabled
         )
         SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM inserted u JOIN roles r ON r.name = u.role";

/// Inserts a user; fails on [`EMAIL_UNIQUE_INDEX`] when the email is taken.
#[tracing::instrument(name = "db users::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    email: &str,
    password_hash: &str,
    role: &str,
) -> Result<UserRecord, sqlx::Error> {
    sqlx::query_as(INSERT_SQL)
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .bind(role)
        .fetch_one(executor)
        .await
}

/// SQL of [`find_by_id`].
const FIND_BY_ID_SQL: &str =
    "SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM users u JOIN roles r ON r.name = u.role WHERE u.id = $1";

/// The user with this id, with its permissions.
#[tracing::instrument(name = "db users::find_by_id", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "find_by_id", db.query.text = FIND_BY_ID_SQL))]
pub async fn find_by_id<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(FIND_BY_ID_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// SQL of [`find_by_email`].
const FIND_BY_EMAIL_SQL: &str =
    "SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM users u JOIN roles r ON r.name = u.role WHERE lower(u.email) = lower($1)";

/// The user with this (normalised) email, with its permissions.
#[tracing::instrument(name = "db users::find_by_email", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "find_by_email", db.query.text = FIND_BY_EMAIL_SQL))]
pub async fn find_by_email<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(FIND_BY_EMAIL_SQL)
        .bind(email)
        .fetch_optional(executor)
        .await
}

/// A user as the bearer of one access token: the record, and whether that very token has
/// been revoked (`POST /tokens/revoke`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BearerRecord {
    #[sqlx(flatten)]
    pub user: UserRecord,
    pub token_revoked: bool,
}

/// SQL of [`find_bearer`]: [`FIND_BY_ID_SQL`] and one primary-key probe, in one round trip.
const FIND_BEARER_SQL: &str =
    "SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled,
                EXISTS (SELECT 1 FROM revoked_access_tokens t WHERE t.jti = $2) AS token_revoked
         FROM users u JOIN roles r ON r.name = u.role WHERE u.id = $1";

/// The user with this id, and whether its access token `jti` is revoked.
#[tracing::instrument(name = "db users::find_bearer", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "find_bearer", db.query.text = FIND_BEARER_SQL))]
pub async fn find_bearer<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    jti: &str,
) -> Result<Option<BearerRecord>, sqlx::Error> {
    sqlx::query_as(FIND_BEARER_SQL)
        .bind(id)
        .bind(jti)
        .fetch_optional(executor)
        .await
}

/// SQL of [`find_credentials_by_email`].
const FIND_CREDENTIALS_BY_EMAIL_SQL: &str =
    "SELECT id, email, password_hash, disabled FROM users WHERE lower(email) = lower($1)";

/// The credentials of the user with this (normalised) email.
#[tracing::instrument(name = "db users::find_credentials_by_email", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "find_credentials_by_email", db.query.text = FIND_CREDENTIALS_BY_EMAIL_SQL))]
pub async fn find_credentials_by_email<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<UserCredentials>, sqlx::Error> {
    sqlx::query_as(FIND_CREDENTIALS_BY_EMAIL_SQL)
        .bind(email)
        .fetch_optional(executor)
        .await
}

/// SQL of [`lock_by_email`]; `users` alone, as in [`lock_by_id`].
const LOCK_BY_EMAIL_SQL: &str = "SELECT id FROM users WHERE lower(email) = lower($1) FOR UPDATE";

/// Locks the row of the user with this (normalised) email until the transaction ends and
/// returns its id.
#[tracing::instrument(name = "db users::lock_by_email", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "lock_by_email", db.query.text = LOCK_BY_EMAIL_SQL))]
pub async fn lock_by_email<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(LOCK_BY_EMAIL_SQL)
        .bind(email)
        .fetch_optional(executor)
        .await
}

/// SQL of [`list_after`].
const LIST_AFTER_SQL: &str =
    "SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM users u JOIN roles r ON r.name = u.role
         WHERE $1::uuid IS NULL OR u.id > $1
         ORDER BY u.id LIMIT $2";

/// Up to `limit` users with ids greater than `after`, in id order (ids are UUIDv7, so this
/// is creation order).
#[tracing::instrument(name = "db users::list_after", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "list_after", db.query.text = LIST_AFTER_SQL))]
pub async fn list_after<'e>(
    executor: impl PgExecutor<'e>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRecord>, sqlx::Error> {
    sqlx::query_as(LIST_AFTER_SQL)
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await
}

/// SQL of [`update_role`].
const UPDATE_ROLE_SQL: &str = "WITH updated AS (
             UPDATE users SET role = $2, updated_at = now() WHERE id = $1
             RETURNING id, email, role, created_at, tokens_revoked_at, disabled
         )
         SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM updated u JOIN roles r ON r.name = u.role";

/// Sets a user's role; `None` when there is no such user. Fails on [`ROLE_FOREIGN_KEY`]
/// when the role does not exist.
#[tracing::instrument(name = "db users::update_role", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "update_role", db.query.text = UPDATE_ROLE_SQL))]
pub async fn update_role<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    role: &str,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(UPDATE_ROLE_SQL)
        .bind(id)
        .bind(role)
        .fetch_optional(executor)
        .await
}

/// SQL of [`lock_admin_set`]; the key is an arbitrary constant of ours ("IAMADMIN" in ASCII).
const LOCK_ADMIN_SET_SQL: &str = "SELECT pg_advisory_xact_lock(5278053244744411470)";

/// Takes the transaction-scoped lock that every change of who is an enabled admin holds, so
/// that two concurrent demotions cannot both see another admin left and remove the last.
#[tracing::instrument(name = "db users::lock_admin_set", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "lock_admin_set", db.query.text = LOCK_ADMIN_SET_SQL))]
pub async fn lock_admin_set<'e>(executor: impl PgExecutor<'e>) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK_ADMIN_SET_SQL).execute(executor).await?;
    Ok(())
}

/// SQL of [`count_enabled_with_role`].
const COUNT_ENABLED_WITH_ROLE_SQL: &str =
    "SELECT count(*) FROM users WHERE role = $1 AND NOT disabled";

/// How many enabled users have `role`.
#[tracing::instrument(name = "db users::count_enabled_with_role", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "count_enabled_with_role", db.query.text = COUNT_ENABLED_WITH_ROLE_SQL))]
pub async fn count_enabled_with_role<'e>(
    executor: impl PgExecutor<'e>,
    role: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(COUNT_ENABLED_WITH_ROLE_SQL)
        .bind(role)
        .fetch_one(executor)
        .await
}

/// SQL of [`lock_by_id`]. Only `users` is read: a locking read that joins `roles` would, after
/// waiting for a concurrent role change, re-check the join against the *old* role row and
/// lose the user.
const LOCK_BY_ID_SQL: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";

/// Locks the user's row until the transaction ends; `false` when there is no such user.
/// Read it afterwards (a new statement sees the latest committed version).
#[tracing::instrument(name = "db users::lock_by_id", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "lock_by_id", db.query.text = LOCK_BY_ID_SQL))]
pub async fn lock_by_id<'e>(executor: impl PgExecutor<'e>, id: Uuid) -> Result<bool, sqlx::Error> {
    let locked: Option<Uuid> = sqlx::query_scalar(LOCK_BY_ID_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(locked.is_some())
}

/// SQL of [`tokens_revoked_at_for_update`].
const TOKENS_REVOKED_AT_FOR_UPDATE_SQL: &str =
    "SELECT tokens_revoked_at FROM users WHERE id = $1 FOR UPDATE";

/// The user's last token revocation (`Some(None)`: never revoked; `None`: no such user),
/// with the row locked until the transaction ends.
#[tracing::instrument(name = "db users::tokens_revoked_at_for_update", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "tokens_revoked_at_for_update", db.query.text = TOKENS_REVOKED_AT_FOR_UPDATE_SQL))]
pub async fn tokens_revoked_at_for_update<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Option<DateTime<Utc>>>, sqlx::Error> {
    sqlx::query_scalar(TOKENS_REVOKED_AT_FOR_UPDATE_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// A holder of a role, as a revocation of the role's tokens needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleHolder {
    pub id: Uuid,
    pub tokens_revoked_at: Option<DateTime<Utc>>,
}

/// SQL of [`lock_holders_of_role`]. In id order, so that two such locks cannot deadlock.
const LOCK_HOLDERS_OF_ROLE_SQL: &str =
    "SELECT id, tokens_revoked_at FROM users WHERE role = $1 ORDER BY id FOR UPDATE";

/// Every user with `role` and its last token revocation, each row locked until the
/// transaction ends.
#[tracing::instrument(name = "db users::lock_holders_of_role", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "lock_holders_of_role", db.query.text = LOCK_HOLDERS_OF_ROLE_SQL))]
pub async fn lock_holders_of_role<'e>(
    executor: impl PgExecutor<'e>,
    role: &str,
) -> Result<Vec<RoleHolder>, sqlx::Error> {
    sqlx::query_as(LOCK_HOLDERS_OF_ROLE_SQL)
        .bind(role)
        .fetch_all(executor)
        .await
}

/// SQL of [`revoke_tokens_of_each`].
const REVOKE_TOKENS_OF_EACH_SQL: &str = "UPDATE users u
         SET tokens_revoked_at = revoked.at, updated_at = now()
         FROM UNNEST($1::uuid[], $2::timestamptz[]) AS revoked (id, at)
         WHERE u.id = revoked.id";

/// [`revoke_tokens`] for many users in one statement: `ids[i]` at `ats[i]`.
#[tracing::instrument(name = "db users::revoke_tokens_of_each", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "revoke_tokens_of_each", db.query.text = REVOKE_TOKENS_OF_EACH_SQL))]
pub async fn revoke_tokens_of_each<'e>(
    executor: impl PgExecutor<'e>,
    ids: &[Uuid],
    ats: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE_TOKENS_OF_EACH_SQL)
        .bind(ids)
        .bind(ats)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`revoke_tokens`].
const REVOKE_TOKENS_SQL: &str =
    "UPDATE users SET tokens_revoked_at = $2, updated_at = now() WHERE id = $1";

/// Makes every access token of the user issued before `at` be refused.
#[tracing::instrument(name = "db users::revoke_tokens", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "revoke_tokens", db.query.text = REVOKE_TOKENS_SQL))]
pub async fn revoke_tokens<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE_TOKENS_SQL)
        .bind(id)
        .bind(at)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`update_password_hash`].
const UPDATE_PASSWORD_HASH_SQL: &str =
    "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1";

/// Replaces a user's password hash (a rehash on login, a password set or changed).
#[tracing::instrument(name = "db users::update_password_hash", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "update_password_hash", db.query.text = UPDATE_PASSWORD_HASH_SQL))]
pub async fn update_password_hash<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(UPDATE_PASSWORD_HASH_SQL)
        .bind(id)
        .bind(password_hash)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`set_disabled`].
const SET_DISABLED_SQL: &str = "WITH updated AS (
             UPDATE users SET disabled = $2, updated_at = now() WHERE id = $1
             RETURNING id, email, role, created_at, tokens_revoked_at, disabled
         )
         SELECT u.id, u.email, u.role, u.created_at, r.permissions, u.tokens_revoked_at, u.disabled
         FROM updated u JOIN roles r ON r.name = u.role";

/// Disables or enables a user; `None` when there is no such user.
#[tracing::instrument(name = "db users::set_disabled", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "set_disabled", db.query.text = SET_DISABLED_SQL))]
pub async fn set_disabled<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    disabled: bool,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(SET_DISABLED_SQL)
        .bind(id)
        .bind(disabled)
        .fetch_optional(executor)
        .await
}

/// SQL of [`delete`]; the user's refresh tokens go with it (`ON DELETE CASCADE`).
const DELETE_SQL: &str = "DELETE FROM users WHERE id = $1";

/// Deletes a user; `false` when there is no such user.
#[tracing::instrument(name = "db users::delete", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "delete", db.query.text = DELETE_SQL))]
pub async fn delete<'e>(executor: impl PgExecutor<'e>, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query(DELETE_SQL).bind(id).execute(executor).await?;
    Ok(deleted.rows_affected() > 0)
}

/// What decides whether a password check still stands: the hash it was checked against and
/// whether the account is disabled.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PasswordState {
    pub password_hash: String,
    pub disabled: bool,
}

/// SQL of [`password_state`].
const PASSWORD_STATE_SQL: &str = "SELECT password_hash, disabled FROM users WHERE id = $1";

/// The user's password hash and disabled flag as committed now; `None`: no such user.
#[tracing::instrument(name = "db users::password_state", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "password_state", db.query.text = PASSWORD_STATE_SQL))]
pub async fn password_state<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<PasswordState>, sqlx::Error> {
    sqlx::query_as(PASSWORD_STATE_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// SQL of [`password_state_for_share`].
const PASSWORD_STATE_FOR_SHARE_SQL: &str =
    "SELECT password_hash, disabled FROM users WHERE id = $1 FOR SHARE";

/// Like [`password_state`], with the row share-locked until the transaction ends: a login
/// holds it while it stores its session, so a password change, disabling or deletion (each
/// locks the row for update) either waits and then revokes that session, or commits first
/// and is seen here.
#[tracing::instrument(name = "db users::password_state_for_share", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "users", db.operation.name = "password_state_for_share", db.query.text = PASSWORD_STATE_FOR_SHARE_SQL))]
pub async fn password_state_for_share<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<PasswordState>, sqlx::Error> {
    sqlx::query_as(PASSWORD_STATE_FOR_SHARE_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}
