//! How iam-api and iam-jwks reach PostgreSQL: the connection options read from
//! `POSTGRES_CONNECTION_STRING` as libpq reads them (TLS included), and which connection
//! failures are worth waiting out and which must stop the process.
//!
//! TLS is rustls with the ring provider. `sslmode` is `disable`, `prefer` (the default: TLS
//! when the server offers it), `require` (TLS, certificate not checked), `verify-ca` (the
//! certificate chains to a trusted root) or `verify-full` (and names the host). Trusted
//! roots are `sslrootcert` when given, else the system's. `sslcert`/`sslkey` present a
//! client certificate.

pub mod connections;
mod retirement;

use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::{DatabaseSettings, fallback_database_user};

/// The connection options of the primary in `settings`, or why the connection string is
/// unusable.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, String> {
    options_of(&settings.url, "POSTGRES_CONNECTION_STRING")
}

/// The connection options of the read replica in `settings` (`None`: reads go to the
/// primary), read by the same rules as the primary's.
pub fn read_connect_options(
    settings: &DatabaseSettings,
) -> Result<Option<PgConnectOptions>, String> {
    settings
        .read_url
        .as_deref()
        .map(|url| options_of(url, "POSTGRES_READ_CONNECTION_STRING"))
        .transpose()
}

fn options_of(url: &str, variable: &str) -> Result<PgConnectOptions, String> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|error| format!("{variable} is invalid: {error}"))?;
    if let Some(user) = fallback_database_user(url) {
        options = options.username(&user);
    }
    // sqlx sends `extra_float_digits` at start-up by default, and PgBouncer refuses a
    // connection with a startup parameter it does not know ("unsupported startup parameter")
    // unless told to ignore it. The setting only shapes floats sent as text, and we read no
    // floats (PostgreSQL 12 and later print them exactly anyway): not sending it lets us
    // through any PgBouncer as it comes.
    options = options.extra_float_digits(None);
    Ok(with_libpq_root_rule(options, has_root_certificate(url)))
}

/// libpq: "if a root CA file exists, the behavior of `sslmode=require` will be the same as
/// that of `verify-ca`". sqlx would accept any certificate under `require`; a user who named
/// a CA expects it to be checked.
fn with_libpq_root_rule(options: PgConnectOptions, root_named: bool) -> PgConnectOptions {
    if root_named && matches!(options.get_ssl_mode(), PgSslMode::Require) {
        options.ssl_mode(PgSslMode::VerifyCa)
    } else {
        options
    }
}

/// Whether `sslrootcert` (or sqlx's spellings of it) is given, in the URL or as
/// `PGSSLROOTCERT`.
fn has_root_certificate(url: &str) -> bool {
    let in_url = url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            matches!(
                pair.split('=').next(),
                Some("sslrootcert" | "ssl-root-cert" | "ssl-ca")
            )
        })
    });
    in_url || std::env::var_os("PGSSLROOTCERT").is_some_and(|value| !value.is_empty())
}

/// Why a connection attempt failed in a way that waiting will not mend (a certificate that
/// does not verify, a server without TLS when TLS is required, a refused login), as the
/// message the process stops with; `None` when the database may simply not be up yet.
pub fn lasting_failure(error: &sqlx::Error) -> Option<String> {
    let tls_failure = |cause: &dyn std::fmt::Display| {
        format!(
            "cannot open a TLS connection to PostgreSQL (check sslmode and sslrootcert in \
             POSTGRES_CONNECTION_STRING): {cause}"
        )
    };
    match error {
        // Set-up failures (a certificate file that cannot be read, no TLS on the server).
        sqlx::Error::Tls(cause) => Some(tls_failure(cause)),
        // The handshake's verdict (a certificate that does not verify) arrives as I/O.
        sqlx::Error::Io(io) if let Some(cause) = handshake_failure(io) => Some(tls_failure(cause)),
        // SQLSTATE class 28: invalid authorization specification (unknown role, bad
        // password, no pg_hba.conf entry, e.g. for a connection without TLS).
        sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("28")) => Some(
            format!("PostgreSQL refused the login in POSTGRES_CONNECTION_STRING: {error}"),
        ),
        _ => None,
    }
}

