//! Start-up: database connection (creating it in `local`), migrations or the schema check,
//! signing keys, the bootstrap admin, and serving until SIGTERM/SIGINT.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use iam_core::config::Profile;
use iam_core::database::lasting_failure;
use iam_core::process::ProcessError;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::app;
use crate::config::ApiConfig;
use crate::config::BootstrapAdmin;
use crate::domain::accounts::Accounts;
use crate::domain::audit::Actor;
use crate::domain::keys::{self, KeyRing};
use crate::domain::password::PasswordHasherPool;
use crate::domain::pruning;
use crate::domain::users::{self, AdminOutcome, ExistingAccount};
use crate::http::rate_limit::ClientRateLimit;
use crate::metrics::ApiMetrics;
use crate::state::AppState;
use iam_core::database::connections::{Database, PoolSettings, Role};

/// The SQL migrations, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// How long a request may wait for a database connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long start-up keeps trying to reach the database.
const STARTUP_CONNECT_ATTEMPTS: u32 = 10;
/// How often long-expired refresh tokens and idle login failure records are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// An application error during start-up or a command is a runtime failure (exit 1);
/// configuration and schema problems are raised as `ProcessError::config` (exit 2).
impl From<crate::error::AppError> for ProcessError {
    fn from(error: crate::error::AppError) -> Self {
        ProcessError::runtime(error.to_string())
    }
}

/// Connects to the database, creating it first in `local` when it does not exist, and
/// applies migrations (`migrate`) or checks that the schema is current.
pub async fn open_database(config: &ApiConfig, migrate: bool) -> Result<Database, ProcessError> {
    let options =
        iam_core::database::connect_options(&config.database).map_err(ProcessError::config)?;
    wait_for_database(&options, config.common.profile).await?;
    let db = Database::connect(options, pool_settings(config, Role::Primary))
        .await
        .map_err(|error| ProcessError::runtime(format!("cannot connect to PostgreSQL: {error}")))?;
    let mut connection = db
        .acquire()
        .await
        .map_err(|error| ProcessError::runtime(format!("cannot connect to PostgreSQL: {error}")))?;
    if migrate {
        // sqlx takes a PostgreSQL advisory lock around the run, so replicas starting
        // together apply each migration once.
        MIGRATOR
            .run(&mut *connection)
            .await
            .map_err(|error| ProcessError::runtime(format!("migration failed: {error}")))?;
        tracing::info!("database schema is up to date");
    } else {
        check_schema(&mut connection).await?;
    }
    drop(connection);
    Ok(db)
}

/// The database the read-only listings read (`POSTGRES_READ_CONNECTION_STRING`), or `primary`
/// when no replica is configured. Not connected yet: a replica that is away at start makes
/// those listings answer 503 until it answers, and nothing else depends on it.
pub fn open_read_database(
    config: &ApiConfig,
    primary: &Database,
) -> Result<Database, ProcessError> {
    let options =
        iam_core::database::read_connect_options(&config.database).map_err(ProcessError::config)?;
    Ok(match options {
        Some(options) => Database::connect_lazy(options, pool_settings(config, Role::Replica)),
        None => primary.clone(),
    })
}

fn pool_settings(config: &ApiConfig, role: Role) -> PoolSettings {
    PoolSettings {
        max_connections: config.database.pool_size,
        acquire_timeout: ACQUIRE_TIMEOUT,
        role,
    }
}

async fn wait_for_database(
    options: &PgConnectOptions,
    profile: Profile,
) -> Result<(), ProcessError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match sqlx::PgConnection::connect_with(options).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(error) if is_missing_database(&error) && profile == Profile::Local => {
                create_database(options).await?;
            }
            Err(error) if let Some(why) = lasting_failure(&error) => {
                return Err(ProcessError::config(why));
            }
            Err(error) if is_missing_database(&error) => {
                return Err(ProcessError::config(format!(
                    "the database in POSTGRES_CONNECTION_STRING does not exist: {error}"
                )));
            }
            Err(error) if attempt >= STARTUP_CONNECT_ATTEMPTS => {
                return Err(ProcessError::runtime(format!(
                    "cannot connect to PostgreSQL after {attempt} attempts: {error}"
                )));
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "PostgreSQL is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_missing_database(error: &sqlx::Error) -> bool {
    // SQLSTATE 3D000: invalid_catalog_name.
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

async fn create_database(options: &PgConnectOptions) -> Result<(), ProcessError> {
    let name = options.get_database().unwrap_or("iam").to_owned();
    let maintenance = options.clone().database("postgres");
    let mut connection = sqlx::PgConnection::connect_with(&maintenance)
        .await
        .map_err(|error| {
            ProcessError::runtime(format!("cannot create database {name}: {error}"))
        })?;
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created the database"),
        // 42P04 duplicate_database: another process was faster, which is fine.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
        Err(error) => {
            return Err(ProcessError::runtime(format!(
                "cannot create database {name}: {error}"
            )));
        }
    }
    let _ = connection.close().await;
    Ok(())
}

