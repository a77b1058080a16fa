//! iam-jwks configuration, read once from the environment at start.

use std::time::Duration;

use iam_core::config::{ConfigProblems, Profile, non_empty};
use iam_core::telemetry::LogFormat;
use serde::Deserialize;

/// The raw environment, every variable optional, so that all problems are reported at once.
#[derive(Debug, Default, Deserialize)]
struct RawEnvironment {
    env: Option<String>,
    host: Option<String>,
    port: Option<String>,
    postgres_connection_string: Option<String>,
    postgres_pool_size: Option<String>,
    worker_count: Option<String>,
    jwks_refresh_interval: Option<String>,
    jwks_max_age: Option<String>,
    jwt_issuer: Option<String>,
    jwks_public_url: Option<String>,
    api_public_url: Option<String>,
    log_format: Option<String>,
}

/// Everything iam-jwks needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub env_label: String,
    pub host: String,
    pub port: u16,
    pub database_url: String,
    pub pool_size: u32,
    pub worker_count: usize,
    pub refresh_interval: Duration,
    pub max_age: Duration,
    pub issuer: String,
    /// Base URL under which clients reach this process (for `jwks_uri`).
    pub jwks_public_url: String,
    /// Base URL under which clients reach iam-api (for `token_endpoint`).
    pub api_public_url: String,
    pub log_format: LogFormat,
}

impl JwksConfig {
    /// Reads and validates the environment for `profile`; the error names every problem.
    pub fn from_env(profile: Profile) -> Result<Self, String> {
        let raw: RawEnvironment = envy::from_env().map_err(|error| error.to_string())?;
        Self::from_raw(profile, raw)
    }

    fn from_raw(profile: Profile, raw: RawEnvironment) -> Result<Self, String> {
        let mut problems = ConfigProblems::default();
        let database_url = problems.database_url(raw.postgres_connection_string, profile);
        let host = non_empty(raw.host).unwrap_or_else(|| "127.0.0.1".to_owned());
        let port: u16 = problems.parse_or("PORT", raw.port.as_deref(), 8001);
        let worker_count = problems.worker_count(raw.worker_count.as_deref());
        // The process needs one connection at a time; a second covers the healthcheck.
        let pool_size: u32 =
            problems.parse_or("POSTGRES_POOL_SIZE", raw.postgres_pool_size.as_deref(), 2);
        if pool_size == 0 {
            problems.invalid("POSTGRES_POOL_SIZE", "must be at least 1");
        }
        let refresh: u64 = problems.parse_or(
            "JWKS_REFRESH_INTERVAL",
            raw.jwks_refresh_interval.as_deref(),
            30,
        );
        if refresh == 0 {
            problems.invalid("JWKS_REFRESH_INTERVAL", "must be at least 1 second");
        }
        let max_age: u64 = problems.parse_or("JWKS_MAX_AGE", raw.jwks_max_age.as_deref(), 60);
        let log_format = problems.log_format(raw.log_format.as_deref(), profile);
        let jwks_public_url = public_url(
            &mut problems,
            "JWKS_PUBLIC_URL",
            raw.jwks_public_url,
            &format!("http://{host}:{port}"),
        );
        let api_public_url = public_url(
            &mut problems,
            "API_PUBLIC_URL",
            raw.api_public_url,
            "http://127.0.0.1:8000",
        );
        problems.into_result()?;
        Ok(JwksConfig {
            env_label: non_empty(raw.env).unwrap_or_else(|| "DEFAULT".to_owned()),
            host,
            port,
            database_url,
            pool_size,
            worker_count,
            refresh_interval: Duration::from_secs(refresh.max(1)),
            max_age: Duration::from_secs(max_age),
            issuer: non_empty(raw.jwt_issuer).unwrap_or_else(|| "iam".to_owned()),
            jwks_public_url,
            api_public_url,
            log_format,
        })
    }
}

fn public_url(
    problems: &mut ConfigProblems,
    variable: &str,
    value: Option<String>,
    default: &str,
) -> String {
    let url = non_empty(value).unwrap_or_else(|| default.to_owned());
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.invalid(variable, "must be an http:// or https:// URL");
    }
    url.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_runs_with_no_environment() {
        let config = JwksConfig::from_raw(Profile::Local, RawEnvironment::default()).expect("ok");
        assert_eq!(config.port, 8001);
        assert_eq!(config.jwks_public_url, "http://127.0.0.1:8001");
        assert_eq!(config.max_age, Duration::from_secs(60));
    }

    #[test]
    fn prod_requires_the_database_and_reports_every_problem() {
        let raw = RawEnvironment {
            jwks_refresh_interval: Some("0".into()),
            api_public_url: Some("iam.example.com".into()),
            ..RawEnvironment::default()
        };
        let error = JwksConfig::from_raw(Profile::Prod, raw).expect_err("invalid");
        for variable in [
            "POSTGRES_CONNECTION_STRING",
            "JWKS_REFRESH_INTERVAL",
            "API_PUBLIC_URL",
        ] {
            assert!(error.contains(variable), "{variable} missing from {error}");
        }
    }
}
