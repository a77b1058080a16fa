//! TLS to PostgreSQL as libpq reads `sslmode`, `sslrootcert`: against a private server that
//! accepts TCP connections over TLS only (see `integration_tests::tls_postgres`).

use integration_tests::ServiceProcess;
use integration_tests::tls_postgres::TlsPostgres;
use serde_json::Value;

/// `(TLS connections, plain connections)` to database `iam`, counted over a TLS connection
/// made with `url` (so at least one is the counting one).
async fn connections(url: &str) -> (i64, i64) {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
    let counts = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = 'iam' AND a.backend_type = 'client backend'",
    )
    .fetch_one(&mut connection)
    .await
    .expect("pg_stat_ssl");
    let _ = connection.close().await;
    counts
}

/// Runs the api (a start that fails exits; one that works is stopped) and returns its exit
/// status and what it printed on stderr, or `None` when it started serving.
async fn api_start_failure(url: &str) -> Option<(Option<i32>, String)> {
    let mut api = ServiceProcess::builder_with_url(url).spawn();
    let outcome = api.wait_until_healthy_or_exit().await;
    outcome.map(|status| (status.code(), api.logs()))
}

async fn jwks_start_failure(url: &str) -> Option<(Option<i32>, String)> {
    let mut jwks = ServiceProcess::jwks_builder_with_url(url).spawn();
    let outcome = jwks.wait_until_healthy_or_exit().await;
    outcome.map(|status| (status.code(), jwks.logs()))
}

#[tokio::test]
async fn verify_full_connects_the_api_and_the_jwks_over_tls_only() {
    let postgres = TlsPostgres::start();
    let url = postgres.url(
        "localhost",
        "iam",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            postgres.ca_file.display()
        ),
    );
    let api = ServiceProcess::builder_with_url(&url).start().await;
    api.admin_token().await;
    let jwks = ServiceProcess::jwks_builder_with_url(&url).start().await;
    let keys: Value = jwks
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .expect("jwks");
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1));
    let (tls, plain) = connections(&url).await;
    assert!(
        tls >= 3,
        "the api's and the jwks's connections use TLS: {tls}"
    );
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_stops_the_process_naming_the_problem() {
    let postgres = TlsPostgres::start();
    let other_ca = postgres.other_ca_file.display().to_string();
    let our_ca = postgres.ca_file.display().to_string();
    for (case, host, query) in [
        (
            "a certificate from another CA",
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other_ca}"),
        ),
        (
            "verify-ca with another CA",
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        ),
        // libpq: require with a named root certificate checks the chain.
        (
            "require naming another CA",
            "localhost",
            format!("sslmode=require&sslrootcert={other_ca}"),
        ),
        (
            "a certificate for another name",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={our_ca}"),
        ),
    ] {
        let url = postgres.url(host, "iam", &query);
        let (code, logs) = api_start_failure(&url)
            .await
            .unwrap_or_else(|| panic!("{case}: the api started"));
        assert_eq!(code, Some(2), "{case}: {logs}");
        assert!(
            logs.contains("cannot open a TLS connection to PostgreSQL")
                && logs.contains("invalid peer certificate"),
            "{case}: {logs}"
        );
    }
    let url = postgres.url(
        "localhost",
        "iam",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    );
    let (code, logs) = jwks_start_failure(&url).await.expect("the jwks started");
    assert_eq!(code, Some(2), "{logs}");
    assert!(logs.contains("invalid peer certificate"), "{logs}");

    // verify-ca checks the chain but not the name: 127.0.0.1 is fine with our CA.
    let url = postgres.url(
        "127.0.0.1",
        "iam",
        &format!("sslmode=verify-ca&sslrootcert={our_ca}"),
    );
    assert_eq!(api_start_failure(&url).await, None);
}

#[tokio::test]
async fn prefer_the_default_uses_tls_when_the_server_offers_it() {
    let postgres = TlsPostgres::start();
    let url = postgres.url("localhost", "iam", "");
    let api = ServiceProcess::builder_with_url(&url).start().await;
    api.admin_token().await;
    let require = postgres.url("localhost", "iam", "sslmode=require");
    let jwks = ServiceProcess::jwks_builder_with_url(&require)
        .start()
        .await;
    assert!(jwks.is_healthy().await);
    let (tls, plain) = connections(&require).await;
    assert!(tls >= 3, "{tls}");
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn disable_against_a_tls_only_server_fails_clearly() {
    let postgres = TlsPostgres::start();
    let url = postgres.url("localhost", "iam", "sslmode=disable");
    let (code, logs) = api_start_failure(&url).await.expect("the api started");
    assert_eq!(code, Some(2), "{logs}");
    assert!(
        logs.contains("PostgreSQL refused the login") && logs.contains("no encryption"),
        "{logs}"
    );
    let (code, logs) = jwks_start_failure(&url).await.expect("the jwks started");
    assert_eq!(code, Some(2), "{logs}");
    assert!(logs.contains("no encryption"), "{logs}");
}
