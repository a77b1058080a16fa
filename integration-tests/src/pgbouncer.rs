//! PgBouncer in front of the tests' PostgreSQL: a private port, its configuration and log in
//! a temporary directory, run as the `postgres` user when the tests run as root (it refuses
//! to run as root). Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::free_port;
use crate::sidecar::TempDir;

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    dir: TempDir,
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

/// PgBouncer's version (`major`, `minor`) as `pgbouncer --version` reports it.
pub fn version() -> (u32, u32) {
    let output = Command::new("pgbouncer")
        .arg("--version")
        .output()
        .unwrap_or_else(|error| {
            panic!("the PgBouncer test needs pgbouncer (apt-get install pgbouncer): {error}")
        });
    let text = String::from_utf8_lossy(&output.stdout);
    let number = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected pgbouncer --version: {text}"));
    let mut parts = number
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl PgBouncer {
    /// Starts PgBouncer in `pool_mode` in front of the server of `server_url` (any database
    /// name is passed through), with `settings` (lines of its `[pgbouncer]` section) added,
    /// and waits until it accepts connections.
    pub async fn start(server_url: &str, pool_mode: &str, settings: &str) -> PgBouncer {
        let url: reqwest::Url = server_url.parse().expect("a server URL");
        let host = url.host_str().unwrap_or("127.0.0.1");
        let server_port = url.port().unwrap_or(5432);
        let user = match url.username() {
            "" => "postgres",
            user => user,
        };
        let password = url.password().unwrap_or("");
        let dir = TempDir::new("iam-pgbouncer");
        let port = free_port();
        let config = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {pool_mode}\n\
             default_pool_size = 4\nmax_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             ignore_startup_parameters = extra_float_digits\n{settings}\n",
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
            command.args(["-u", "postgres", "--", "pgbouncer"]);
            command
        } else {
            Command::new("pgbouncer")
        };
        let child = command
            .arg(dir.0.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = PgBouncer { dir, child, port };
        crate::eventually(Duration::from_secs(10), "PgBouncer listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        bouncer
    }

    /// `server_url` with its host and port replaced by PgBouncer's.
    pub fn url(&self, server_url: &str) -> String {
        let mut url: reqwest::Url = server_url.parse().expect("a server URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.port)).expect("port");
        url.to_string()
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
