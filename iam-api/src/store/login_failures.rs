//! The `login_failures` table: failed password logins per email, for throttling.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// How often and how recently logins for one email failed.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct FailureRecord {
    pub failure_count: i32,
    pub last_failure_at: DateTime<Utc>,
}

/// SQL of [`lock`]. A first attempt creates the row (no failures yet) so that there is a row
/// to lock: concurrent first attempts must queue behind each other like any others.
const LOCK_SQL: &str =
    "INSERT INTO login_failures (email, failure_count, last_failure_at) VALUES ($1, 0, $2)
         ON CONFLICT (email) DO UPDATE SET failure_count = login_failures.failure_count
         RETURNING failure_count, last_failure_at";

/// The failure record of `email`, created empty when there is none, with its row locked
/// until the transaction ends.
#[tracing::instrument(name = "db login_failures::lock", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "lock", db.query.text = LOCK_SQL))]
pub async fn lock<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
    now: DateTime<Utc>,
) -> Result<FailureRecord, sqlx::Error> {
    sqlx::query_as(LOCK_SQL)
        .bind(email)
        .bind(now)
        .fetch_one(executor)
        .await
}

/// SQL of [`store`].
const STORE_SQL: &str =
    "UPDATE login_failures SET failure_count = $2, last_failure_at = $3 WHERE email = $1";

/// Writes the failure record of `email`.
#[tracing::instrument(name = "db login_failures::store", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "store", db.query.text = STORE_SQL))]
pub async fn store<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
    record: FailureRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(STORE_SQL)
        .bind(email)
        .bind(record.failure_count)
        .bind(record.last_failure_at)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`delete_idle_since`].
const DELETE_IDLE_SINCE_SQL: &str = "DELETE FROM login_failures WHERE last_failure_at < $1";

/// Forgets every record whose last failure is older than `cutoff` (it no longer counts);
/// returns how many.
#[tracing::instrument(name = "db login_failures::delete_idle_since", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "delete_idle_since", db.query.text = DELETE_IDLE_SINCE_SQL))]
pub async fn delete_idle_since<'e>(
    executor: impl PgExecutor<'e>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(DELETE_IDLE_SINCE_SQL)
        .bind(cutoff)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}

/// SQL of [`clear`].
const CLEAR_SQL: &str = "DELETE FROM login_failures WHERE email = $1";

/// Forgets the failures of `email` (after a successful login).
#[tracing::instrument(name = "db login_failures::clear", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "login_failures", db.operation.name = "clear", db.query.text = CLEAR_SQL))]
pub async fn clear<'e>(executor: impl PgExecutor<'e>, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query(CLEAR_SQL).bind(email).execute(executor).await?;
    Ok(())
}
