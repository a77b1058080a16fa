//! iam-jwks configuration, read once from the environment at start.

use std::time::Duration;

use iam_core::config::{
    CommonSettings, ConfigProblems, DatabaseSettings, Environment, ProcessConfig, Setting,
};
use serde::Deserialize;

/// The variables only iam-jwks reads, typed; each may be unset or invalid so that every
/// problem is reported at once.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OwnEnvironment {
    jwks_public_url: Setting<String>,
    api_public_url: Setting<String>,
}

/// Everything iam-jwks needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub common: CommonSettings,
    pub database: DatabaseSettings,
    /// `JWKS_REFRESH_INTERVAL`: how often the published key set is reloaded.
    pub refresh_interval: Duration,
    pub max_age: Duration,
    /// `JWT_ISSUER`, written into discovery.
    pub issuer: String,
    /// Base URL under which clients reach this process (for `jwks_uri`).
    pub jwks_public_url: String,
    /// Base URL under which clients reach iam-api (for `token_endpoint`).
    pub api_public_url: String,
}

impl ProcessConfig for JwksConfig {
    type Own = OwnEnvironment;

    fn build(env: Environment<OwnEnvironment>, problems: &mut ConfigProblems) -> Self {
        let common = env.shared.common(
            problems,
            env.profile,
            8001,
            iam_core::config::LogRequests::Failures,
        );
        // One connection for the key reloads, one for the revocation feed's checks, one for
        // the healthcheck.
        let database = env.shared.database(problems, env.profile, 3);
        let refresh_interval = env.shared.jwks_refresh_interval(problems);
        let max_age = env.shared.jwks_max_age(problems);
        let issuer = env.shared.issuer(problems);
        let jwks_public_url = public_url(
            problems,
            "JWKS_PUBLIC_URL",
            &env.own.jwks_public_url,
            &format!("http://{}:{}", common.host, common.port),
        );
        let api_public_url = public_url(
            problems,
            "API_PUBLIC_URL",
            &env.own.api_public_url,
            "http://127.0.0.1:8000",
        );
        JwksConfig {
            common,
            database,
            refresh_interval,
            max_age,
            issuer,
            jwks_public_url,
            api_public_url,
        }
    }
}

fn public_url(
    problems: &mut ConfigProblems,
    variable: &str,
    value: &Setting<String>,
    default: &str,
) -> String {
    let url = problems.take(variable, value, default.to_owned());
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.invalid(variable, "must be an http:// or https:// URL");
    }
    url.trim_end_matches('/').to_owned()
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use iam_core::config::{Profile, SharedEnvironment};

    #[test]
    fn local_runs_with_no_environment() {
        let config = JwksConfig::from_parts(Profile::Local, Default::default(), Default::default())
            .expect("ok");
        assert_eq!(config.common.port, 8001);
        assert_eq!(config.database.pool_size, 3);
        assert_eq!(config.jwks_public_url, "http://127.0.0.1:8001");
        assert_eq!(config.max_age, Duration::from_secs(60));
        assert_eq!(config.refresh_interval, Duration::from_secs(30));
    }

    #[test]
    fn prod_requires_the_database_and_reports_every_problem() {
        let shared = SharedEnvironment {
            jwks_refresh_interval: "0".into(),
            ..SharedEnvironment::default()
        };
        let own = OwnEnvironment {
            api_public_url: "iam.example.com".into(),
            ..OwnEnvironment::default()
        };
        let error = JwksConfig::from_parts(Profile::Prod, shared, own).expect_err("invalid");
        for variable in [
            "POSTGRES_CONNECTION_STRING",
            "JWKS_REFRESH_INTERVAL",
            "API_PUBLIC_URL",
        ] {
            assert!(error.contains(variable), "{variable} missing from {error}");
        }
    }
}
