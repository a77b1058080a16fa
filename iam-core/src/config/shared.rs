//! The variables more than one process reads, declared once: each process's own config reads
//! them through [`SharedEnvironment`] and keeps the parts it uses.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::environment::{read_environment, unreadable_variables_read};
use super::{
    ConfigProblems, LogFormat, LogRequests, Profile, Setting, available_cpus,
    normalize_postgres_url,
};
use crate::token::VerificationRules;

/// Largest accepted `JWT_LEEWAY`: a day of clock skew is already far beyond any real clock.
pub const MAX_LEEWAY_SECONDS: i64 = 86_400;

/// Largest accepted `SHUTDOWN_DELAY`: a load balancer that needs longer than five minutes to
/// stop sending is misconfigured.
pub const MAX_SHUTDOWN_DELAY_SECONDS: u64 = 300;

/// The shared variables as envy reads them, typed; nothing is reported until a process asks
/// for the part it uses, so a variable a process ignores never stops it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SharedEnvironment {
    pub env: Setting<String>,
    pub host: Setting<String>,
    pub port: Setting<u16>,
    pub worker_count: Setting<usize>,
    pub log_format: Setting<LogFormat>,
    pub log_requests: Setting<LogRequests>,
    pub shutdown_delay: Setting<u64>,
    pub postgres_connection_string: Setting<String>,
    pub postgres_read_connection_string: Setting<String>,
    pub postgres_pool_size: Setting<u32>,
    pub jwt_issuer: Setting<String>,
    pub jwt_audience: Setting<String>,
    pub jwt_leeway: Setting<i64>,
    pub jwks_refresh_interval: Setting<u64>,
    pub jwks_max_age: Setting<u64>,
}

/// What every process reads the same way: `--config`, `ENV`, `HOST`, `PORT`, `WORKER_COUNT`,
/// `LOG_FORMAT` and `SHUTDOWN_DELAY`.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub profile: Profile,
    /// `ENV`: the environment label reported by healthchecks, logs and traces.
    pub env_label: String,
    pub host: String,
    pub port: u16,
    /// Async runtime worker threads, at least one.
    pub worker_count: usize,
    pub log_format: LogFormat,
    /// `LOG_REQUESTS`: which requests are logged at `info`.
    pub log_requests: LogRequests,
    /// `SHUTDOWN_DELAY`: how long the process drains after its stop signal.
    pub shutdown_delay: Duration,
}

/// `POSTGRES_CONNECTION_STRING`, `POSTGRES_READ_CONNECTION_STRING` and `POSTGRES_POOL_SIZE`
/// (iam-api and iam-jwks).
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The connection string, normalised to a URL sqlx understands.
    pub url: String,
    /// A read replica's connection string, normalised, for reads where replication lag is
    /// harmless; `None`: those read the primary too.
    pub read_url: Option<String>,
    /// Connections in each pool (the primary's, the replica's), at least one.
    pub pool_size: u32,
}

/// What a process's configuration is built from: the profile and both sets of variables.
#[derive(Debug, Clone)]
pub struct Environment<Own> {
    pub profile: Profile,
    pub shared: SharedEnvironment,
    /// The variables only this process reads.
    pub own: Own,
}

/// A process's one configuration struct, built from the shared variables and its own.
pub trait ProcessConfig: Sized {
    /// The variables only this process reads, as envy deserialises them.
    type Own: DeserializeOwned;

    /// Builds the configuration, recording every missing or invalid variable in `problems`
    /// (a value built while problems were recorded is discarded).
    fn build(env: Environment<Self::Own>, problems: &mut ConfigProblems) -> Self;