fn handshake_failure(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether `error` means "the database cannot serve this now, retry later" rather than a
/// bug in a statement of ours: the one rule both processes answer database failures by
/// (iam-api with 503 and `Retry-After`).
///
/// That is: no connection to be had (pool exhausted or closed, connection refused or reset,
/// TLS failing, the peer hanging up mid-exchange), and these SQLSTATEs:
/// - class 08, connection exceptions;
/// - 57P01 `admin_shutdown`, 57P02 `crash_shutdown`, 57P03 `cannot_connect_now` (a server
///   stopping, crashed, or still starting: what a failover looks like from a connection);
/// - 25006 `read_only_sql_transaction`: a write reached a read-only server, a standby or an
///   old primary turned read-only during a switch-over (or `default_transaction_read_only`);
/// - class 53, insufficient resources (too many connections, disk full);
/// - what a new connection meets while the database is closed to us: 55000 ("not currently
///   accepting connections"), 3D000 (database gone), class 28 (login refused, e.g. during a
///   credential rotation).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Bytes that are not PostgreSQL's protocol: what a connection meets when the server,
        // or a proxy in front of one whose server is down, hangs up mid-exchange (sqlx reads
        // "unexpected response from SSLRequest: 0x00" from a proxy that closes at once).
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

fn is_unavailable_sqlstate(code: &str) -> bool {
    ["08", "57P", "53", "28"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "25006" | "55000" | "3D000")
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn settings(url: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: url.to_owned(),
            read_url: None,
            pool_size: 1,
        }
    }

    fn mode(url: &str) -> PgSslMode {
        connect_options(&settings(url))
            .expect("options")
            .get_ssl_mode()
    }

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        assert!(matches!(mode("postgres://u@db/iam"), PgSslMode::Prefer));
        for (value, expected) in [
            ("disable", PgSslMode::Disable),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
            ("verify-ca", PgSslMode::VerifyCa),
            ("verify-full", PgSslMode::VerifyFull),
        ] {
            let got = mode(&format!("postgres://u@db/iam?sslmode={value}"));
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&expected),
                "{value}"
            );
        }
        assert!(connect_options(&settings("postgres://u@db/iam?sslmode=sometimes")).is_err());
    }

    #[test]
    fn the_read_replica_is_read_by_the_same_rules() {
        let mut both = settings("postgres://u@db/iam");
        assert!(matches!(read_connect_options(&both), Ok(None)));
        both.read_url = Some("postgres://u@replica/iam?sslmode=require&sslrootcert=/ca.pem".into());
        let replica = read_connect_options(&both)
            .expect("valid")
            .expect("a replica");
        assert_eq!(replica.get_host(), "replica");
        assert!(matches!(replica.get_ssl_mode(), PgSslMode::VerifyCa));
        both.read_url = Some("postgres://u@replica/iam?sslmode=sometimes".into());
        let error = read_connect_options(&both).expect_err("invalid");
        assert!(
            error.starts_with("POSTGRES_READ_CONNECTION_STRING is invalid"),
            "{error}"
        );
    }

    #[test]
    fn require_with_a_named_root_certificate_verifies_the_chain() {
        assert!(matches!(
            mode("postgres://u@db/iam?sslmode=require&sslrootcert=/etc/ca.pem"),
            PgSslMode::VerifyCa
        ));
        // Other modes keep their meaning.
        assert!(matches!(
            mode("postgres://u@db/iam?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(
            mode("postgres://u@db/iam?sslmode=disable&sslrootcert=/etc/ca.pem"),
            PgSslMode::Disable
        ));
        assert!(has_root_certificate("postgres://db/iam?a=b&sslrootcert=x"));
        assert!(has_root_certificate("postgres://db/iam?ssl-ca=x"));
        assert!(!has_root_certificate(
            "postgres://db/iam?sslrootcertificate=x"
        ));
        assert!(!has_root_certificate("postgres://db/sslrootcert"));
    }

    #[test]
    fn only_tls_and_login_failures_are_lasting() {
        let tls = sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into());
        let message = lasting_failure(&tls).expect("lasting");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains("sslrootcert"), "{message}");
        let handshake = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let message = lasting_failure(&handshake).expect("lasting");
        assert!(
            message.contains("invalid peer certificate: UnknownIssuer"),
            "{message}"
        );
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(lasting_failure(&refused), None);
        assert_eq!(lasting_failure(&sqlx::Error::PoolTimedOut), None);
    }

    #[test]
    fn failover_and_outage_sqlstates_are_unavailable_and_query_errors_are_not() {
        for code in [
            "25006", "57P01", "57P02", "57P03", "08006", "08001", "53300", "28P01", "55000",
            "3D000",
        ] {
            assert!(is_unavailable_sqlstate(code), "{code}");
        }
        // Unique violation, syntax error, undefined table, serialization failure, a failed
        // transaction block: answers to our statements, not outages.
        for code in ["23505", "42601", "42P01", "40001", "25P02", "25000"] {
            assert!(!is_unavailable_sqlstate(code), "{code}");
        }
        let reset = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_unavailable(&reset));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x00".into()
        )));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }
}
