//! Configuration shared by every process: the `--config` profile, the common environment
//! variables, and the database URL forms we accept.

use std::fmt;
use std::str::FromStr;

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

    /// Parses an optional variable, recording a problem (and returning `default`) when its
    /// value does not parse.
    pub fn parse_or<T>(&mut self, variable: &str, value: Option<&str>, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match value.map(str::trim) {
            None | Some("") => default,
            Some(raw) => match raw.parse() {
                Ok(parsed) => parsed,
                Err(error) => {
                    self.invalid(variable, format!("{raw:?}: {error}"));
                    default
                }
            },
        }
    }

    /// `POSTGRES_CONNECTION_STRING`: required by strict profiles, the local default
    /// otherwise, normalised to a URL sqlx understands.
    pub fn database_url(&mut self, value: Option<String>, profile: Profile) -> String {
        match non_empty(value) {
            Some(url) => normalize_postgres_url(&url).unwrap_or_else(|why| {
                self.invalid("POSTGRES_CONNECTION_STRING", why);
                String::new()
            }),
            None => {
                if profile.requires_explicit_settings() {
                    self.missing("POSTGRES_CONNECTION_STRING", profile);
                }
                "postgres://localhost:5432/iam".to_owned()
            }
        }
    }

    /// `WORKER_COUNT`: async worker threads, at least one, the CPU count by default.
    pub fn worker_count(&mut self, value: Option<&str>) -> usize {
        let workers: usize = self.parse_or("WORKER_COUNT", value, available_cpus());
        if workers == 0 {
            self.invalid("WORKER_COUNT", "must be at least 1");
        }
        workers.max(1)
    }

    /// `LOG_FORMAT`: `text` by default in local, `json` in stage and prod.
    pub fn log_format(&mut self, value: Option<&str>, profile: Profile) -> LogFormat {
        let default = if profile.requires_explicit_settings() {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
        self.parse_or("LOG_FORMAT", value, default)
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

/// A variable's value trimmed, or `None` when it is unset or blank.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
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
        let port: u16 = problems.parse_or("PORT", Some("http"), 8000);
        assert_eq!(port, 8000);
        let message = problems.into_result().expect_err("two problems");
        assert!(message.contains("POSTGRES_CONNECTION_STRING is required with --config=prod"));
        assert!(message.contains("PORT is invalid"));
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