    /// Reads the environment once for `profile`; the error names every problem in one line.
    /// A variable this process reads whose value is not UTF-8 is refused by name; one it
    /// does not read is ignored, as any other.
    fn from_env(profile: Profile) -> Result<Self, String> {
        let (readable, unreadable) = read_environment(std::env::vars_os());
        let not_utf8 = [
            unreadable_variables_read::<SharedEnvironment>(&unreadable),
            unreadable_variables_read::<Self::Own>(&unreadable),
        ];
        if not_utf8.iter().any(Option::is_some) {
            return Err(not_utf8
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "));
        }
        let shared =
            envy::from_iter(readable.iter().cloned()).map_err(|error| error.to_string())?;
        let own = envy::from_iter(readable).map_err(|error| error.to_string())?;
        Self::from_parts(profile, shared, own)
    }

    /// [`ProcessConfig::build`], then the one-line error if anything was recorded.
    fn from_parts(
        profile: Profile,
        shared: SharedEnvironment,
        own: Self::Own,
    ) -> Result<Self, String> {
        let mut problems = ConfigProblems::default();
        let config = Self::build(
            Environment {
                profile,
                shared,
                own,
            },
            &mut problems,
        );
        problems.into_result().map(|()| config)
    }
}

impl SharedEnvironment {
    /// `ENV`, `HOST`, `PORT` (`default_port` when unset), `WORKER_COUNT`, `LOG_FORMAT`
    /// (`text` in local, `json` in stage and prod), `LOG_REQUESTS` (`default_log_requests`
    /// when unset) and `SHUTDOWN_DELAY`.
    pub fn common(
        &self,
        problems: &mut ConfigProblems,
        profile: Profile,
        default_port: u16,
        default_log_requests: LogRequests,
    ) -> CommonSettings {
        let worker_count = problems.take("WORKER_COUNT", &self.worker_count, available_cpus());
        if worker_count == 0 {
            problems.invalid("WORKER_COUNT", "must be at least 1");
        }
        let default_log_format = if profile.requires_explicit_settings() {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
        // Kubernetes takes a few seconds to stop routing to a terminating pod.
        let default_delay = if profile.requires_explicit_settings() {
            5
        } else {
            0
        };
        let shutdown_delay = problems.take("SHUTDOWN_DELAY", &self.shutdown_delay, default_delay);
        if shutdown_delay > MAX_SHUTDOWN_DELAY_SECONDS {
            problems.invalid(
                "SHUTDOWN_DELAY",
                format!("must be at most {MAX_SHUTDOWN_DELAY_SECONDS} seconds"),
            );
        }
        CommonSettings {
            profile,
            env_label: problems.take("ENV", &self.env, "DEFAULT".to_owned()),
            host: problems.take("HOST", &self.host, "127.0.0.1".to_owned()),
            port: problems.take("PORT", &self.port, default_port),
            worker_count: worker_count.max(1),
            log_format: problems.take("LOG_FORMAT", &self.log_format, default_log_format),
            log_requests: problems.take("LOG_REQUESTS", &self.log_requests, default_log_requests),
            shutdown_delay: Duration::from_secs(shutdown_delay.min(MAX_SHUTDOWN_DELAY_SECONDS)),
        }
    }

    /// `POSTGRES_CONNECTION_STRING` (required by stage and prod, the local database
    /// otherwise) and `POSTGRES_POOL_SIZE` (`default_pool_size` when unset).
    pub fn database(
        &self,
        problems: &mut ConfigProblems,
        profile: Profile,
        default_pool_size: u32,
    ) -> DatabaseSettings {
        let url = match &self.postgres_connection_string {
            Setting::Value(url) => normalize_postgres_url(url).unwrap_or_else(|why| {
                problems.invalid("POSTGRES_CONNECTION_STRING", why);
                String::new()
            }),
            // A string always parses; blank reads as unset.
            Setting::Unset | Setting::Invalid { .. } => {
                if profile.requires_explicit_settings() {
                    problems.missing("POSTGRES_CONNECTION_STRING", profile);
                }
                "postgres://localhost:5432/iam".to_owned()
            }
        };
        let read_url = match &self.postgres_read_connection_string {
            Setting::Value(url) => Some(normalize_postgres_url(url).unwrap_or_else(|why| {
                problems.invalid("POSTGRES_READ_CONNECTION_STRING", why);
                String::new()
            })),
            Setting::Unset | Setting::Invalid { .. } => None,
        };
        let pool_size = problems.take(
            "POSTGRES_POOL_SIZE",
            &self.postgres_pool_size,
            default_pool_size,
        );
        if pool_size == 0 {
            problems.invalid("POSTGRES_POOL_SIZE", "must be at least 1");
        }
        DatabaseSettings {
            url,
            read_url,
            pool_size,
        }
    }

    /// `JWT_ISSUER`: the `iss` written into tokens and required of them (`iam` by default).
    pub fn issuer(&self, problems: &mut ConfigProblems) -> String {
        problems.take("JWT_ISSUER", &self.jwt_issuer, "iam".to_owned())
    }

    /// `JWT_ISSUER`, `JWT_AUDIENCE` (`iam` by default) and `JWT_LEEWAY` (30 s by default,
    /// 0 to [`MAX_LEEWAY_SECONDS`]) as the verifier takes them.
    pub fn verification_rules(&self, problems: &mut ConfigProblems) -> VerificationRules {
        let leeway_seconds = problems.take("JWT_LEEWAY", &self.jwt_leeway, 30);
        if !(0..=MAX_LEEWAY_SECONDS).contains(&leeway_seconds) {
            problems.invalid(
                "JWT_LEEWAY",
                format!("must be between 0 and {MAX_LEEWAY_SECONDS} seconds"),
            );
        }
        VerificationRules {
            issuer: self.issuer(problems),
            audience: problems.take("JWT_AUDIENCE", &self.jwt_audience, "iam".to_owned()),
            leeway_seconds: leeway_seconds.clamp(0, MAX_LEEWAY_SECONDS),
        }
    }

    /// `JWKS_REFRESH_INTERVAL`: seconds between reloads of the signing keys, 30 by default.
    /// The same rule in every process: at least 1 second (0 would mean reloading in a loop).
    pub fn jwks_refresh_interval(&self, problems: &mut ConfigProblems) -> Duration {
        let seconds = problems.take("JWKS_REFRESH_INTERVAL", &self.jwks_refresh_interval, 30);
        if seconds == 0 {
            problems.invalid("JWKS_REFRESH_INTERVAL", "must be at least 1 second");
        }
        Duration::from_secs(seconds.max(1))
    }

    /// `JWKS_MAX_AGE`: the JWKS document's `Cache-Control: max-age`, 60 seconds by default.
    pub fn jwks_max_age(&self, problems: &mut ConfigProblems) -> Duration {
        Duration::from_secs(problems.take("JWKS_MAX_AGE", &self.jwks_max_age, 60))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn read(variables: &[(&str, &str)]) -> SharedEnvironment {
        let variables = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()));
        envy::from_iter(variables).expect("a shared environment always reads")
    }

