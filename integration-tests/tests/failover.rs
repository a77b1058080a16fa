//! PostgreSQL failover (issue 19): while the primary is replaced by its promoted standby at
//! the same address, iam-api answers only successes or 503 with `Retry-After`, never a 500
//! or a hang; it loses no write it acknowledged; and it serves again by itself within
//! seconds. A write that reaches a read-only server is a 503 too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration_tests::ServiceProcess;
use integration_tests::api::{ADMIN_EMAIL, expect_problem, string};
use integration_tests::database::TestDatabase;
use integration_tests::eventually;
use integration_tests::forwarder::TcpForwarder;
use integration_tests::private_postgres::{ReplicatedPostgres, in_recovery};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Concurrent clients registering, logging in and refreshing through the switch.
const CLIENTS: usize = 4;
/// How long the api may take to serve writes again once the new primary answers.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "user-password-1";

/// What the clients saw.
#[derive(Debug, Default)]
struct Observed {
    /// Emails whose registration was answered 201.
    acknowledged: Vec<String>,
    /// Answers that were neither a success nor a 503 with `Retry-After`, or no answer.
    wrong: Vec<String>,
    unavailable: usize,
    successes: usize,
}

/// Whether `response` is a 503 problem with `Retry-After`; anything else is recorded as wrong.
async fn is_unavailable(
    response: reqwest::Response,
    what: &str,
    observed: &Mutex<Observed>,
) -> bool {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.unwrap_or_default();
    let mut observed = observed.lock().await;
    if status == 503 && retry_after && content_type == "application/problem+json" {
        observed.unavailable += 1;
        return true;
    }
    observed.wrong.push(format!(
        "{what}: {status} (Retry-After: {retry_after}) {body}"
    ));
    false
}

/// One client: register a new account, log in, refresh, again and again until `stop`.
async fn client(
    api: Arc<ServiceProcess>,
    id: usize,
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    let mut attempt = 0;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        let email = format!("client{id}-{attempt}@example.com");
        let body = json!({"email": email, "password": PASSWORD});
        let response = match api
            .client
            .post(api.url("/api/v1/users"))
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => {
                observed
                    .lock()
                    .await
                    .wrong
                    .push(format!("register {email}: no answer: {error}"));
                continue;
            }
        };
        if response.status() == 201 {
            let mut observed = observed.lock().await;
            observed.acknowledged.push(email.clone());
            observed.successes += 1;
        } else {
            is_unavailable(response, &format!("register {email}"), &observed).await;
            continue;
        }
        let login = json!({"email": email, "password": PASSWORD});
        let pair: Value = match api
            .client
            .post(api.url("/api/v1/tokens"))
            .json(&login)
            .send()
            .await
        {
            Ok(response) if response.status() == 200 => {
                observed.lock().await.successes += 1;
                response.json().await.expect("a token pair")
            }
            Ok(response) => {
                is_unavailable(response, &format!("login {email}"), &observed).await;
                continue;
            }
            Err(error) => {
                observed
                    .lock()
                    .await
                    .wrong
                    .push(format!("login {email}: no answer: {error}"));
                continue;
            }
        };
        // A 401 here would mean that the refresh token of an acknowledged login was lost.
        let refresh =
            json!({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]});
        match api
            .client
            .post(api.url("/api/v1/tokens"))
            .json(&refresh)
            .send()
            .await
        {
            Ok(response) if response.status() == 200 => observed.lock().await.successes += 1,
            Ok(response) => {
                is_unavailable(response, &format!("refresh {email}"), &observed).await;
            }
            Err(error) => {
                observed
                    .lock()
                    .await
                    .wrong
                    .push(format!("refresh {email}: no answer: {error}"));
            }
        }
    }
}

