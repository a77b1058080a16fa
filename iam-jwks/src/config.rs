//! iam-jwks configuration, read once from the environment at start.

use std::net::IpAddr;
use std::time::Duration;

use iam_core::config::{
    CommonSettings, ConfigProblems, DatabaseSettings, Environment, ProcessConfig, Profile, Setting,
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
        // Without JWKS_PUBLIC_URL, this process's own address; an unspecified bind address
        // (HOST=0.0.0.0, as the image sets) is no address to give clients: in local that
        // means this machine, elsewhere the URL must be set (refused below).
        let own_host = match (env.profile, is_unspecified_address(&common.host)) {
            (Profile::Local, true) => "127.0.0.1",
            _ => common.host.as_str(),
        };
        let jwks_public_url = public_url(
            problems,
            "JWKS_PUBLIC_URL",
            &env.own.jwks_public_url,
            &format!("http://{}:{}", bracketed(own_host), common.port),
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
    } else if is_unspecified_address(url_host(&url)) {
        problems.invalid(
            variable,
            format!(
                "{url} names the unspecified address, which no client can connect to; set \
                 {variable} to the URL clients use"
            ),
        );
    }
    url.trim_end_matches('/').to_owned()
}

/// The host of an http(s) URL, without brackets around an IPv6 address.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

/// `0.0.0.0` or `::` (in any spelling): a bind address meaning "every interface".
fn is_unspecified_address(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// `host` as a URL writes it: an IPv6 address in brackets.
fn bracketed(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use iam_core::config::SharedEnvironment;

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

    #[test]
    fn discovery_never_advertises_the_unspecified_address() {
        let own = |jwks: &str| OwnEnvironment {
            jwks_public_url: if jwks.is_empty() {
                Setting::Unset
            } else {
                jwks.into()
            },
            ..OwnEnvironment::default()
        };
        let bound_everywhere = |host: &str| SharedEnvironment {
            host: host.into(),
            postgres_connection_string: "postgres://db/iam".into(),
            ..SharedEnvironment::default()
        };
        // In local, HOST=0.0.0.0 (the image's) advertises this machine.
        let local = JwksConfig::from_parts(Profile::Local, bound_everywhere("0.0.0.0"), own(""))
            .expect("ok");
        assert_eq!(local.jwks_public_url, "http://127.0.0.1:8001");
        // Elsewhere the URL must be given.
        let error = JwksConfig::from_parts(Profile::Prod, bound_everywhere("::"), own(""))
            .expect_err("refused");
        assert!(error.contains("JWKS_PUBLIC_URL"), "{error}");
        for url in [
            "http://0.0.0.0:8001",
            "https://[::]/",
            "http://user@0.0.0.0",
        ] {
            let error = JwksConfig::from_parts(Profile::Local, Default::default(), own(url))
                .expect_err(url);
            assert!(error.contains("unspecified address"), "{url}: {error}");
        }
        let given = JwksConfig::from_parts(
            Profile::Prod,
            bound_everywhere("0.0.0.0"),
            own("https://keys.example.com/"),
        )
        .expect("ok");
        assert_eq!(given.jwks_public_url, "https://keys.example.com");
        assert_eq!(url_host("http://[::1]:8001/x"), "::1");
        assert_eq!(bracketed("::1"), "[::1]");
    }
}
