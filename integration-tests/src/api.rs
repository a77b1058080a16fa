//! The real binaries (`iam-api`, `iam-jwks`), started on a free port against a test database.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::database::TestDatabase;
use crate::{binary, free_port};

/// The admin every test service is bootstrapped with.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// The bootstrap admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// Binary, environment and arguments for one process.
#[derive(Debug, Clone)]
pub struct ServiceProcessBuilder {
    binary: &'static str,
    envs: Vec<(String, String)>,
    /// Variables whose values are bytes that need not be UTF-8 (set after `envs`).
    byte_envs: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    /// Where readiness is checked; `None` means `/api/v1/healthcheck` on `PORT`.
    health_url: Option<String>,
}

impl ServiceProcessBuilder {
    /// Sets (or overrides) an environment variable.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.envs.retain(|(existing, _)| existing != name);
        self.envs.push((name.to_owned(), value.into()));
        self
    }

    /// Sets an environment variable to bytes that need not be UTF-8.
    pub fn env_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.byte_envs.push((name.to_owned(), value.to_vec()));
        self
    }

    /// Removes an environment variable from the defaults.
    pub fn without_env(mut self, name: &str) -> Self {
        self.envs.retain(|(existing, _)| existing != name);
        self
    }

    /// Replaces the command-line arguments (default `--config=local --migrate=true`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(binary(self.binary));
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(self.envs.iter().map(|(name, value)| (name, value)));
        command.envs(self.byte_envs.iter().map(|(name, value)| {
            use std::os::unix::ffi::OsStrExt as _;
            (name, std::ffi::OsStr::from_bytes(value))
        }));
        command.args(&self.args);
        command
    }

    /// Runs the binary to completion (for commands and start-up failures).
    pub async fn run(&self, stdin: Option<&str>) -> std::process::Output {
        use tokio::io::AsyncWriteExt as _;
        let mut command = self.command();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the binary");
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(input) = stdin {
                pipe.write_all(input.as_bytes()).await.expect("write stdin");
            }
            drop(pipe);
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the binary finishes within 60 s")
            .expect("the binary's output")
    }

    /// Starts the server and waits until its healthcheck answers 200.
    pub async fn start(self) -> ServiceProcess {
        let mut process = self.spawn();
        process.wait_until_healthy().await;
        process
    }

    /// Starts the server without waiting for it.
    pub fn spawn(self) -> ServiceProcess {
        let port: u16 = self
            .envs
            .iter()
            .find(|(name, _)| name == "PORT")
            .and_then(|(_, value)| value.parse().ok())
            .expect("PORT is set");
        let log_dir = crate::target_dir().join("test-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log_path = log_dir.join(format!(
            "{}-{port}-{}.log",
            self.binary,
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command.spawn().expect("spawn the binary");
        ServiceProcess {
            child,
            binary: self.binary,
            base_url: format!("http://127.0.0.1:{port}"),
            health_url: self
                .health_url
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}/api/v1/healthcheck")),
            log_path,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }
}

/// A running `iam-api`, `iam-jwks` or `iam-sidecar`, killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    binary: &'static str,
    pub base_url: String,
    /// The readiness endpoint.
    pub health_url: String,
    pub log_path: PathBuf,
    pub client: reqwest::Client,
}

impl ServiceProcess {
    /// Defaults: local config with migrations, the test database, a free port, cheap password
    /// hashing (the cost is irrelevant to what these tests check) and a bootstrap admin.
    pub fn builder(database: &TestDatabase) -> ServiceProcessBuilder {
        Self::builder_with_url(&database.url)
    }

