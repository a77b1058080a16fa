//! iam-sidecar configuration, read once from the environment at start. The rules file and
//! `PUBLIC_PATHS` are parsed here too, so a bad rule stops the process before it serves.

use std::time::Duration;

use iam_core::config::{ConfigProblems, Profile, non_empty};
use iam_core::telemetry::LogFormat;
use serde::Deserialize;

use crate::rules::{AccessPolicy, Rules, parse_public_paths};

/// The raw environment, every variable optional, so that all problems are reported at once.
#[derive(Debug, Default, Deserialize)]
struct RawEnvironment {
    env: Option<String>,
    host: Option<String>,
    port: Option<String>,
    admin_port: Option<String>,
    worker_count: Option<String>,
    upstream_url: Option<String>,
    upstream_timeout: Option<String>,
    jwks_url: Option<String>,
    jwks_refresh_interval: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_leeway: Option<String>,
    public_paths: Option<String>,
    sidecar_rules_file: Option<String>,
    log_format: Option<String>,
}

/// Everything iam-sidecar needs to know about its deployment.
#[derive(Debug)]
pub struct SidecarConfig {
    pub env_label: String,
    pub host: String,
    pub port: u16,
    pub admin_port: u16,
    pub worker_count: usize,
    /// Base URL of the protected service, without a trailing slash.
    pub upstream_url: String,
    pub upstream_timeout: Duration,
    pub jwks_url: String,
    pub jwks_refresh_interval: Duration,
    pub issuer: String,
    pub audience: String,
    pub leeway_seconds: i64,
    pub policy: AccessPolicy,
    /// How many rules the rules file holds, for the start-up log.
    pub rule_count: usize,
    pub log_format: LogFormat,
}

impl SidecarConfig {
    /// Reads and validates the environment for `profile`; the error names every problem.
    pub fn from_env(profile: Profile) -> Result<Self, String> {
        let raw: RawEnvironment = envy::from_env().map_err(|error| error.to_string())?;
        Self::from_raw(profile, raw)
    }

    fn from_raw(profile: Profile, raw: RawEnvironment) -> Result<Self, String> {
        let mut problems = ConfigProblems::default();
        let upstream_url = match non_empty(raw.upstream_url) {
            Some(url) if url.starts_with("http://") => url.trim_end_matches('/').to_owned(),
            Some(_) => {
                problems.invalid(
                    "UPSTREAM_URL",
                    "must be an http:// URL of the service next to the sidecar",
                );
                String::new()
            }
            None => {
                problems.missing("UPSTREAM_URL", profile);
                String::new()
            }
        };
        let jwks_url = non_empty(raw.jwks_url)
            .unwrap_or_else(|| "http://127.0.0.1:8001/.well-known/jwks.json".to_owned());
        if !(jwks_url.starts_with("http://") || jwks_url.starts_with("https://")) {
            problems.invalid("JWKS_URL", "must be an http:// or https:// URL");
        }
        let port: u16 = problems.parse_or("PORT", raw.port.as_deref(), 8080);
        let admin_port: u16 = problems.parse_or("ADMIN_PORT", raw.admin_port.as_deref(), 8081);
        if admin_port == port && port != 0 {
            problems.invalid("ADMIN_PORT", "must differ from PORT");
        }
        let worker_count = problems.worker_count(raw.worker_count.as_deref());
        let refresh: u64 = problems.parse_or(
            "JWKS_REFRESH_INTERVAL",
            raw.jwks_refresh_interval.as_deref(),
            30,
        );
        if refresh == 0 {
            problems.invalid("JWKS_REFRESH_INTERVAL", "must be at least 1 second");
        }
        let timeout: u64 =
            problems.parse_or("UPSTREAM_TIMEOUT", raw.upstream_timeout.as_deref(), 30);
        if timeout == 0 {
            problems.invalid("UPSTREAM_TIMEOUT", "must be at least 1 second");
        }
        let leeway: i64 = problems.parse_or("JWT_LEEWAY", raw.jwt_leeway.as_deref(), 30);
        if !(0..=86_400).contains(&leeway) {
            problems.invalid("JWT_LEEWAY", "must be between 0 and 86400 seconds");
        }
        let public_paths = parse_public_paths(raw.public_paths.as_deref().unwrap_or(""))
            .unwrap_or_else(|error| {
                problems.invalid("PUBLIC_PATHS", error);
                Vec::new()
            });
        let rules = match non_empty(raw.sidecar_rules_file) {
            Some(path) => Rules::load(std::path::Path::new(&path)).unwrap_or_else(|error| {
                problems.invalid("SIDECAR_RULES_FILE", error);
                Rules::default()
            }),
            None => Rules::default(),
        };
        let log_format = problems.log_format(raw.log_format.as_deref(), profile);
        problems.into_result()?;
        let rule_count = rules.len();
        Ok(SidecarConfig {
            env_label: non_empty(raw.env).unwrap_or_else(|| "DEFAULT".to_owned()),
            host: non_empty(raw.host).unwrap_or_else(|| "127.0.0.1".to_owned()),
            port,
            admin_port,
            worker_count,
            upstream_url,
            upstream_timeout: Duration::from_secs(timeout.max(1)),
            jwks_url,
            jwks_refresh_interval: Duration::from_secs(refresh.max(1)),
            issuer: non_empty(raw.jwt_issuer).unwrap_or_else(|| "iam".to_owned()),
            audience: non_empty(raw.jwt_audience).unwrap_or_else(|| "iam".to_owned()),
            leeway_seconds: leeway,
            policy: AccessPolicy::new(public_paths, rules),
            rule_count,
            log_format,
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_required_even_in_local() {
        let error =
            SidecarConfig::from_raw(Profile::Local, RawEnvironment::default()).expect_err("");
        assert!(error.contains("UPSTREAM_URL"), "{error}");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let raw = RawEnvironment {
            upstream_url: Some("http://127.0.0.1:9000/".into()),
            ..RawEnvironment::default()
        };
        let config = SidecarConfig::from_raw(Profile::Local, raw).expect("valid");
        assert_eq!(config.port, 8080);
        assert_eq!(config.admin_port, 8081);
        assert_eq!(config.upstream_url, "http://127.0.0.1:9000");
        assert_eq!(
            config.jwks_url,
            "http://127.0.0.1:8001/.well-known/jwks.json"
        );
        assert_eq!(config.jwks_refresh_interval, Duration::from_secs(30));
    }

    #[test]
    fn every_problem_is_named() {
        let raw = RawEnvironment {
            upstream_url: Some("ftp://x".into()),
            public_paths: Some("relative/path".into()),
            sidecar_rules_file: Some("/nonexistent/rules.toml".into()),
            jwks_refresh_interval: Some("0".into()),
            ..RawEnvironment::default()
        };
        let error = SidecarConfig::from_raw(Profile::Prod, raw).expect_err("invalid");
        for variable in [
            "UPSTREAM_URL",
            "PUBLIC_PATHS",
            "SIDECAR_RULES_FILE",
            "JWKS_REFRESH_INTERVAL",
        ] {
            assert!(error.contains(variable), "{variable} missing from {error}");
        }
    }
}
