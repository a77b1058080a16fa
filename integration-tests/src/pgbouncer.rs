//! PgBouncer in front of the tests' PostgreSQL: a private port, its configuration and log in
//! a temporary directory, run as the `postgres` user when the tests run as root (it refuses
//! to run as root). Stopped when dropped.
//!
//! Two binaries: the distribution's (`pgbouncer` on PATH; 1.18 on Debian 12, session mode
//! only for us) and one of 1.21 or later for transaction mode ([`tracking_prepared_statements`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Column as _, Connection as _, Row as _};

use crate::free_port;
use crate::sidecar::TempDir;

/// Where `.ci/pgbouncer-trixie` installs Debian 13's PgBouncer (with the loader and libc it
/// needs on Debian 12).
pub const INSTALLED_BY_CI: &str = "/opt/iam-ci/pgbouncer-trixie/bin/pgbouncer";

/// The first PgBouncer that tracks protocol-level prepared statements
/// (`max_prepared_statements`), which transaction pooling needs for sqlx's statements.
pub const TRACKS_PREPARED_STATEMENTS: (u32, u32) = (1, 21);

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    dir: TempDir,
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The user it lets in (also its admin), and that user's password.
    user: String,
    password: String,
}

/// The distribution's PgBouncer: `pgbouncer` on PATH.
pub fn distribution() -> PathBuf {
    PathBuf::from("pgbouncer")
}

/// A PgBouncer of 1.21 or later: `IAM_TEST_PGBOUNCER` when set, else the one
/// `.ci/pgbouncer-trixie` installs, else the distribution's when it is recent enough. Fails,
/// saying how to get one, when there is none: the transaction-mode test never skips.
pub fn tracking_prepared_statements() -> PathBuf {
    if let Some(chosen) = std::env::var_os("IAM_TEST_PGBOUNCER") {
        let chosen = PathBuf::from(chosen);
        let found = version(&chosen);
        assert!(
            found.is_some_and(|found| found >= TRACKS_PREPARED_STATEMENTS),
            "IAM_TEST_PGBOUNCER={} is {}; transaction mode needs PgBouncer 1.21 or later",
            chosen.display(),
            describe(found)
        );
        return chosen;
    }
    let candidates = [PathBuf::from(INSTALLED_BY_CI), distribution()];
    let mut seen = Vec::new();
    for candidate in candidates {
        let found = version(&candidate);
        if found.is_some_and(|found| found >= TRACKS_PREPARED_STATEMENTS) {
            return candidate;
        }
        seen.push(format!("{}: {}", candidate.display(), describe(found)));
    }
    panic!(
        "the transaction-mode PgBouncer test needs PgBouncer 1.21 or later (Debian 12 ships \
         1.18); run `.ci/pgbouncer-trixie` as root (it installs Debian 13's into {INSTALLED_BY_CI}) \
         or set IAM_TEST_PGBOUNCER to such a binary. Found: {}",
        seen.join(", ")
    );
}

/// What a failure message says of a binary whose version is `found`.
fn describe(found: Option<(u32, u32)>) -> String {
    match found {
        Some((major, minor)) => format!("PgBouncer {major}.{minor}"),
        None => "not there or does not run".to_owned(),
    }
}

/// The version (`major`, `minor`) `binary --version` reports; `None` when it does not run.
pub fn version(binary: &Path) -> Option<(u32, u32)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let number = text
        .lines()
        .next()?
        .strip_prefix("PgBouncer ")?
        .trim()
        .to_owned();
    let mut parts = number.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

impl PgBouncer {
    /// Starts `binary` in `pool_mode` in front of the server of `server_url` (any database
    /// name is passed through), with `settings` (lines of its `[pgbouncer]` section) added,
    /// and waits until it accepts connections.
    pub async fn start(
        binary: &Path,
        server_url: &str,
        pool_mode: &str,
        settings: &str,
    ) -> PgBouncer {
        let url: reqwest::Url = server_url.parse().expect("a server URL");
        let host = url.host_str().unwrap_or("127.0.0.1");
        let server_port = url.port().unwrap_or(5432);
        let user = match url.username() {
            "" => "postgres",
            user => user,
        }
        .to_owned();
        let password = url.password().unwrap_or("").to_owned();
        let dir = TempDir::new("iam-pgbouncer");
        let port = free_port();
        // Nothing beyond what PgBouncer needs to run here: no `ignore_startup_parameters`,
        // so a startup parameter our connections send that PgBouncer rejects fails the test.
        let config = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\nadmin_users = {user}\n\
             pool_mode = {pool_mode}\nmax_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n{settings}\n",
            dir = dir.0.display(),
        );
        std::fs::write(dir.0.join("pgbouncer.ini"), config).expect("pgbouncer.ini");
        std::fs::write(
            dir.0.join("users.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .expect("users.txt");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
        let mut command = if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir.0)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PgBouncer directory");
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        let mut child = command
            .arg(dir.0.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        let log = dir.0.join("pgbouncer.log");
        crate::eventually(Duration::from_secs(10), "PgBouncer listens", || {
            // One that refuses its configuration exits at once, saying why in its log.
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited with {status}:\n{}",
                    binary.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            }
        })
        .await;
        PgBouncer {
            dir,
            child,
            port,
            user,
            password,
        }
    }

    /// `server_url` with its host and port replaced by PgBouncer's.
    pub fn url(&self, server_url: &str) -> String {
        let mut url: reqwest::Url = server_url.parse().expect("a server URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
    }

    /// The rows `SHOW {what}` answers on PgBouncer's admin console (SERVERS, CLIENTS,
    /// STATS, ...), each a map from column name to the value as text ("" for NULL).
    pub async fn show(&self, what: &str) -> Vec<HashMap<String, String>> {
        // The admin console is not PostgreSQL: simple queries only, and none of sqlx's
        // optional startup parameters.
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database("pgbouncer")
            .extra_float_digits(None);
        let mut console = sqlx::PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|error| panic!("PgBouncer's admin console: {error}\n{}", self.log()));
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SHOW {what}")))
            .fetch_all(&mut console)
            .await
            .unwrap_or_else(|error| panic!("SHOW {what}: {error}"));
        let _ = console.close().await;
        rows.iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|column| {
                        let raw = row.try_get_raw(column.ordinal()).expect("a column");
                        let text = raw.as_str().unwrap_or_default().to_owned();
                        (column.name().to_owned(), text)
                    })
                    .collect()
            })
            .collect()
    }

    /// What PgBouncer logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // The child may be `runuser`, which does not pass SIGKILL on: stop PgBouncer itself.
        if let Ok(pid) = std::fs::read_to_string(self.dir.0.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
