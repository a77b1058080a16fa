//! The `clients` and `client_secrets` tables: OAuth 2.0 clients (service accounts) and the
//! hashes of their secrets.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A client with its role's permissions (never a secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub disabled: bool,
    /// Access tokens of this client issued before it are refused.
    pub tokens_revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One secret of a client: its id and age, never its value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRecord {
    pub id: Uuid,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
}

/// What the client-credentials grant reads in one round trip: the client, whether the
/// presented secret is one of its secrets, and its failure record (for throttling).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientCredentials {
    pub id: String,
    pub role: String,
    pub disabled: bool,
    pub tokens_revoked_at: Option<DateTime<Utc>>,
    pub secret_matches: bool,
    pub failure_count: Option<i32>,
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// Name of the unique index on `name`.
pub const NAME_UNIQUE_INDEX: &str = "clients_name_key";
/// Name of the foreign key from `clients.role` to `roles.name`.
pub const ROLE_FOREIGN_KEY: &str = "clients_role_fkey";

/// The columns of a [`ClientRecord`], from `clients c JOIN roles r`.
macro_rules! client_columns {
    () => {
        "c.id, c.name, c.role, r.permissions, c.disabled, c.tokens_revoked_at, c.created_at"
    };
}

/// SQL of [`insert`].
const INSERT_SQL: &str = concat!(
    "WITH c AS (INSERT INTO clients (id, name, role) VALUES ($1, $2, $3) RETURNING *) SELECT ",
    client_columns!(),
    " FROM c JOIN roles r ON r.name = c.role"
);

/// Inserts a client; fails on [`NAME_UNIQUE_INDEX`] when the name is taken and on
/// [`ROLE_FOREIGN_KEY`] when the role does not exist.
#[tracing::instrument(name = "db clients::insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "insert", db.query.text = INSERT_SQL))]
pub async fn insert<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
    name: &str,
    role: &str,
) -> Result<ClientRecord, sqlx::Error> {
    sqlx::query_as(INSERT_SQL)
        .bind(id)
        .bind(name)
        .bind(role)
        .fetch_one(executor)
        .await
}

/// SQL of [`find`].
const FIND_SQL: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients c JOIN roles r ON r.name = c.role WHERE c.id = $1"
);

/// The client with this id.
#[tracing::instrument(name = "db clients::find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "find", db.query.text = FIND_SQL))]
pub async fn find<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
) -> Result<Option<ClientRecord>, sqlx::Error> {
    sqlx::query_as(FIND_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// SQL of [`lock`].
const LOCK_SQL: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients c JOIN roles r ON r.name = c.role WHERE c.id = $1 FOR UPDATE OF c"
);

/// The client with this id, its row locked until the transaction ends.
#[tracing::instrument(name = "db clients::lock", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "lock", db.query.text = LOCK_SQL))]
pub async fn lock<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
) -> Result<Option<ClientRecord>, sqlx::Error> {
    sqlx::query_as(LOCK_SQL)
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// SQL of [`list`].
const LIST_SQL: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients c JOIN roles r ON r.name = c.role ORDER BY c.name"
);

/// Every client, by name.
#[tracing::instrument(name = "db clients::list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "list", db.query.text = LIST_SQL))]
pub async fn list<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<ClientRecord>, sqlx::Error> {
    sqlx::query_as(LIST_SQL).fetch_all(executor).await
}

/// SQL of [`set_disabled`].
const SET_DISABLED_SQL: &str = "UPDATE clients SET disabled = $2, updated_at = now() WHERE id = $1";

/// Disables or enables a client.
#[tracing::instrument(name = "db clients::set_disabled", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "set_disabled", db.query.text = SET_DISABLED_SQL))]
pub async fn set_disabled<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_DISABLED_SQL)
        .bind(id)
        .bind(disabled)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`revoke_tokens`].
const REVOKE_TOKENS_SQL: &str =
    "UPDATE clients SET tokens_revoked_at = $2, updated_at = now() WHERE id = $1";

/// Makes every access token of the client issued before `at` be refused.
#[tracing::instrument(name = "db clients::revoke_tokens", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "revoke_tokens", db.query.text = REVOKE_TOKENS_SQL))]
pub async fn revoke_tokens<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE_TOKENS_SQL)
        .bind(id)
        .bind(at)
        .execute(executor)
        .await?;
    Ok(())
}

/// A holder of a role, as a revocation of the role's tokens needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleHolder {
    pub id: String,
    pub tokens_revoked_at: Option<DateTime<Utc>>,
}

/// SQL of [`lock_holders_of_role`]. In id order, so that two such locks cannot deadlock.
const LOCK_HOLDERS_OF_ROLE_SQL: &str =
    "SELECT id, tokens_revoked_at FROM clients WHERE role = $1 ORDER BY id FOR UPDATE";

/// Every client with `role` and its last token revocation, each row locked until the
/// transaction ends.
#[tracing::instrument(name = "db clients::lock_holders_of_role", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "lock_holders_of_role", db.query.text = LOCK_HOLDERS_OF_ROLE_SQL))]
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
const REVOKE_TOKENS_OF_EACH_SQL: &str = "UPDATE clients c
         SET tokens_revoked_at = revoked.at, updated_at = now()
         FROM UNNEST($1::text[], $2::timestamptz[]) AS revoked (id, at)
         WHERE c.id = revoked.id";

