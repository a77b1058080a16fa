//! Configuration shared by every process: the `--config` profile, the variables several
//! processes read ([`SharedEnvironment`]), how problems are collected, and the database URL
//! forms we accept.

mod environment;
mod setting;
mod shared;

use std::fmt;
use std::str::FromStr;

pub use setting::Setting;
pub use shared::{
    CommonSettings, DatabaseSettings, Environment, MAX_LEEWAY_SECONDS, ProcessConfig,
    SharedEnvironment,
};

/// Which set of defaults and requirements applies (`--config=local|stage|prod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Local,
    Stage,
    Prod,
}

impl Profile {
    /// `stage` and `prod` refuse to start without the variables marked required.
    pub fn requires_explicit_settings(self) -> bool {
        !matches!(self, Profile::Local)
    }

    /// Profile name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Local => "local",
            Profile::Stage => "stage",
            Profile::Prod => "prod",
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "local" => Ok(Profile::Local),
            "stage" => Ok(Profile::Stage),
            "prod" => Ok(Profile::Prod),
            other => Err(format!(
                "unknown config {other:?}: expected local, stage or prod"
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Collects every configuration problem so that one start-up error names them all.
#[derive(Debug, Default)]
pub struct ConfigProblems {
    problems: Vec<String>,
}

impl ConfigProblems {
    /// Records that `variable` is required by `profile` but unset.
    pub fn missing(&mut self, variable: &str, profile: Profile) {
        self.problems
            .push(format!("{variable} is required with --config={profile}"));
    }

    /// Records that `variable` holds an unusable value.
    pub fn invalid(&mut self, variable: &str, why: impl fmt::Display) {
        self.problems.push(format!("{variable} is invalid: {why}"));
    }

    /// The value of `setting`, or `default` when it is unset. A value that did not parse is
    /// recorded as a problem (and `default` returned, so that checking can go on).
    pub fn take<T: Clone>(&mut self, variable: &str, setting: &Setting<T>, default: T) -> T {
        match setting {
            Setting::Unset => default,
            Setting::Value(value) => value.clone(),
            Setting::Invalid { raw, why } => {
                self.invalid(variable, format!("{raw:?}: {why}"));
                default
            }
        }
    }

    /// `Ok(())` when nothing was recorded, otherwise the one-line message.
    pub fn into_result(self) -> Result<(), String> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(format!("configuration error: {}", self.problems.join("; ")))
        }
    }
}

/// Rewrites the accepted spellings of a PostgreSQL URL (`postgres://`, `postgresql://` and
/// the Python-style `postgresql+asyncpg://`) into one sqlx understands.
pub fn normalize_postgres_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected a postgres:// URL".to_owned());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" | "postgresql+asyncpg" | "postgres+asyncpg" => {
            Ok(format!("postgres://{rest}"))
        }
        other => Err(format!(
            "unsupported scheme {other:?}: use postgres://, postgresql:// or postgresql+asyncpg://"
        )),
    }
}

/// The user to connect as when the URL names none: `PGUSER`, else the login name from
/// `USER`/`LOGNAME` as libpq does, else `postgres`. (Without this, a process started with no
/// `USER` in its environment would connect as "anonymous".)
pub fn fallback_database_user(url: &str) -> Option<String> {
    let authority = url
        .split_once("://")?
        .1
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    if authority.contains('@') || std::env::var_os("PGUSER").is_some() {
        return None;
    }
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .or_else(|| Some("postgres".to_owned()))
}

/// The number of CPUs, the default for worker counts.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn python_style_urls_are_accepted() {
        assert_eq!(
            normalize_postgres_url("postgresql+asyncpg://u:p@db:5432/iam").as_deref(),
            Ok("postgres://u:p@db:5432/iam")
        );
        assert_eq!(
            normalize_postgres_url("postgresql://db/iam").as_deref(),
            Ok("postgres://db/iam")
        );
        assert!(normalize_postgres_url("mysql://db/iam").is_err());
        assert!(normalize_postgres_url("db/iam").is_err());
    }

    #[test]
    fn every_problem_is_reported_in_one_message() {
        let mut problems = ConfigProblems::default();
        problems.missing("POSTGRES_CONNECTION_STRING", Profile::Prod);
        let port: u16 = problems.take("PORT", &Setting::parse("http"), 8000);
        assert_eq!(port, 8000);
        let message = problems.into_result().expect_err("two problems");
        assert!(message.contains("POSTGRES_CONNECTION_STRING is required with --config=prod"));
        assert!(message.contains("PORT is invalid"));
    }
}

/// Which requests get an `info` log line (`LOG_REQUESTS`); the others are logged at `debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRequests {
    /// Every request.
    All,
    /// Refused and failed ones (status 400 and above).
    Failures,
}

impl FromStr for LogRequests {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "all" => Ok(LogRequests::All),
            "failures" => Ok(LogRequests::Failures),
            other => Err(format!("expected all or failures, got {other:?}")),
        }
    }
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected json or text, got {other:?}")),
        }
    }
}
