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

/// Stores a new refresh token.
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    token: &NewRefreshToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, user_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
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

/// The token with this hash, locked until the transaction ends, so that two concurrent
/// refreshes with one token are serialised and the second sees it used.
pub async fn find_by_hash_for_update<'e>(
    executor: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Option<RefreshTokenRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, family_id, user_id, expires_at, used_at, revoked_at
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(executor)
    .await
}

/// Marks a token as exchanged for a new one.
pub async fn mark_used<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(executor)
        .await?;
    Ok(())
}

/// Revokes every not yet revoked token of a family; returns how many.
pub async fn revoke_family<'e>(
    executor: impl PgExecutor<'e>,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes tokens that expired before `cutoff`; returns how many.
pub async fn delete_expired_before<'e>(
    executor: impl PgExecutor<'e>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
        .bind(cutoff)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
