//! iam-sidecar configuration, read once from the environment at start. The rules file and
//! `PUBLIC_PATHS` are parsed here too, so a bad rule stops the process before it serves.

use std::time::Duration;

use iam_core::VerificationRules;
use iam_core::config::{CommonSettings, ConfigProblems, Environment, ProcessConfig, Setting};
use serde::Deserialize;

use crate::rules::{AccessPolicy, Rules, parse_public_paths};

/// The variables only iam-sidecar reads, typed; each may be unset or invalid so that every
/// problem is reported at once.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OwnEnvironment {
    admin_port: Setting<u16>,
    sidecar_mode: Setting<String>,
    upstream_url: Setting<String>,
    upstream_timeout: Setting<u64>,
    upstream_http2: Setting<bool>,
    jwks_url: Setting<String>,
    revocations_url: Setting<String>,
    revocation_refresh_interval: Setting<u64>,
    public_paths: Setting<String>,
    sidecar_rules_file: Setting<String>,
}

/// Everything iam-sidecar needs to know about its deployment.
#[derive(Debug)]
pub struct SidecarConfig {
    pub common: CommonSettings,
    pub admin_port: u16,
    /// `SIDECAR_MODE`: forward to the upstream, or answer another proxy's questions.
    pub mode: SidecarMode,
    /// Base URL of the protected service, without a trailing slash (empty in decision
    /// mode, where nothing is forwarded).
    pub upstream_url: String,
    pub upstream_timeout: Duration,
    /// `UPSTREAM_HTTP2`: speak HTTP/2 cleartext (prior knowledge) to the upstream, as gRPC
    /// services need; HTTP/1.1 otherwise.
    pub upstream_http2: bool,
    pub jwks_url: String,
    pub jwks_refresh_interval: Duration,
    /// `REVOCATIONS_URL`: the revocation feed (default: on `JWKS_URL`'s origin).
    pub revocations_url: String,
    /// `REVOCATION_REFRESH_INTERVAL`: how often the feed is polled.
    pub revocation_refresh_interval: Duration,
    /// `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_LEEWAY`.
    pub verification_rules: VerificationRules,
    pub policy: AccessPolicy,
    /// How many rules the rules file holds, for the start-up log.
    pub rule_count: usize,
}

/// What the sidecar does with a request it lets through (contract §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarMode {
    /// `proxy` (the default): forwards it to `UPSTREAM_URL`.
    Proxy,
    /// `decision`: answers 200 with the identity headers to the proxy that asked.
    Decision,
}

impl ProcessConfig for SidecarConfig {
    type Own = OwnEnvironment;

    fn build(env: Environment<OwnEnvironment>, problems: &mut ConfigProblems) -> Self {
        let mode = match &env.own.sidecar_mode {
            Setting::Unset => SidecarMode::Proxy,
            Setting::Value(mode) if mode == "proxy" => SidecarMode::Proxy,
            Setting::Value(mode) if mode == "decision" => SidecarMode::Decision,
            Setting::Value(_) | Setting::Invalid { .. } => {
                problems.invalid("SIDECAR_MODE", "must be proxy or decision");
                SidecarMode::Proxy
            }
        };
        let upstream_url = match &env.own.upstream_url {
            // Nothing is forwarded in decision mode; a URL set anyway would suggest it is.
            Setting::Value(_) if mode == SidecarMode::Decision => {
                problems.invalid(
                    "UPSTREAM_URL",
                    "must not be set with SIDECAR_MODE=decision (nothing is forwarded)",
                );
                String::new()
            }
            Setting::Unset if mode == SidecarMode::Decision => String::new(),
            Setting::Value(url) if url.starts_with("http://") => {
                url.trim_end_matches('/').to_owned()
            }
            Setting::Value(_) | Setting::Invalid { .. } => {
                problems.invalid(
                    "UPSTREAM_URL",
                    "must be an http:// URL of the service next to the sidecar",
                );
                String::new()
            }
            Setting::Unset => {
                problems.missing("UPSTREAM_URL", env.profile);
                String::new()
            }
        };
        let jwks_url = problems.take(
            "JWKS_URL",
            &env.own.jwks_url,
            "http://127.0.0.1:8001/.well-known/jwks.json".to_owned(),
        );
        if !(jwks_url.starts_with("http://") || jwks_url.starts_with("https://")) {
            problems.invalid("JWKS_URL", "must be an http:// or https:// URL");
        }
        let revocations_url = problems.take(
            "REVOCATIONS_URL",
            &env.own.revocations_url,
            format!(
                "{}{}",
                origin(&jwks_url),
                iam_core::revocation::feed::REVOCATIONS_PATH
            ),
        );
        if !(revocations_url.starts_with("http://") || revocations_url.starts_with("https://")) {
            problems.invalid("REVOCATIONS_URL", "must be an http:// or https:// URL");
        }
        let revocation_refresh_interval = problems.take(
            "REVOCATION_REFRESH_INTERVAL",
            &env.own.revocation_refresh_interval,
            5,
        );
        if revocation_refresh_interval == 0 {
            problems.invalid("REVOCATION_REFRESH_INTERVAL", "must be at least 1 second");
        }
        let common = env.shared.common(
            problems,
            env.profile,
            8080,
            iam_core::config::LogRequests::Failures,
        );
        let admin_port = problems.take("ADMIN_PORT", &env.own.admin_port, 8081);
        if admin_port == common.port && common.port != 0 {
            problems.invalid("ADMIN_PORT", "must differ from PORT");
        }
        let jwks_refresh_interval = env.shared.jwks_refresh_interval(problems);
        let timeout = problems.take("UPSTREAM_TIMEOUT", &env.own.upstream_timeout, 30);
        if timeout == 0 {
            problems.invalid("UPSTREAM_TIMEOUT", "must be at least 1 second");
        }
        let upstream_http2 = problems.take("UPSTREAM_HTTP2", &env.own.upstream_http2, false);
        if upstream_http2 && mode == SidecarMode::Decision {
            problems.invalid(
                "UPSTREAM_HTTP2",
                "must not be set with SIDECAR_MODE=decision (nothing is forwarded)",
            );
        }
        let verification_rules = env.shared.verification_rules(problems);
        let public_paths = problems.take("PUBLIC_PATHS", &env.own.public_paths, String::new());
        let public_paths = parse_public_paths(&public_paths).unwrap_or_else(|error| {
            problems.invalid("PUBLIC_PATHS", error);
            Vec::new()
        });
        let rules = match &env.own.sidecar_rules_file {
            Setting::Value(path) => {
                Rules::load(std::path::Path::new(path)).unwrap_or_else(|error| {
                    problems.invalid("SIDECAR_RULES_FILE", error);
                    Rules::default()
                })
            }
            Setting::Unset | Setting::Invalid { .. } => Rules::default(),
        };
        let rule_count = rules.len();
        SidecarConfig {
            common,
            admin_port,
            mode,
            upstream_url,
            upstream_timeout: Duration::from_secs(timeout.max(1)),
            upstream_http2,
            jwks_url,
            jwks_refresh_interval,
            revocations_url,
            revocation_refresh_interval: Duration::from_secs(revocation_refresh_interval.max(1)),
            verification_rules,
            policy: AccessPolicy::new(public_paths, rules),
            rule_count,
        }
    }
}

