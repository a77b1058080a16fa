//! A fresh, uniquely named PostgreSQL database per test, dropped afterwards.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

const HOW_TO_GET_POSTGRES: &str = "The integration tests need PostgreSQL. Either set \
IAM_TEST_DATABASE_URL=postgres://USER[:PASSWORD]@HOST:PORT/postgres (a role allowed to create \
databases), or start a local server on 127.0.0.1:5432 with trust auth (Debian: \
`pg_ctlcluster 15 main start`), or run a Docker engine so that testcontainers can start one.";

/// The URL of a maintenance database on the server the tests use, resolved once.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        std::thread::spawn(resolve_server)
            .join()
            .unwrap_or_else(|_| panic!("{HOW_TO_GET_POSTGRES}"))
    })
}

fn resolve_server() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Ok(url) = std::env::var("IAM_TEST_DATABASE_URL") {
        if let Err(error) = runtime.block_on(try_connect(&url)) {
            panic!("IAM_TEST_DATABASE_URL={url} does not answer: {error}\n{HOW_TO_GET_POSTGRES}");
        }
        return url;
    }
    let user = ["PGUSER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "postgres".to_owned());
    let local = format!("postgres://{user}@localhost:5432/postgres");
    let local_error = match runtime.block_on(try_connect(&local)) {
        Ok(()) => return local,
        Err(error) => error,
    };
    match runtime.block_on(start_container()) {
        Ok(url) => url,
        Err(container_error) => panic!(
            "no PostgreSQL for the integration tests.\n- local server {local}: {local_error}\n\
             - testcontainers: {container_error}\n{HOW_TO_GET_POSTGRES}"
        ),
    }
}

async fn try_connect(url: &str) -> Result<(), String> {
    let options = PgConnectOptions::from_str(url).map_err(|error| error.to_string())?;
    let connect = PgConnection::connect_with(&options);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out after 5 s".to_owned()),
    }
}

/// Starts a PostgreSQL container that lives as long as the test process.
async fn start_container() -> Result<String, String> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;

    let container = Postgres::default()
        .start()
        .await
        .map_err(|error| format!("cannot start a PostgreSQL container: {error}"))?;
    let host = container
        .get_host()
        .await
        .map_err(|error| error.to_string())?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|error| error.to_string())?;
    // The container must outlive this runtime: it is removed when the process ends.
    std::mem::forget(container);
    Ok(format!(
        "postgres://postgres:postgres@{host}:{port}/postgres"
    ))
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut result = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// A database created for one test and dropped when it goes out of scope.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    /// Connection string for the binaries and for assertions.
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Self {
        let admin_url = server_url().to_owned();
        let name = format!("iam_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {admin_url}: {error}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        TestDatabase {
            name,
            url,
            admin_url,
        }
    }

    /// A database name that does not exist yet (for the `local` create-on-start test); it is
    /// dropped with this value.
    pub fn unused() -> Self {
        let admin_url = server_url().to_owned();
        let name = format!("iam_test_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name);
        TestDatabase {
            name,
            url,
            admin_url,
        }
    }

    /// A small pool on this database, for assertions.
    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url))
    }

    /// Whether the database exists on the server.
    pub async fn exists(&self) -> bool {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin");
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&self.name)
            .fetch_optional(&mut admin)
            .await
            .expect("query pg_database");
        found.is_some()
    }

    /// Makes the server refuse new connections to this database and drops the existing ones,
    /// as when the database goes away, without touching the shared server.
    pub async fn refuse_connections(&self) {
        self.set_allow_connections(false).await;
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut admin)
        .await
        .expect("terminate backends");
    }

    /// Accepts connections again after [`Self::refuse_connections`].
    pub async fn allow_connections(&self) {
        self.set_allow_connections(true).await;
    }

    async fn set_allow_connections(&self, allow: bool) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("alter database");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee, so use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// How many backends of the pool's database are waiting for a lock (row, transaction or
/// advisory): how a test sees that a request it started has reached a lock it holds.
pub async fn lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .expect("pg_stat_activity")
}

/// The revocation feed's version row, held locked by a test: a revoking change, whose
/// trigger must update that row, then stops between taking its cut-off and committing.
pub struct FeedVersionHold(sqlx::Transaction<'static, sqlx::Postgres>);

impl FeedVersionHold {
    /// Locks the row until [`Self::release`].
    pub async fn take(pool: &PgPool) -> Self {
        let mut hold = pool.begin().await.expect("begin");
        sqlx::query("SELECT version FROM revocation_feed_version FOR UPDATE")
            .execute(&mut *hold)
            .await
            .expect("lock the feed version");
        FeedVersionHold(hold)
    }

    /// Waits until `what` (the one change started) waits for the row, then until the clock
    /// has passed a whole second, so that anything started now falls in a later second than
    /// the change's cut-off was taken in.
    pub async fn wait_for_the_change(&self, pool: &PgPool, what: &str) {
        crate::eventually(Duration::from_secs(10), what, || async {
            lock_waiters(pool).await == 1
        })
        .await;
        let blocked_second = chrono::Utc::now().timestamp();
        crate::eventually(
            Duration::from_secs(3),
            "the clock passes a whole second",
            || async { chrono::Utc::now().timestamp() > blocked_second },
        )
        .await;
    }

    /// Lets the change commit.
    pub async fn release(self) {
        self.0.commit().await.expect("release");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_keeping_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
