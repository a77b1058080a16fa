//! Test harness: a fresh PostgreSQL database per test, the real binaries on free ports, and
//! an HTTP client.
//!
//! PostgreSQL comes from `IAM_TEST_DATABASE_URL` when set, else the local server at
//! `postgres://localhost:5432`, else a testcontainers PostgreSQL where Docker runs. When none
//! answers, tests fail with a message saying how to get one; they never skip.

pub mod api;
pub mod clients;
pub mod database;
pub mod forge;
pub mod forwarder;
pub mod grpc;
pub mod nginx;
pub mod otlp;
pub mod pgbouncer;
pub mod private_postgres;
pub mod raw_http;
pub mod sidecar;
pub mod tls_postgres;
pub mod upstream;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use api::{ServiceProcess, ServiceProcessBuilder};
pub use database::TestDatabase;

/// The workspace's target directory for the profile the tests were built with.
fn target_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps/.
    let executable = std::env::current_exe().expect("the test executable has a path");
    executable
        .parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test executable sits in target/<profile>/deps")
}

/// The path of a workspace binary, built (once per test process) so it is never stale.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let profile_dir = target_dir();
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");
        let mut command = std::process::Command::new(cargo);
        command
            .args(["build", "--quiet", "--bins"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        // `cargo test` gives the test process the variables it gives a package's build
        // (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Build scripts that watch one of them
        // (ring's does) would see a change and rebuild here, and then again in the next
        // `cargo test`: a minute lost per test binary.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_a_package = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
                || matches!(
                    name.as_ref(),
                    "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
                );
            if set_for_a_package {
                command.env_remove(name.as_ref());
            }
        }
        if release {
            command.arg("--release");
        }
        match command.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("cargo build --bins failed with {status}")),
            Err(error) => Err(format!("cannot run cargo to build the binaries: {error}")),
        }
    });
    if let Err(why) = built {
        panic!("{why}");
    }
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} does not exist after building; run `cargo build --bins`",
        path.display()
    );
    path
}

/// Polls `condition` every 100 ms until it holds; fails naming `what` once `limit` passes.
/// Tests wait for background work with this, never with a fixed sleep.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `produce` every 100 ms until it yields a value and returns it; fails naming `what`
/// once `limit` passes.
pub async fn eventually_some<T, F, Fut>(limit: Duration, what: &str, mut produce: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = produce().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where [`free_port`] hands out ports: below Linux's ephemeral range (32768-60999), so no
/// `bind(0)` listener or outgoing connection of a parallel test can take a port between
/// the moment it is handed out and the moment the child process binds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago on 127.0.0.1 and that no other caller in this test
/// process has been given. Asking the kernel for port 0 is not enough: tests run in
/// parallel, and the kernel may hand the same port to two of them before either child
/// binds it; the loser then exits while its readiness check is answered by the winner.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // Test binaries run one after another, but start each at its own offset anyway.
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % span));
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + u16::try_from(offset).expect("offset below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free local port in {TEST_PORTS:?}");
}

/// The third-party verifier script (`interop/verify.mjs`, on the `jose` npm package), with
/// its dependencies installed from the committed lock file on first use.
pub fn interop_verifier() -> PathBuf {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let directory = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/interop"));
    let installed = INSTALLED.get_or_init(|| {
        if directory.join("node_modules/jose/package.json").exists() {
            return Ok(());
        }
        match std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&directory)
            .status()
        {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("npm ci in {} failed with {status}", directory.display())),
            Err(error) => Err(format!(
                "the interoperability test needs Node.js and npm (apt-get install nodejs npm): {error}"
            )),
        }
    });
    if let Err(why) = installed {
        panic!("{why}");
    }
    directory.join("verify.mjs")
}

/// The pinned schemathesis version the fuzz test runs.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The `st` command of schemathesis, installed from PyPI into a virtual environment under
/// the target directory on first use.
pub fn schemathesis() -> PathBuf {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    python_tool(&INSTALLED, "schemathesis", SCHEMATHESIS_VERSION, "st")
}

/// The pinned openapi-python-client version the generated-client test runs.
const OPENAPI_PYTHON_CLIENT_VERSION: &str = "0.29.1";

/// The virtual environment holding openapi-python-client (and httpx, attrs and dateutil,
/// which the clients it generates import), installed from PyPI on first use.
pub fn openapi_python_client_venv() -> PathBuf {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let command = python_tool(
        &INSTALLED,
        "openapi-python-client",
        OPENAPI_PYTHON_CLIENT_VERSION,
        "openapi-python-client",
    );
    command
        .parent()
        .and_then(|bin| bin.parent())
        .map(PathBuf::from)
        .expect("the command sits in <venv>/bin")
}

/// `command` of PyPI's `package` at `version`, in its own virtual environment under the
/// target directory, installed once.
fn python_tool(
    installed: &'static OnceLock<Result<PathBuf, String>>,
    package: &str,
    version: &str,
    command: &str,
) -> PathBuf {
    let installed = installed.get_or_init(|| {
        let venv = target_dir().join(format!("{package}-{version}"));
        let binary = venv.join("bin").join(command);
        if binary.exists() {
            return Ok(binary);
        }
        let run = |program: &std::path::Path, args: &[&str]| -> Result<(), String> {
            match std::process::Command::new(program).args(args).status() {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(format!("{} {args:?} failed with {status}", program.display())),
                Err(error) => Err(format!(
                    "{package} needs python3 with venv and pip (apt-get install python3-venv): {error}"
                )),
            }
        };
        let venv_arg = venv.to_string_lossy().into_owned();
        run(std::path::Path::new("python3"), &["-m", "venv", &venv_arg])?;
        let requirement = format!("{package}=={version}");
        run(&venv.join("bin/pip"), &["install", "--quiet", "--disable-pip-version-check", &requirement])?;
        Ok(binary)
    });
    match installed {
        Ok(binary) => binary.clone(),
        Err(why) => panic!("{why}"),
    }
}
