//! The `audit_events` table: one row per security event, written in the transaction of the
//! change it records, read newest first with keyset paging, purged after the retention.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// An event as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEventRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub detail: sqlx::types::Json<serde_json::Value>,
}

/// SQL of [`insert`].
const INSERT_SQL: &str =
    "INSERT INTO audit_events (id, at, type, actor, subject, outcome, ip, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Stores one event.
#[tracing::instrument(name = "db audit_events::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "audit_events", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    event: &AuditEventRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_SQL)
        .bind(event.id)
        .bind(event.at)
        .bind(&event.kind)
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(&event.outcome)
        .bind(&event.ip)
        .bind(&event.detail)
        .execute(executor)
        .await?;
    Ok(())
}

/// What a listing is narrowed to; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub kind: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// SQL of [`list_before`].
const LIST_BEFORE_SQL: &str =
    "SELECT id, at, type, actor, subject, outcome, ip, detail FROM audit_events
         WHERE ($1::uuid IS NULL OR id < $1)
           AND ($2::text IS NULL OR type = $2)
           AND ($3::text IS NULL OR actor = $3)
           AND ($4::text IS NULL OR subject = $4)
         ORDER BY id DESC LIMIT $5";

/// Up to `limit` events matching `filter` with ids below `before`, newest first (ids are
/// UUIDv7, so id order is time order).
#[tracing::instrument(name = "db audit_events::list_before", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "audit_events", db.operation.name = "list_before", db.query.text = LIST_BEFORE_SQL))]
pub async fn list_before<'e>(
    executor: impl PgExecutor<'e>,
    before: Option<Uuid>,
    filter: &AuditFilter<'_>,
    limit: i64,
) -> Result<Vec<AuditEventRecord>, sqlx::Error> {
    sqlx::query_as(LIST_BEFORE_SQL)
        .bind(before)
        .bind(filter.kind)
        .bind(filter.actor)
        .bind(filter.subject)
        .bind(limit)
        .fetch_all(executor)
        .await
}

/// SQL of [`delete_before`].
const DELETE_BEFORE_SQL: &str = "DELETE FROM audit_events WHERE at < $1";

/// Deletes events older than `cutoff`; returns how many.
#[tracing::instrument(name = "db audit_events::delete_before", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "audit_events", db.operation.name = "delete_before", db.query.text = DELETE_BEFORE_SQL))]
pub async fn delete_before<'e>(
    executor: impl PgExecutor<'e>,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(DELETE_BEFORE_SQL)
        .bind(cutoff)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
