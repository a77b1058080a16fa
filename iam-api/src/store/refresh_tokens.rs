//! The `refresh_tokens` table. Tokens are looked up by the SHA-256 of their value.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A stored refresh token (never its value).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A refresh token to store.
#[derive(Debug, Clone)]
pub struct NewRefreshToken<'a> {
    pub id: Uuid,
    pub token_hash: &'a [u8],
    pub family_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub user_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// SQL of [`insert`].
const INSERT_SQL: &str = "INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Stores a new refresh token.
#[tracing::instrument(name = "db refresh_tokens::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    token: &NewRefreshToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_SQL)
        .bind(token.id)
        .bind(token.token_hash)
        .bind(token.family_id)
        .bind(token.parent_id)
        .bind(token.user_id)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`find_by_hash_for_update`].
const FIND_BY_HASH_FOR_UPDATE_SQL: &str =
    "SELECT id, family_id, user_id, expires_at, used_at, revoked_at
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE";

/// The token with this hash, locked until the transaction ends, so that two concurrent
/// refreshes with one token are serialised and the second sees it used.
#[tracing::instrument(name = "db refresh_tokens::find_by_hash_for_update", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "find_by_hash_for_update", db.query.text = FIND_BY_HASH_FOR_UPDATE_SQL))]
pub async fn find_by_hash_for_update<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenRecord>, sqlx::Error> {
    sqlx::query_as(FIND_BY_HASH_FOR_UPDATE_SQL)
        .bind(token_hash)
        .fetch_optional(executor)
        .await
}

/// A stored token with the current state of its user, for a refresh in one round trip.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenWithHolder {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Always present (the user is joined, not outer-joined); optional for the decoder.
    pub email: Option<String>,
    pub role: Option<String>,
    pub tokens_revoked_at: Option<DateTime<Utc>>,
    pub disabled: Option<bool>,
}

impl RefreshTokenWithHolder {
    /// The token part.
    pub fn token(&self) -> RefreshTokenRecord {
        RefreshTokenRecord {
            id: self.id,
            family_id: self.family_id,
            user_id: self.user_id,
            expires_at: self.expires_at,
            used_at: self.used_at,
            revoked_at: self.revoked_at,
        }
    }
}

/// SQL of [`find_with_holder_for_update`]. The holder's row is locked (shared) *before* the
/// token's row (for update): every change that revokes a user's sessions locks the user's
/// row first and its tokens after, so both take the two locks in the same order. A plain
/// join locking `t` and `u` together locks `t` first, and a refresh racing a sign-out then
/// deadlocked (each holding the row the other waited for; PostgreSQL aborted one, a 500).
/// The CTE is materialised so that it runs, and locks, on its own.
const FIND_WITH_HOLDER_FOR_UPDATE_SQL: &str = "WITH holder AS MATERIALIZED (
             SELECT u.id, u.email, u.role, u.tokens_revoked_at, u.disabled
             FROM users u
             WHERE u.id = (SELECT user_id FROM refresh_tokens WHERE token_hash = $1)
             FOR SHARE OF u
         )
         SELECT t.id, t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at,
                h.email, h.role, h.tokens_revoked_at, h.disabled
         FROM refresh_tokens t
         JOIN holder h ON h.id = t.user_id
         WHERE t.token_hash = $1
         FOR UPDATE OF t";

/// Like [`find_by_hash_for_update`], with the holder's email and role joined in, so a
/// refresh needs one statement before it writes. Not the role's permissions: a locking read
/// that waited for a changed row re-reads only the locked rows, and would return the
/// permissions as they were before the change it waited for (see [`rotate`]). The user's row is share-locked
/// until the refresh commits, so a change that revokes the user's sessions (it locks the
/// row first) either waits and then sees the successor this refresh stores, or commits
/// first and is seen here (a locking read re-reads a row that changed while it waited).
/// Without the lock the revoking statement could miss a successor committed just after
/// it started. (An access token minted from a stale read is caught anyway: its `iat` is
/// below the revocation's cut-off.)
#[tracing::instrument(name = "db refresh_tokens::find_with_holder_for_update", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "find_with_holder_for_update", db.query.text = FIND_WITH_HOLDER_FOR_UPDATE_SQL))]
pub async fn find_with_holder_for_update<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenWithHolder>, sqlx::Error> {
    sqlx::query_as(FIND_WITH_HOLDER_FOR_UPDATE_SQL)
        .bind(token_hash)
        .fetch_optional(executor)
        .await
}

/// SQL of [`rotate`]. Both writes run whatever the final query reads.
const ROTATE_SQL: &str = "WITH used AS (UPDATE refresh_tokens SET used_at = $2 WHERE id = $1),
         successor AS (
             INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, issued_at, expires_at)
             VALUES ($3, $4, $5, $6, $7, $8, $9)
         )
         SELECT permissions FROM roles WHERE name = $10";

/// Retires `used_id` and stores its successor, in one statement, and reads the permissions
/// of `role` as that statement sees them (`None`: no such role).
#[tracing::instrument(name = "db refresh_tokens::rotate", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "rotate", db.query.text = ROTATE_SQL))]
pub async fn rotate<'e>(
    executor: impl PgExecutor<'e>,
    used_id: Uuid,
    now: DateTime<Utc>,
    successor: &NewRefreshToken<'_>,
    role: &str,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar(ROTATE_SQL)
        .bind(used_id)
        .bind(now)
        .bind(successor.id)
        .bind(successor.token_hash)
        .bind(successor.family_id)
        .bind(successor.parent_id)
        .bind(successor.user_id)
        .bind(successor.issued_at)
        .bind(successor.expires_at)
        .bind(role)
        .fetch_optional(executor)
        .await
}

/// SQL of [`revoke_family`].
const REVOKE_FAMILY_SQL: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";

/// Revokes every not yet revoked token of a family; returns how many.
#[tracing::instrument(name = "db refresh_tokens::revoke_family", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "revoke_family", db.query.text = REVOKE_FAMILY_SQL))]
pub async fn revoke_family<'e>(
    executor: impl PgExecutor<'e>,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(REVOKE_FAMILY_SQL)
        .bind(family_id)
        .bind(now)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}

/// SQL of [`revoke_all_of_user`].
const REVOKE_ALL_OF_USER_SQL: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";

/// Revokes every not yet revoked token of a user (all its sessions); returns how many.
#[tracing::instrument(name = "db refresh_tokens::revoke_all_of_user", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "revoke_all_of_user", db.query.text = REVOKE_ALL_OF_USER_SQL))]
pub async fn revoke_all_of_user<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(REVOKE_ALL_OF_USER_SQL)
        .bind(user_id)
        .bind(now)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}

/// SQL of [`delete_expired_before`].
const DELETE_EXPIRED_BEFORE_SQL: &str = "DELETE FROM refresh_tokens WHERE expires_at < $1";

/// Deletes tokens that expired before `cutoff`; returns how many.
#[tracing::instrument(name = "db refresh_tokens::delete_expired_before", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "refresh_tokens", db.operation.name = "delete_expired_before", db.query.text = DELETE_EXPIRED_BEFORE_SQL))]
pub async fn delete_expired_before<'e>(
    executor: impl PgExecutor<'e>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(DELETE_EXPIRED_BEFORE_SQL)
        .bind(cutoff)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