async fn successes(observed: &Mutex<Observed>) -> usize {
    observed.lock().await.successes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_load_answers_503_loses_no_acknowledged_write_and_recovers() {
    let postgres = ReplicatedPostgres::start().await;
    // Every commit waits for the standby: the database's half of "no acknowledged write
    // lost" (with asynchronous replication a crash may lose the last commits, whatever
    // the api does).
    postgres.primary.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
    );
    postgres.primary.psql("postgres", "SELECT pg_reload_conf()");
    let primary_url = postgres.primary.url("postgres");
    eventually(
        Duration::from_secs(30),
        "the standby replicates synchronously",
        || {
            let url = primary_url.clone();
            async move { sync_standbys(&url).await == Some(1) }
        },
    )
    .await;
    let forwarder = TcpForwarder::start(postgres.primary.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/iam", forwarder.port);
    let api = Arc::new(
        ServiceProcess::builder_with_url(&url)
            // Requests must answer (503) well before the clients give up on them.
            .env("POSTGRES_POOL_SIZE", "4")
            .start()
            .await,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                Arc::clone(&api),
                id,
                Arc::clone(&stop),
                Arc::clone(&observed),
            ))
        })
        .collect();
    eventually(Duration::from_secs(30), "the clients get going", || async {
        successes(&observed).await >= 20
    })
    .await;

    // The switch: the primary stops (its sessions are terminated, 57P01), the standby is
    // promoted, and the address leads to it.
    postgres.primary.stop("fast");
    let before_switch = successes(&observed).await;
    postgres.standby.promote();
    assert_eq!(in_recovery(&postgres.standby.url("iam")).await, Some(false));
    forwarder.point_at(Some(postgres.standby.port));
    let switched = Instant::now();
    eventually(
        RECOVERY_LIMIT,
        "the api serves writes again after the switch",
        || async { successes(&observed).await >= before_switch + 10 * CLIENTS },
    )
    .await;
    let recovered_after = switched.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client");
    }

    let observed = observed.lock().await;
    assert!(
        observed.wrong.is_empty(),
        "only successes or 503 with Retry-After during the switch, got:\n{}\napi log:\n{}",
        observed.wrong.join("\n"),
        api.logs()
    );
    eprintln!(
        "{} successes, {} answered 503, writes served again {recovered_after:?} after the switch",
        observed.successes, observed.unavailable
    );
    // Every registration answered 201, before or during the switch, is on the new primary.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.standby.url("iam"))
        .await
        .expect("the new primary");
    let stored: Vec<String> = sqlx::query_scalar("SELECT email FROM users")
        .fetch_all(&pool)
        .await
        .expect("users");
    let missing: Vec<&String> = observed
        .acknowledged
        .iter()
        .filter(|email| !stored.contains(email))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(stored.iter().any(|email| email == ADMIN_EMAIL));
}

/// How many standbys the primary at `url` replicates to synchronously.
async fn sync_standbys(url: &str) -> Option<i64> {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.ok()?;
    let count =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
            .fetch_one(&mut connection)
            .await
            .ok();
    let _ = connection.close().await;
    count
}