/// Without `--migrate=true`, a missing or older schema stops the process.
async fn check_schema(connection: &mut PgConnection) -> Result<(), ProcessError> {
    let applied: Result<Vec<i64>, sqlx::Error> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(connection)
            .await;
    let applied: HashSet<i64> = match applied {
        Ok(versions) => versions.into_iter().collect(),
        // 42P01 undefined_table: never migrated.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => HashSet::new(),
        Err(error) => {
            return Err(ProcessError::runtime(format!(
                "cannot read the schema version: {error}"
            )));
        }
    };
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| format!("{} {}", migration.version, migration.description))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ProcessError::config(format!(
            "the database schema is missing or older than this binary (not applied: {}); run with --migrate=true",
            missing.join(", ")
        )))
    }
}

/// Builds the shared state: hashing pool, signing keys (creating the first one), bootstrap
/// admin, and the key reloader.
pub async fn build_state(
    config: ApiConfig,
    db: Database,
    read_db: Database,
) -> Result<AppState, ProcessError> {
    if config.key_encryption_key.is_development_key {
        tracing::warn!(
            "IAM_KEY_ENCRYPTION_KEY is not set: private keys are encrypted with the public \
             development key. Never use this outside local development."
        );
    }
    let metrics = ApiMetrics::new();
    let hasher = PasswordHasherPool::start(
        config.password_hash,
        config.common.worker_count,
        config.password_hash_queue,
        metrics.hash_pool.clone(),
    )
    .map_err(ProcessError::config)?;
    keys::ensure_active_key(&db, &config.key_encryption_key).await?;
    let ring = KeyRing::load(&db, &config.key_encryption_key).await?;
    keys::spawn_reloader(
        ring.clone(),
        db.clone(),
        config.key_encryption_key.clone(),
        config.key_refresh_interval,
    );
    if let Some(interval) = config.key_rotation_interval {
        keys::spawn_automatic_rotation(
            db.clone(),
            config.key_encryption_key.clone(),
            config.rotation_policy(),
            interval,
        );
    }
    pruning::spawn_pruner(db.clone(), PRUNE_INTERVAL, config.audit_retention);
    if let Some(admin) = &config.bootstrap_admin {
        bootstrap_admin(&db, &config, &hasher, admin).await?;
    }
    let client_limit = config
        .rate_limit_per_minute
        .map(|limit| Arc::new(ClientRateLimit::per_minute(limit)));
    Ok(AppState {
        db,
        read_db,
        client_limit,
        config: Arc::new(config),
        hasher,
        keys: ring,
        metrics,
        drain: iam_core::shutdown::Drain::default(),
    })
}

/// `BOOTSTRAP_ADMIN_*`: creates that admin when the email is free. It never promotes an
/// existing non-admin account (whoever registered the address first would become admin);
/// that is logged as an error and the service starts without it.
async fn bootstrap_admin(
    db: &Database,
    config: &ApiConfig,
    hasher: &PasswordHasherPool,
    admin: &BootstrapAdmin,
) -> Result<(), ProcessError> {
    let accounts = Accounts { db, config, hasher };
    match users::ensure_admin(
        &accounts,
        &Actor::system(),
        &admin.email,
        &admin.password,
        ExistingAccount::Refuse,
    )
    .await
    {
        Ok((user, AdminOutcome::Created)) => {
            tracing::info!(user_id = %user.id, "bootstrap admin created");
            Ok(())
        }
        Ok((_, AdminOutcome::AlreadyAdmin | AdminOutcome::Promoted { .. })) => Ok(()),
        Err(crate::error::AppError::Conflict(_)) => {
            tracing::error!(
                email = admin.email.as_str(),
                "BOOTSTRAP_ADMIN_EMAIL belongs to an existing non-admin account, which is not \
                 promoted; use `iam-api admin create --promote` to take it over"
            );
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Serves until SIGTERM or SIGINT, then stops accepting and lets in-flight requests finish.
pub async fn serve(state: AppState) -> Result<(), ProcessError> {
    let server = iam_core::server::bind(
        &state.config.common.host,
        state.config.common.port,
        Some(iam_core::server::IDLE_CONNECTION_TIMEOUT),
    )
    .await?;
    for holding in server.holdings() {
        tracing::info!(address = %holding.local_addr, env = %state.config.common.env_label, "iam-api listening");
    }
    let db = state.db.clone();
    let read_db = state.read_db.clone();
    let drain = state.drain.clone();
    let delay = state.config.common.shutdown_delay;
    iam_core::server::Serve::new(drain, delay)
        .listen(server, app::service(state))
        .run(async move {
            db.close().await;
            read_db.close().await;
        })
        .await;
    Ok(())
}
