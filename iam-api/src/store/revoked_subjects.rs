//! The `revoked_subjects` table: subject cut-offs for the revocation feed, kept until no
//! token they affect can still be valid. Written in the transaction of the change that
//! revokes; a trigger bumps the feed's version with it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// SQL of [`record`].
const RECORD_SQL: &str = "INSERT INTO revoked_subjects (subject, revoked_at, keep_until)
         VALUES ($1, $2, $3)
         ON CONFLICT (subject) DO UPDATE
         SET revoked_at = greatest(revoked_subjects.revoked_at, excluded.revoked_at),
             keep_until = greatest(revoked_subjects.keep_until, excluded.keep_until)";

/// SQL of [`record_each`]: [`RECORD_SQL`] over arrays.
const RECORD_EACH_SQL: &str = "INSERT INTO revoked_subjects (subject, revoked_at, keep_until)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[])
         ON CONFLICT (subject) DO UPDATE
         SET revoked_at = greatest(revoked_subjects.revoked_at, excluded.revoked_at),
             keep_until = greatest(revoked_subjects.keep_until, excluded.keep_until)";

/// Lists `subject` as revoked at `revoked_at` until `keep_until`; a later revocation of a
/// listed subject moves both forward, never back.
#[tracing::instrument(name = "db revoked_subjects::record", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "revoked_subjects", db.operation.name = "record", db.query.text = RECORD_SQL))]
pub async fn record<'e>(
    executor: impl PgExecutor<'e>,
    subject: &str,
    revoked_at: DateTime<Utc>,
    keep_until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_SQL)
        .bind(subject)
        .bind(revoked_at)
        .bind(keep_until)
        .execute(executor)
        .await?;
    Ok(())
}

/// [`record`] for many subjects in one statement (each listed once): `subjects[i]` at
/// `revoked_ats[i]` until `keep_untils[i]`.
#[tracing::instrument(name = "db revoked_subjects::record_each", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "revoked_subjects", db.operation.name = "record_each", db.query.text = RECORD_EACH_SQL))]
pub async fn record_each<'e>(
    executor: impl PgExecutor<'e>,
    subjects: &[String],
    revoked_ats: &[DateTime<Utc>],
    keep_untils: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_EACH_SQL)
        .bind(subjects)
        .bind(revoked_ats)
        .bind(keep_untils)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`delete_kept_until`].
const DELETE_KEPT_UNTIL_SQL: &str = "DELETE FROM revoked_subjects WHERE keep_until < $1";

/// Deletes entries no token can still fall under; returns how many.
#[tracing::instrument(name = "db revoked_subjects::delete_kept_until", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "revoked_subjects", db.operation.name = "delete_kept_until", db.query.text = DELETE_KEPT_UNTIL_SQL))]
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
