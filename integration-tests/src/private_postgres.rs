//! A PostgreSQL server of a test's own, on a private port: `initdb` into a temporary
//! directory (as the `postgres` user when the tests run as root, since the server refuses to
//! run as root), started and stopped with `pg_ctl`. A streaming standby of it is a
//! `pg_basebackup -R` copy, promoted with `pg_ctl promote`. Stopped and removed when dropped.
//!
//! For what the shared test server cannot show: TLS-only servers, failover, read replicas.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::free_port;
use crate::sidecar::TempDir;

/// One server's directory (its data directory is `data/` in it) and port.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: TempDir,
    bin_dir: PathBuf,
    run_as: Option<String>,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// The caller's `postgres` options, added to port and sockets at every start.
    extra_options: String,
}

impl PrivatePostgres {
    /// A new cluster (not started) with `hba` as its `pg_hba.conf`.
    pub fn init(prefix: &str, hba: &str) -> PrivatePostgres {
        let server = PrivatePostgres::empty(prefix);
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&server.data()),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.write(&server.data().join("pg_hba.conf"), hba.as_bytes());
        server
    }

    /// A streaming standby of `primary` (which must be running and accept replication
    /// connections from 127.0.0.1): a base backup with `standby.signal` and
    /// `primary_conninfo` written by `pg_basebackup -R`. Not started.
    pub fn standby_of(primary: &PrivatePostgres, prefix: &str) -> PrivatePostgres {
        let standby = PrivatePostgres::empty(prefix).with_options(&primary.extra_options);
        standby.run_client(
            primary,
            "pg_basebackup",
            &[
                "-D",
                path_str(&standby.data()),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        standby
    }

    fn empty(prefix: &str) -> PrivatePostgres {
        let dir = TempDir::new(prefix);
        let run_as = running_as_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            chown_tree(&dir.0, user);
        }
        set_mode(&dir.0, 0o700);
        PrivatePostgres {
            dir,
            bin_dir: postgres_bin_dir(),
            run_as,
            port: free_port(),
            extra_options: String::new(),
        }
    }

    /// Adds `options` (`-c name=value ...`) to the server's command line at every start.
    pub fn with_options(mut self, options: &str) -> PrivatePostgres {
        self.extra_options = options.to_owned();
        self
    }

    /// The server's own directory (for certificates and configuration files).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// Writes `contents` to `path` (in the server's directory), owned by the server's user.
    pub fn write(&self, path: &Path, contents: &[u8]) {
        std::fs::write(path, contents)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        if let Some(user) = &self.run_as {
            chown_tree(path, user);
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let log = self.dir.0.join("postgres.log");
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off {}",
            self.port,
            path_str(&self.dir.0),
            self.extra_options,
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-o",
                &options,
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server in `mode` (`fast`: sessions are terminated with 57P01;
    /// `immediate`: as if it crashed).
    pub fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &["-D", path_str(&self.data()), "-m", mode, "-w", "stop"],
        );
    }

    /// Promotes a standby and waits until it takes writes.
    pub fn promote(&self) {
        self.run(
            "pg_ctl",
            &["-D", path_str(&self.data()), "-w", "-t", "60", "promote"],
        );
    }

    /// A connection string to `database` as `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `statement` in `database` with `psql` (for set-up: databases, settings).
    pub fn psql(&self, database: &str, statement: &str) {
        self.run_client(
            self,
            "psql",
            &["-d", database, "-v", "ON_ERROR_STOP=1", "-c", statement],
        );
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("postgres.log")).unwrap_or_default()
    }

    /// `program` from PostgreSQL's directory, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        }
    }

    /// Runs client `program` (psql, pg_basebackup) connected to `server` as `postgres`, with
    /// `args` after the connection's.
    fn run_client(&self, server: &PrivatePostgres, program: &str, args: &[&str]) {
        let port = server.port.to_string();
        let connection = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        self.run(program, &[&connection[..], args].concat());
    }

    /// Runs `program` with `args` and panics, with its output and the server's log, if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.dir.0)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                path_str(&self.data()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

/// A primary that accepts replication from 127.0.0.1, and its streaming standby, both
/// running, with database `iam` created on the primary (and so on the standby).
#[derive(Debug)]
pub struct ReplicatedPostgres {
    pub primary: PrivatePostgres,
    pub standby: PrivatePostgres,
}

impl ReplicatedPostgres {
    /// Creates and starts both; returns once the standby has replayed database `iam`.
    pub async fn start() -> ReplicatedPostgres {
        let primary = PrivatePostgres::init(
            "iam-primary",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )
        .with_options("-c wal_level=replica -c max_wal_senders=4 -c hot_standby=on");
        primary.start();
        primary.psql("postgres", "CREATE DATABASE iam");
        let standby = PrivatePostgres::standby_of(&primary, "iam-standby");
        standby.start();
        let replicated = ReplicatedPostgres { primary, standby };
        let standby_url = replicated.standby.url("iam");
        crate::eventually(Duration::from_secs(30), "the standby answers", || {
            let url = standby_url.clone();
            async move { in_recovery(&url).await == Some(true) }
        })
        .await;
        replicated
    }
}

/// `pg_is_in_recovery()` of the server at `url`, or `None` when it does not answer.
pub async fn in_recovery(url: &str) -> Option<bool> {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.ok()?;
    let answer = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut connection)
        .await
        .ok();
    let _ = connection.close().await;
    answer
}

/// The directory of `initdb` and `pg_ctl`: `IAM_TEST_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/*/bin`, else what `pg_config --bindir` says.
fn postgres_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IAM_TEST_PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    installed.sort();
    if let Some((_, bin)) = installed.pop() {
        return bin;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!(
                "these tests start their own PostgreSQL and need its server programs \
                 (initdb, pg_ctl, pg_basebackup): install the postgresql server package \
                 (Debian: postgresql-15) or set IAM_TEST_PG_BIN_DIR to their directory"
            )
        })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn chown_tree(path: &Path, user: &str) {
    let status = Command::new("chown")
        .args(["-R", user])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(
        status.success(),
        "chown -R {user} {} failed",
        path.display()
    );
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `path` as text (temporary paths are ASCII).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