    #[test]
    fn local_defaults_need_no_environment() {
        let shared = read(&[]);
        let mut problems = ConfigProblems::default();
        let common = shared.common(&mut problems, Profile::Local, 8001, LogRequests::All);
        let database = shared.database(&mut problems, Profile::Local, 2);
        let rules = shared.verification_rules(&mut problems);
        let refresh = shared.jwks_refresh_interval(&mut problems);
        let max_age = shared.jwks_max_age(&mut problems);
        problems.into_result().expect("local needs nothing");
        assert_eq!(
            (common.env_label.as_str(), common.host.as_str(), common.port),
            ("DEFAULT", "127.0.0.1", 8001)
        );
        assert!(common.worker_count >= 1);
        assert_eq!(common.log_format, LogFormat::Text);
        assert_eq!(database.url, "postgres://localhost:5432/iam");
        assert_eq!(database.read_url, None);
        assert_eq!(database.pool_size, 2);
        assert_eq!(
            (
                rules.issuer.as_str(),
                rules.audience.as_str(),
                rules.leeway_seconds
            ),
            ("iam", "iam", 30)
        );
        assert_eq!(refresh, Duration::from_secs(30));
        assert_eq!(max_age, Duration::from_secs(60));
    }

    #[test]
    fn values_are_read_typed_from_the_environment() {
        let shared = read(&[
            ("ENV", "stage-eu"),
            ("PORT", " 9000 "),
            ("WORKER_COUNT", "3"),
            ("LOG_FORMAT", "JSON"),
            ("POSTGRES_CONNECTION_STRING", "postgresql+asyncpg://db/iam"),
            (
                "POSTGRES_READ_CONNECTION_STRING",
                "postgresql://replica/iam?sslmode=verify-full",
            ),
            ("JWT_ISSUER", "https://iam.example.com"),
            ("JWT_LEEWAY", "0"),
            ("JWKS_REFRESH_INTERVAL", "1"),
            ("UNRELATED", "ignored"),
        ]);
        let mut problems = ConfigProblems::default();
        let common = shared.common(&mut problems, Profile::Local, 8000, LogRequests::All);
        let database = shared.database(&mut problems, Profile::Prod, 2);
        let rules = shared.verification_rules(&mut problems);
        let refresh = shared.jwks_refresh_interval(&mut problems);
        problems.into_result().expect("all valid");
        assert_eq!((common.env_label.as_str(), common.port), ("stage-eu", 9000));
        assert_eq!(common.worker_count, 3);
        assert_eq!(common.log_format, LogFormat::Json);
        assert_eq!(database.url, "postgres://db/iam");
        assert_eq!(
            database.read_url.as_deref(),
            Some("postgres://replica/iam?sslmode=verify-full")
        );
        assert_eq!(rules.issuer, "https://iam.example.com");
        assert_eq!(rules.leeway_seconds, 0);
        assert_eq!(refresh, Duration::from_secs(1));
    }

