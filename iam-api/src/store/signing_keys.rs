//! The `signing_keys` table.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::types::Json;

use iam_core::PublicJwk;

/// A key's public half and lifecycle timestamps (no private material).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub public_jwk: Json<PublicJwk>,
    pub created_at: DateTime<Utc>,
    pub activates_at: DateTime<Utc>,
    pub retires_at: Option<DateTime<Utc>>,
    /// Whether the view `published_signing_keys` lists it now: the database holds that rule.
    pub published: bool,
}

/// A key's encrypted private half.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EncryptedPrivateKey {
    pub kid: String,
    pub private_key_ciphertext: Vec<u8>,
    pub key_encryption_key_id: String,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewSigningKey<'a> {
    pub kid: &'a str,
    pub public_jwk: &'a PublicJwk,
    pub private_key_ciphertext: &'a [u8],
    pub key_encryption_key_id: &'a str,
    pub activates_at: DateTime<Utc>,
}

/// Advisory lock id that serialises key creation and rotation across replicas; taken at
/// transaction level, so it ends with the transaction (also through a transaction-pooling
/// PgBouncer, where a session lock would stay with whichever server connection took it).
pub const KEY_LIFECYCLE_LOCK: i64 = 0x1a3_5157_0001;

/// SQL of [`lock_lifecycle`].
const LOCK_LIFECYCLE_SQL: &str = "SELECT pg_advisory_xact_lock($1)";

/// Takes the key-lifecycle lock until the current transaction ends.
#[tracing::instrument(name = "db signing_keys::lock_lifecycle", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "lock_lifecycle", db.query.text = LOCK_LIFECYCLE_SQL))]
pub async fn lock_lifecycle<'e>(executor: impl PgExecutor<'e>) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK_LIFECYCLE_SQL)
        .bind(KEY_LIFECYCLE_LOCK)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`insert`].
const INSERT_SQL: &str = "INSERT INTO signing_keys (kid, public_jwk, private_key_ciphertext, key_encryption_key_id, activates_at)
         VALUES ($1, $2, $3, $4, $5)";

/// Stores a key.
#[tracing::instrument(name = "db signing_keys::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    key: &NewSigningKey<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_SQL)
        .bind(key.kid)
        .bind(Json(key.public_jwk))
        .bind(key.private_key_ciphertext)
        .bind(key.key_encryption_key_id)
        .bind(key.activates_at)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`list_all`]. Whether a key is published comes from the view, never from Rust.
const LIST_ALL_SQL: &str = "SELECT k.kid, k.public_jwk, k.created_at, k.activates_at, k.retires_at,
                p.kid IS NOT NULL AS published
         FROM signing_keys k LEFT JOIN published_signing_keys p ON p.kid = k.kid
         ORDER BY k.activates_at, k.kid";

/// Every key, oldest activation first.
#[tracing::instrument(name = "db signing_keys::list_all", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "list_all", db.query.text = LIST_ALL_SQL))]
pub async fn list_all<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Vec<SigningKeyRecord>, sqlx::Error> {
    sqlx::query_as(LIST_ALL_SQL).fetch_all(executor).await
}

/// SQL of [`list_published`]: the view decides which keys are published.
const LIST_PUBLISHED_SQL: &str =
    "SELECT kid, public_jwk, created_at, activates_at, retires_at, true AS published
         FROM published_signing_keys ORDER BY activates_at, kid";

/// The keys published now, as the view `published_signing_keys` defines it.
#[tracing::instrument(name = "db signing_keys::list_published", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "list_published", db.query.text = LIST_PUBLISHED_SQL))]
pub async fn list_published<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Vec<SigningKeyRecord>, sqlx::Error> {
    sqlx::query_as(LIST_PUBLISHED_SQL).fetch_all(executor).await
}

/// SQL of [`find_private`].
const FIND_PRIVATE_SQL: &str =
    "SELECT kid, private_key_ciphertext, key_encryption_key_id FROM signing_keys WHERE kid = $1";

/// The encrypted private key of `kid`.
#[tracing::instrument(name = "db signing_keys::find_private", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "find_private", db.query.text = FIND_PRIVATE_SQL))]
pub async fn find_private<'e>(
    executor: impl PgExecutor<'e>,
    kid: &str,
) -> Result<Option<EncryptedPrivateKey>, sqlx::Error> {
    sqlx::query_as(FIND_PRIVATE_SQL)
        .bind(kid)
        .fetch_optional(executor)
        .await
}

/// SQL of [`retire_signing_keys`].
const RETIRE_SIGNING_KEYS_SQL: &str = "UPDATE signing_keys SET retires_at = $1, unpublish_at = $2
         WHERE retires_at IS NULL AND activates_at <= $1";

/// Schedules the retirement of every key that signs at `retires_at` or later and is not
/// retired yet.
#[tracing::instrument(name = "db signing_keys::retire_signing_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "signing_keys", db.operation.name = "retire_signing_keys", db.query.text = RETIRE_SIGNING_KEYS_SQL))]
pub async fn retire_signing_keys<'e>(
    executor: impl PgExecutor<'e>,
    retires_at: DateTime<Utc>,
    unpublish_at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(RETIRE_SIGNING_KEYS_SQL)
        .bind(retires_at)
        .bind(unpublish_at)
        .execute(executor)
        .await?;
    Ok(result.rows_affected())
}