    /// [`Self::builder`] with the connection string `url` (a database of its own server).
    pub fn builder_with_url(url: &str) -> ServiceProcessBuilder {
        let port = free_port();
        ServiceProcessBuilder {
            binary: "iam-api",
            envs: vec![
                ("HOST".into(), "127.0.0.1".into()),
                ("PORT".into(), port.to_string()),
                ("POSTGRES_CONNECTION_STRING".into(), url.to_owned()),
                ("PASSWORD_HASH_MEMORY_KIB".into(), "1024".into()),
                ("PASSWORD_HASH_ITERATIONS".into(), "1".into()),
                ("BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
                ("BOOTSTRAP_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
                ("RUST_LOG".into(), "info".into()),
            ],
            byte_envs: Vec::new(),
            args: vec!["--config=local".into(), "--migrate=true".into()],
            health_url: None,
        }
    }

    /// Starts a server with the defaults.
    pub async fn start(database: &TestDatabase) -> Self {
        Self::builder(database).start().await
    }

    /// Defaults for `iam-jwks`: local config, the test database, a free port, quick reloads.
    pub fn jwks_builder(database: &TestDatabase) -> ServiceProcessBuilder {
        Self::jwks_builder_with_url(&database.url)
    }

    /// [`Self::jwks_builder`] with the connection string `url`.
    pub fn jwks_builder_with_url(url: &str) -> ServiceProcessBuilder {
        ServiceProcessBuilder {
            binary: "iam-jwks",
            envs: vec![
                ("HOST".into(), "127.0.0.1".into()),
                ("PORT".into(), free_port().to_string()),
                ("POSTGRES_CONNECTION_STRING".into(), url.to_owned()),
                ("JWKS_REFRESH_INTERVAL".into(), "1".into()),
                ("RUST_LOG".into(), "info".into()),
            ],
            byte_envs: Vec::new(),
            args: vec!["--config=local".into()],
            health_url: None,
        }
    }

    /// Defaults for `iam-sidecar` in front of `upstream_url`, verifying against `jwks_url`;
    /// readiness is checked on its admin port.
    pub fn sidecar_builder(upstream_url: &str, jwks_url: &str) -> ServiceProcessBuilder {
        let admin_port = free_port();
        ServiceProcessBuilder {
            binary: "iam-sidecar",
            envs: vec![
                ("HOST".into(), "127.0.0.1".into()),
                ("PORT".into(), free_port().to_string()),
                ("ADMIN_PORT".into(), admin_port.to_string()),
                ("UPSTREAM_URL".into(), upstream_url.to_owned()),
                ("JWKS_URL".into(), jwks_url.to_owned()),
                ("RUST_LOG".into(), "info".into()),
            ],
            byte_envs: Vec::new(),
            args: vec!["--config=local".into()],
            health_url: Some(format!("http://127.0.0.1:{admin_port}/healthcheck")),
        }
    }

    /// Waits until the healthcheck answers 200; panics with the log if it never does.
    pub async fn wait_until_healthy(&mut self) {
        if let Some(status) = self.wait_until_healthy_or_exit().await {
            panic!(
                "{} exited with {status} during start:\n{}",
                self.binary,
                self.logs()
            );
        }
    }

    /// Waits until the healthcheck answers 200 (`None`) or the process exits (its status);
    /// panics with the log if neither happens within 60 s.
    pub async fn wait_until_healthy_or_exit(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if let Ok(response) = self.client.get(&self.health_url).send().await
                && response.status() == 200
            {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become healthy within 60 s:\n{}",
                self.binary,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the healthcheck answers 200 right now.
    pub async fn is_healthy(&self) -> bool {
        matches!(self.client.get(&self.health_url).send().await, Ok(response) if response.status() == 200)
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("process is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the process exits in time")
            .expect("exit status")
    }

    /// GET with an optional Bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("GET")
    }

    /// DELETE with an optional Bearer token.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.delete(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("DELETE")
    }

    /// Sends a JSON body with `method` and an optional Bearer token.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    /// The status a JSON body sent with `method` and a Bearer token is answered with.
    pub async fn send_status(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> u16 {
        self.send_json(method, path, Some(token), body)
            .await
            .status()
            .as_u16()
    }

    /// POST a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    /// A self-registration (`POST /api/v1/users`, no token), answered however it is.
    pub async fn register_attempt(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_credentials("/api/v1/users", email, password)
            .await
    }

    /// Registers a user and returns its JSON.
    pub async fn register(&self, email: &str, password: &str) -> Value {
        let response = self.register_attempt(email, password).await;
        assert_eq!(response.status(), 201, "registration of {email}");
        response.json().await.expect("user json")
    }

    /// A password-grant login, answered however it is.
    pub async fn login_attempt(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_credentials("/api/v1/tokens", email, password)
            .await
    }

    /// POST `{"email", "password"}` to `path` without a token.
    async fn post_credentials(&self, path: &str, email: &str, password: &str) -> reqwest::Response {
        self.post_json(path, None, &json!({"email": email, "password": password}))
            .await
    }

    /// Logs in with the password grant and returns the token pair.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let response = self.login_attempt(email, password).await;
        assert_eq!(response.status(), 200, "login of {email}");
        response.json().await.expect("token pair")
    }

    /// Refreshes with the refresh grant and returns the answer, whatever it is.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/tokens",
            None,
            &json!({"grant_type": "refresh_token", "refresh_token": refresh_token}),
        )
        .await
    }

    /// The status `GET /api/v1/me` answers with this access token.
    pub async fn me_status(&self, token: &str) -> reqwest::StatusCode {
        self.get("/api/v1/me", Some(token)).await.status()
    }

    /// The `kid`s of the JWKS document this iam-jwks serves (which must answer 200).
    pub async fn published_kids(&self) -> Vec<String> {
        let response = self.get("/.well-known/jwks.json", None).await;
        assert_eq!(response.status(), 200, "/.well-known/jwks.json");
        let document: Value = response.json().await.expect("a JSON document");
        document["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|key| string(&key["kid"]))
            .collect()
    }

    /// An access token of the bootstrap admin.
    pub async fn admin_token(&self) -> String {
        access_token(&self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await)
    }

    /// `PUT /api/v1/users/{user_id}/role` with `role`, as the holder of `token`; answered
    /// however it is.
    pub async fn set_role(&self, token: &str, user_id: &str, role: &str) -> reqwest::Response {
        self.send_json(
            reqwest::Method::PUT,
            &format!("/api/v1/users/{user_id}/role"),
            Some(token),
            &json!({ "role": role }),
        )
        .await
    }

    /// Registers a user and returns its id and an access token.
    pub async fn user_with_token(&self, email: &str) -> (String, String) {
        let user = self.register(email, "user-password-1").await;
        let pair = self.login(email, "user-password-1").await;
        (string(&user["id"]), access_token(&pair))
    }
}

/// The access token of a token pair.
pub fn access_token(pair: &Value) -> String {
    string(&pair["access_token"])
}

/// The `kid` in an access token's header.
pub fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header_b64 = token.split('.').next().expect("header");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .expect("b64"),
    )
    .expect("json");
    string(&header["kid"])
}

/// The claims of a JWT, unverified.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json")
}

/// A JSON string value.
pub fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

/// Asserts that a response is an RFC 9457 problem with `status`, and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    // Every problem document of ours, the sidecar's main port included (it passes its
    // upstream's headers untouched, but not its own answers).
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .and_then(|value| value.to_str().ok()),
        Some("nosniff"),
        "a problem document without nosniff"
    );
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "problem lacks {member}: {body}");
    }
    body
}