#[tokio::test]
async fn writes_reaching_a_standby_are_answered_503_until_it_is_promoted() {
    let postgres = ReplicatedPostgres::start().await;
    let forwarder = TcpForwarder::start(postgres.primary.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/iam", forwarder.port);
    let api = ServiceProcess::builder_with_url(&url).start().await;
    let (_, token) = api.user_with_token("before@example.com").await;
    let standby_url = postgres.standby.url("iam");
    eventually(
        Duration::from_secs(30),
        "the standby has the account",
        || {
            let url = standby_url.clone();
            async move { user_exists(&url, "before@example.com").await }
        },
    )
    .await;

    // The primary is gone and the address leads to the standby before it is promoted: the
    // api's connections now reach a read-only server.
    postgres.primary.stop("fast");
    forwarder.point_at(Some(postgres.standby.port));
    // The connections to the old primary fail a request each at most, with a 503.
    eventually(
        RECOVERY_LIMIT,
        "reads are served from the standby",
        || async {
            let status = api.me_status(&token).await.as_u16();
            assert!(status == 200 || status == 503, "GET /me answered {status}");
            status == 200
        },
    )
    .await;
    for attempt in 0..3 {
        let email = format!("during{attempt}@example.com");
        let refused = api.register_attempt(&email, PASSWORD).await;
        assert_eq!(
            refused
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().ok()),
            Some(Some("1"))
        );
        let problem = expect_problem(refused, 503).await;
        assert!(
            string(&problem["type"]).ends_with("database-unavailable"),
            "{problem}"
        );
    }
    // A login writes its refresh token: refused the same way, not a 500.
    let login = api.login_attempt("before@example.com", PASSWORD).await;
    assert!(login.headers().contains_key("retry-after"));
    expect_problem(login, 503).await;
    refused_as_read_only(&api).await;
    assert!(!api.logs().contains("internal error"), "{}", api.logs());

    // The standby becomes the primary: the same process serves writes again by itself.
    postgres.standby.promote();
    let deadline = Instant::now() + RECOVERY_LIMIT;
    loop {
        let response = api.register_attempt("after@example.com", PASSWORD).await;
        match response.status().as_u16() {
            201 => break,
            503 => assert!(
                Instant::now() < deadline,
                "no write served {RECOVERY_LIMIT:?} after the promotion"
            ),
            other => panic!("a write after the promotion was answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.login("before@example.com", PASSWORD).await;
}

#[tokio::test]
async fn a_read_only_database_answers_writes_503_with_retry_after_and_recovers() {
    let test_db = TestDatabase::create().await;
    let api = ServiceProcess::start(&test_db).await;
    let token = api.admin_token().await;
    // What an operator may do to fence a primary.
    set_read_only(&test_db.url, &test_db.name, true).await;
    // The ended sessions fail a request each at most, with a 503; reads work again then.
    eventually(RECOVERY_LIMIT, "reads are served again", || async {
        let status = api.me_status(&token).await.as_u16();
        assert!(status == 200 || status == 503, "GET /me answered {status}");
        status == 200
    })
    .await;
    let refused = api.register_attempt("ro@example.com", PASSWORD).await;
    assert!(refused.headers().contains_key("retry-after"));
    expect_problem(refused, 503).await;
    refused_as_read_only(&api).await;

    set_read_only(&test_db.url, &test_db.name, false).await;
    eventually(RECOVERY_LIMIT, "writes are served again", || async {
        let status = api
            .register_attempt("rw@example.com", PASSWORD)
            .await
            .status()
            .as_u16();
        assert!(
            status == 201 || status == 503,
            "POST /users answered {status}"
        );
        status == 201
    })
    .await;
}

/// Waits until the api has logged a 503 for SQLSTATE 25006 (the log is written a moment
/// after the answer).
async fn refused_as_read_only(api: &ServiceProcess) {
    eventually(
        Duration::from_secs(5),
        "the api logs the read-only refusal",
        || async { api.logs().contains("in a read-only transaction") },
    )
    .await;
}

/// Makes new sessions of `database` read-only (or not) and ends the api's current ones, so
/// that it has to open new ones.
async fn set_read_only(url: &str, database: &str, read_only: bool) {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    // Undoing it from a read-only session needs a session that may write.
    sqlx::query("SET default_transaction_read_only = off")
        .execute(&mut connection)
        .await
        .expect("set");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {database} SET default_transaction_read_only = {read_only}"
    )))
    .execute(&mut connection)
    .await
    .expect("alter database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut connection)
    .await
    .expect("terminate the api's sessions");
    let _ = connection.close().await;
}

async fn user_exists(url: &str, email: &str) -> bool {
    use sqlx::Connection as _;
    let Ok(mut connection) = sqlx::PgConnection::connect(url).await else {
        return false;
    };
    let found: Option<i64> = sqlx::query_scalar("SELECT 1::int8 FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut connection)
        .await
        .ok()
        .flatten();
    let _ = connection.close().await;
    found.is_some()
}
