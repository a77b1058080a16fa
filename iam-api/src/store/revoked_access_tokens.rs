//! The `revoked_access_tokens` table: single access tokens (by `jti`) revoked before their
//! expiry, for the revocation feed and for iam-api's own check; kept until the token could
//! no longer be accepted anyway. A trigger bumps the feed's version with every change.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// A token to list as revoked.
#[derive(Debug, Clone)]
pub struct RevokedAccessToken<'a> {
    pub jti: &'a str,
    pub subject: &'a str,
    pub revoked_at: DateTime<Utc>,
    /// The token's `exp`.
    pub expires_at: DateTime<Utc>,
    /// `exp` plus the verifiers' leeway.
    pub keep_until: DateTime<Utc>,
}

/// SQL of [`record`].
const RECORD_SQL: &str =
    "INSERT INTO revoked_access_tokens (jti, subject, revoked_at, expires_at, keep_until)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (jti) DO NOTHING";

/// Lists a token as revoked; revoking it again changes nothing.
#[tracing::instrument(name = "db revoked_access_tokens::record", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "revoked_access_tokens", db.operation.name = "record", db.query.text = RECORD_SQL))]
pub async fn record<'e>(
    executor: impl PgExecutor<'e>,
    token: &RevokedAccessToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_SQL)
        .bind(token.jti)
        .bind(token.subject)
        .bind(token.revoked_at)
        .bind(token.expires_at)
        .bind(token.keep_until)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`delete_kept_until`].
const DELETE_KEPT_UNTIL_SQL: &str = "DELETE FROM revoked_access_tokens WHERE keep_until < $1";

/// Deletes entries of tokens no verifier can accept any more; returns how many.
#[tracing::instrument(name = "db revoked_access_tokens::delete_kept_until", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "revoked_access_tokens", db.operation.name = "delete_kept_until", db.query.text = DELETE_KEPT_UNTIL_SQL))]
pub async fn delete_kept_until<'e>(
    executor: impl PgExecutor<'e>,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(DELETE_KEPT_UNTIL_SQL)
        .bind(now)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
