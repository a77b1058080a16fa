//! The `login_failures` table: failed password logins per email, for throttling.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// How often and how recently logins for one email failed.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct FailureRecord {
    pub failure_count: i32,
    pub last_failure_at: DateTime<Utc>,
}

/// SQL of [`find`].
const FIND_SQL: &str = "SELECT failure_count, last_failure_at FROM login_failures WHERE email = $1";

/// The failure record of `email`, if any.
#[tracing::instrument(name = "db login_failures::find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "find", db.query.text = FIND_SQL))]
pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<FailureRecord>, sqlx::Error> {
    sqlx::query_as(FIND_SQL)
        .bind(email)
        .fetch_optional(executor)
        .await
}

/// SQL of [`record_failure`].
const RECORD_FAILURE_SQL: &str =
    "INSERT INTO login_failures (email, failure_count, last_failure_at) VALUES ($1, 1, $2)
         ON CONFLICT (email) DO UPDATE SET
             failure_count = CASE
                 WHEN login_failures.last_failure_at < $2 - make_interval(secs => $3) THEN 1
                 ELSE login_failures.failure_count + 1
             END,
             last_failure_at = $2";

/// Counts one more failure at `now`; a record idle for longer than `forget_after_seconds`
/// starts again from one.
#[tracing::instrument(name = "db login_failures::record_failure", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "record_failure", db.query.text = RECORD_FAILURE_SQL))]
pub async fn record_failure<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
    now: DateTime<Utc>,
    forget_after_seconds: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_FAILURE_SQL)
        .bind(email)
        .bind(now)
        .bind(forget_after_seconds as f64)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`clear`].
const CLEAR_SQL: &str = "DELETE FROM login_failures WHERE email = $1";

/// Forgets the failures of `email` (after a successful login).
#[tracing::instrument(name = "db login_failures::clear", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "clear", db.query.text = CLEAR_SQL))]
pub async fn clear<'e>(executor: impl PgExecutor<'e>, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query(CLEAR_SQL).bind(email).execute(executor).await?;
    Ok(())
}