/// `scheme://authority` of an absolute URL: everything before the path.
fn origin(url: &str) -> &str {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url, |end| &url[..authority_start + end])
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use iam_core::config::{Profile, SharedEnvironment};

    #[test]
    fn the_upstream_is_required_even_in_local() {
        let error =
            SidecarConfig::from_parts(Profile::Local, Default::default(), Default::default())
                .expect_err("");
        assert!(error.contains("UPSTREAM_URL"), "{error}");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let own = OwnEnvironment {
            upstream_url: "http://127.0.0.1:9000/".into(),
            ..OwnEnvironment::default()
        };
        let config = SidecarConfig::from_parts(Profile::Local, SharedEnvironment::default(), own)
            .expect("valid");
        assert_eq!(config.common.port, 8080);
        assert_eq!(config.admin_port, 8081);
        assert_eq!(config.upstream_url, "http://127.0.0.1:9000");
        assert_eq!(
            config.jwks_url,
            "http://127.0.0.1:8001/.well-known/jwks.json"
        );
        assert_eq!(config.jwks_refresh_interval, Duration::from_secs(30));
        assert_eq!(
            config.revocations_url,
            "http://127.0.0.1:8001/api/v1/revocations"
        );
        assert_eq!(config.revocation_refresh_interval, Duration::from_secs(5));
        assert!(!config.upstream_http2);
    }

    #[test]
    fn upstream_http2_is_a_boolean_for_proxy_mode_only() {
        let own = |mode: &str, http2: &str| OwnEnvironment {
            sidecar_mode: mode.into(),
            upstream_url: if mode == "proxy" {
                "http://127.0.0.1:9000".into()
            } else {
                Setting::Unset
            },
            upstream_http2: http2.into(),
            ..OwnEnvironment::default()
        };
        let config = SidecarConfig::from_parts(
            Profile::Local,
            SharedEnvironment::default(),
            own("proxy", "true"),
        )
        .expect("valid");
        assert!(config.upstream_http2);
        for (mode, value) in [("proxy", "yes"), ("decision", "true")] {
            let error = SidecarConfig::from_parts(
                Profile::Local,
                SharedEnvironment::default(),
                own(mode, value),
            )
            .expect_err("invalid");
            assert!(error.contains("UPSTREAM_HTTP2"), "{error}");
        }
    }

    #[test]
    fn the_feed_defaults_to_the_jwks_origin() {
        assert_eq!(
            origin("https://keys.example:8443/a/jwks.json"),
            "https://keys.example:8443"
        );
        assert_eq!(origin("http://jwks?x=/y"), "http://jwks");
        assert_eq!(origin("http://jwks"), "http://jwks");
    }

    #[test]
    fn every_problem_is_named() {
        let own = OwnEnvironment {
            upstream_url: "ftp://x".into(),
            public_paths: "relative/path".into(),
            sidecar_rules_file: "/nonexistent/rules.toml".into(),
            revocations_url: "file:///feed".into(),
            revocation_refresh_interval: "0".into(),
            ..OwnEnvironment::default()
        };
        let shared = SharedEnvironment {
            jwks_refresh_interval: "0".into(),
            ..SharedEnvironment::default()
        };
        let error = SidecarConfig::from_parts(Profile::Prod, shared, own).expect_err("invalid");
        for variable in [
            "UPSTREAM_URL",
            "PUBLIC_PATHS",
            "SIDECAR_RULES_FILE",
            "JWKS_REFRESH_INTERVAL",
            "REVOCATIONS_URL",
            "REVOCATION_REFRESH_INTERVAL",
        ] {
            assert!(error.contains(variable), "{variable} missing from {error}");
        }
    }
}
