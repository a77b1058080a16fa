//! A sidecar in front of the echo upstream, against the real api and jwks: the stack the
//! sidecar tests share, and the stand-ins they put around a sidecar.

pub mod jwks_server;

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::access_token;
use crate::database::TestDatabase;
use crate::upstream::EchoUpstream;
use crate::{ServiceProcess, ServiceProcessBuilder};

/// The rules file of [`stack`]: `/health` public, writes to `/orders` need `orders:write`,
/// `/admin` needs `admin:all`.
pub const RULES: &str = r#"
[[rule]]
path = "/health"
public = true

[[rule]]
path = "/orders"
methods = ["POST", "DELETE"]
permissions = ["orders:write"]

[[rule]]
path = "/admin"
permissions = ["admin:all"]
"#;

/// The email of the user the stack logs in; its role `clerk` holds `orders:write`.
pub const CLERK_EMAIL: &str = "clerk@example.com";

/// api + jwks + upstream + sidecar (`PUBLIC_PATHS=/public, /docs`), with a user holding
/// `orders:write`.
#[derive(Debug)]
pub struct Stack {
    pub db: TestDatabase,
    pub api: ServiceProcess,
    pub jwks: ServiceProcess,
    pub upstream: EchoUpstream,
    pub sidecar: ServiceProcess,
    /// An access token of [`CLERK_EMAIL`].
    pub token: String,
    /// The user id of [`CLERK_EMAIL`].
    pub clerk_id: String,
    _rules_dir: TempDir,
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How often the sidecars of [`polling_stack`] poll the revocation feed.
pub const POLL_SECONDS: u64 = 1;
/// How long after a change such a sidecar may still accept an old token: the poll interval
/// plus a second (the contract), plus slack for a loaded CI machine.
pub const PROPAGATION_LIMIT: Duration = Duration::from_secs(POLL_SECONDS + 1 + 3);

/// The stack with [`RULES`], its sidecar polling the feed every [`POLL_SECONDS`].
pub async fn polling_stack() -> Stack {
    stack_with(|builder| builder.env("REVOCATION_REFRESH_INTERVAL", POLL_SECONDS.to_string())).await
}

/// The stack with [`RULES`].
pub async fn stack() -> Stack {
    stack_with(|builder| builder).await
}

/// The stack with [`RULES`] and the sidecar's builder adjusted by `configure`.
pub async fn stack_with(
    configure: impl FnOnce(ServiceProcessBuilder) -> ServiceProcessBuilder,
) -> Stack {
    stack_with_rules(RULES, configure).await
}

/// The stack with the given rules file and the sidecar's builder adjusted by `configure`.
pub async fn stack_with_rules(
    rules: &str,
    configure: impl FnOnce(ServiceProcessBuilder) -> ServiceProcessBuilder,
) -> Stack {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let upstream = EchoUpstream::start().await;
    let dir = TempDir::new("iam-sidecar");
    let rules_file = dir.0.join("rules.toml");
    std::fs::write(&rules_file, rules).expect("rules");
    let builder =
        ServiceProcess::sidecar_builder(&upstream.url, &jwks.url("/.well-known/jwks.json"))
            .env("SIDECAR_RULES_FILE", rules_file.to_str().expect("path"))
            .env("PUBLIC_PATHS", "/public, /docs");
    let sidecar = configure(builder).start().await;

    let admin = api.admin_token().await;
    api.post_json(
        "/api/v1/roles",
        Some(&admin),
        &json!({"name": "clerk", "permissions": ["orders:write"]}),
    )
    .await;
    let (clerk_id, _) = api.user_with_token(CLERK_EMAIL).await;
    api.send_json(
        reqwest::Method::PUT,
        &format!("/api/v1/users/{clerk_id}/role"),
        Some(&admin),
        &json!({"role": "clerk"}),
    )
    .await;
    let token = access_token(&api.login(CLERK_EMAIL, "user-password-1").await);
    Stack {
        db,
        api,
        jwks,
        upstream,
        sidecar,
        token,
        clerk_id,
        _rules_dir: dir,
    }
}

impl Stack {
    /// The session of `pair` has ended: its access token is refused at the api at once and
    /// at the sidecar within [`PROPAGATION_LIMIT`], and its refresh token is refused.
    pub async fn assert_session_ended(&self, pair: &Value) {
        let token = access_token(pair);
        assert_eq!(self.api.me_status(&token).await, 401, "api, at once");
        crate::eventually(
            PROPAGATION_LIMIT,
            "the sidecar refuses the token",
            || async { self.get("/x", Some(&token)).await.status() == 401 },
        )
        .await;
        let refused = self
            .api
            .refresh(&crate::api::string(&pair["refresh_token"]))
            .await;
        crate::api::expect_problem(refused, 401).await;
    }

    /// GET through the sidecar with an optional Bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.sidecar.get(path, token).await
    }

    /// How many requests the upstream has received.
    pub fn upstream_calls(&self) -> usize {
        self.upstream.requests().len()
    }

    /// A URL on the sidecar's admin port.
    pub fn admin_url(&self, path: &str) -> String {
        admin_url(&self.sidecar, path)
    }

    /// The sidecar's metrics text.
    pub async fn metrics(&self) -> String {
        metrics(&self.sidecar).await
    }
}

/// A URL on a sidecar's admin port.
pub fn admin_url(sidecar: &ServiceProcess, path: &str) -> String {
    sidecar.health_url.replace("/healthcheck", path)
}

/// A sidecar's metrics text.
pub async fn metrics(sidecar: &ServiceProcess) -> String {
    reqwest::get(admin_url(sidecar, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of an unlabelled or labelled series in a metrics text, e.g.
/// `iam_sidecar_jwks_refresh_failures_total` or `…{reason="expired"}`; 0 when absent.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// The JSON an [`EchoUpstream`] answered with.
pub fn echoed(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("the echo upstream answers JSON")
}

/// A raw upstream that accepts one protocol upgrade, checks that the request carried
/// `required` (lowercase `name: value` lines), and then echoes bytes back.
pub async fn upgrading_upstream(required: &'static [&'static str]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).await.expect("read");
            if read == 0 {
                return;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        let request = String::from_utf8_lossy(&request).to_lowercase();
        // A missing header drops the connection, so the client sees no 101.
        if !required
            .iter()
            .all(|line| request.contains(&format!("\r\n{line}\r\n")))
        {
            eprintln!("the upgrade request lacks one of {required:?}:\n{request}");
            return;
        }
        socket
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .expect("write");
        loop {
            let read = socket.read(&mut buffer).await.unwrap_or(0);
            if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    });
    format!("http://{address}")
}

/// Opens a WebSocket upgrade through the sidecar at `address` with `token`, the header
/// `Connection: {connection}` and the extra header lines `extra_headers` (each ending in
/// `\r\n`); checks that it is answered 101, then that bytes written come back (the
/// [`upgrading_upstream`] echoes them).
pub async fn upgrade_and_echo(address: &str, connection: &str, extra_headers: &str, token: &str) {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!(
        "GET /socket HTTP/1.1\r\nHost: {address}\r\nConnection: {connection}\r\n\
         Upgrade: websocket\r\n{extra_headers}\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .expect("response in time")
            .expect("read");
        assert!(read > 0, "closed before answering");
        response.extend_from_slice(&buffer[..read]);
    }
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    socket.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&echoed, b"ping");
}