/// [`revoke_tokens`] for many clients in one statement: `ids[i]` at `ats[i]`.
#[tracing::instrument(name = "db clients::revoke_tokens_of_each", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "revoke_tokens_of_each", db.query.text = REVOKE_TOKENS_OF_EACH_SQL))]
pub async fn revoke_tokens_of_each<'e>(
    executor: impl PgExecutor<'e>,
    ids: &[String],
    ats: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(REVOKE_TOKENS_OF_EACH_SQL)
        .bind(ids)
        .bind(ats)
        .execute(executor)
        .await?;
    Ok(())
}

/// SQL of [`delete`].
const DELETE_SQL: &str = "DELETE FROM clients WHERE id = $1";

/// Deletes a client and (by cascade) its secrets; `false` when there was none.
#[tracing::instrument(name = "db clients::delete", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "delete", db.query.text = DELETE_SQL))]
pub async fn delete<'e>(executor: impl PgExecutor<'e>, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(DELETE_SQL).bind(id).execute(executor).await?;
    Ok(result.rows_affected() > 0)
}

/// SQL of [`insert_secret`].
const INSERT_SECRET_SQL: &str = "INSERT INTO client_secrets (id, client_id, secret_hash)
         VALUES ($1, $2, $3) RETURNING id, client_id, created_at";

/// Stores the hash of a new secret of a client.
#[tracing::instrument(name = "db clients::insert_secret", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "client_secrets", db.operation.name = "insert", db.query.text = INSERT_SECRET_SQL))]
pub async fn insert_secret<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    client_id: &str,
    secret_hash: &[u8; 32],
) -> Result<SecretRecord, sqlx::Error> {
    sqlx::query_as(INSERT_SECRET_SQL)
        .bind(id)
        .bind(client_id)
        .bind(secret_hash.as_slice())
        .fetch_one(executor)
        .await
}

/// SQL of [`secrets_of`].
const SECRETS_OF_SQL: &str = "SELECT id, client_id, created_at FROM client_secrets
         WHERE client_id = ANY($1) ORDER BY created_at, id";

/// The secrets of these clients, oldest first.
#[tracing::instrument(name = "db clients::secrets_of", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "client_secrets", db.operation.name = "select", db.query.text = SECRETS_OF_SQL))]
pub async fn secrets_of<'e>(
    executor: impl PgExecutor<'e>,
    client_ids: &[String],
) -> Result<Vec<SecretRecord>, sqlx::Error> {
    sqlx::query_as(SECRETS_OF_SQL)
        .bind(client_ids)
        .fetch_all(executor)
        .await
}

/// SQL of [`delete_secret`]. The count is of the secrets left.
const DELETE_SECRET_SQL: &str =
    "DELETE FROM client_secrets WHERE client_id = $1 AND id = $2 RETURNING id";

/// Deletes one secret of a client; `false` when the client has no such secret.
#[tracing::instrument(name = "db clients::delete_secret", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "client_secrets", db.operation.name = "delete", db.query.text = DELETE_SECRET_SQL))]
pub async fn delete_secret<'e>(
    executor: impl PgExecutor<'e>,
    client_id: &str,
    secret_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted: Option<Uuid> = sqlx::query_scalar(DELETE_SECRET_SQL)
        .bind(client_id)
        .bind(secret_id)
        .fetch_optional(executor)
        .await?;
    Ok(deleted.is_some())
}

/// SQL of [`count_secrets`].
const COUNT_SECRETS_SQL: &str = "SELECT count(*) FROM client_secrets WHERE client_id = $1";

/// How many secrets a client has.
#[tracing::instrument(name = "db clients::count_secrets", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "client_secrets", db.operation.name = "count", db.query.text = COUNT_SECRETS_SQL))]
pub async fn count_secrets<'e>(
    executor: impl PgExecutor<'e>,
    client_id: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(COUNT_SECRETS_SQL)
        .bind(client_id)
        .fetch_one(executor)
        .await
}

/// SQL of [`find_credentials`]. `$3` is the client's key in `login_failures`.
const FIND_CREDENTIALS_SQL: &str = "SELECT c.id, c.role, c.disabled,
             c.tokens_revoked_at,
             EXISTS (SELECT 1 FROM client_secrets s
                     WHERE s.secret_hash = $2 AND s.client_id = c.id) AS secret_matches,
             f.failure_count, f.last_failure_at
         FROM clients c
         LEFT JOIN login_failures f ON f.email = $3
         WHERE c.id = $1
         FOR SHARE OF c";

/// The client `id` as the client-credentials grant sees it, with whether `secret_hash` is
/// the hash of one of its secrets; `None` when there is no such client. The client's row is
/// share-locked for the statement (or the caller's transaction): a disabling or deletion
/// holding it waits, and one that comes after reads its revocation instant after this read.
#[tracing::instrument(name = "db clients::find_credentials", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.collection.name = "clients", db.operation.name = "find_credentials", db.query.text = FIND_CREDENTIALS_SQL))]
pub async fn find_credentials<'e>(
    executor: impl PgExecutor<'e>,
    id: &str,
    secret_hash: &[u8; 32],
    throttle_key: &str,
) -> Result<Option<ClientCredentials>, sqlx::Error> {
    sqlx::query_as(FIND_CREDENTIALS_SQL)
        .bind(id)
        .bind(secret_hash.as_slice())
        .bind(throttle_key)
        .fetch_optional(executor)
        .await
}