    #[test]
    fn the_drain_delay_is_0_in_local_5_in_stage_and_prod_and_at_most_300() {
        let mut problems = ConfigProblems::default();
        let local = read(&[]).common(&mut problems, Profile::Local, 8000, LogRequests::All);
        let stage = read(&[]).common(&mut problems, Profile::Stage, 8000, LogRequests::All);
        let set = read(&[("SHUTDOWN_DELAY", "300")]).common(
            &mut problems,
            Profile::Prod,
            8000,
            LogRequests::All,
        );
        problems.into_result().expect("valid");
        assert_eq!(local.shutdown_delay, Duration::ZERO);
        assert_eq!(stage.shutdown_delay, Duration::from_secs(5));
        assert_eq!(set.shutdown_delay, Duration::from_secs(300));
        for bad in ["301", "-1", "soon"] {
            let mut problems = ConfigProblems::default();
            read(&[("SHUTDOWN_DELAY", bad)]).common(
                &mut problems,
                Profile::Local,
                8000,
                LogRequests::All,
            );
            let message = problems.into_result().expect_err(bad);
            assert!(message.contains("SHUTDOWN_DELAY is invalid"), "{message}");
        }
    }

    #[test]
    fn a_refresh_interval_of_0_is_refused() {
        let shared = read(&[("JWKS_REFRESH_INTERVAL", "0")]);
        let mut problems = ConfigProblems::default();
        shared.jwks_refresh_interval(&mut problems);
        let message = problems.into_result().expect_err("0 is refused");
        assert!(
            message.contains("JWKS_REFRESH_INTERVAL is invalid: must be at least 1 second"),
            "{message}"
        );
    }

    #[test]
    fn leeway_is_bounded_to_a_day() {
        for (value, valid) in [
            ("0", true),
            ("86400", true),
            ("86401", false),
            ("-1", false),
        ] {
            let shared = read(&[("JWT_LEEWAY", value)]);
            let mut problems = ConfigProblems::default();
            shared.verification_rules(&mut problems);
            let result = problems.into_result();
            assert_eq!(result.is_ok(), valid, "JWT_LEEWAY={value}: {result:?}");
            if let Err(message) = result {
                assert!(message.contains("JWT_LEEWAY is invalid"), "{message}");
            }
        }
    }

    #[test]
    fn every_invalid_or_missing_shared_variable_is_named_at_once() {
        let shared = read(&[
            ("PORT", "http"),
            ("WORKER_COUNT", "0"),
            ("LOG_FORMAT", "xml"),
            ("POSTGRES_POOL_SIZE", "many"),
            ("JWT_LEEWAY", "soon"),
            ("JWKS_REFRESH_INTERVAL", "0"),
            ("JWKS_MAX_AGE", "-1"),
        ]);
        let mut problems = ConfigProblems::default();
        shared.common(&mut problems, Profile::Prod, 8000, LogRequests::All);
        shared.database(&mut problems, Profile::Prod, 2);
        shared.verification_rules(&mut problems);
        shared.jwks_refresh_interval(&mut problems);
        shared.jwks_max_age(&mut problems);
        let message = problems.into_result().expect_err("invalid");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(message.contains("PORT is invalid: \"http\": "), "{message}");
        assert!(
            message.contains("POSTGRES_CONNECTION_STRING is required with --config=prod"),
            "{message}"
        );
        for variable in [
            "WORKER_COUNT",
            "LOG_FORMAT",
            "POSTGRES_POOL_SIZE",
            "JWT_LEEWAY",
            "JWKS_REFRESH_INTERVAL",
            "JWKS_MAX_AGE",
        ] {
            assert!(
                message.contains(&format!("{variable} is invalid: ")),
                "{variable} missing from {message}"
            );
        }
    }

    #[test]
    fn a_variable_a_process_does_not_ask_for_is_not_reported() {
        let shared = read(&[("POSTGRES_POOL_SIZE", "many")]);
        let mut problems = ConfigProblems::default();
        shared.common(&mut problems, Profile::Local, 8080, LogRequests::All);
        shared.verification_rules(&mut problems);
        assert!(problems.into_result().is_ok());
    }
}
