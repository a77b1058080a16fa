//! iam-api configuration: read once from the environment at start, then passed down.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use iam_core::VerificationRules;
use iam_core::config::{ConfigProblems, Profile, non_empty};
use iam_core::telemetry::LogFormat;
use serde::Deserialize;

use crate::domain::email::Email;
use crate::domain::keys::{KeyEncryptionKey, RotationPolicy};
use crate::domain::password::{HashParameters, Password};

/// The development key-encryption key used by `--config=local` when none is given. It is
/// public (it is in this file), so `stage` and `prod` refuse to run without their own.
const DEVELOPMENT_KEY_ENCRYPTION_KEY: [u8; 32] = *b"iam-local-development-only-key!!";

/// Longest accepted token lifetime (10 years): keeps every timestamp computation in range.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// The raw environment, every variable optional, so that all problems can be reported at once.
#[derive(Debug, Default, Deserialize)]
struct RawEnvironment {
    env: Option<String>,
    host: Option<String>,
    port: Option<String>,
    postgres_connection_string: Option<String>,
    postgres_pool_size: Option<String>,
    worker_count: Option<String>,
    access_token_ttl: Option<String>,
    refresh_token_ttl: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_leeway: Option<String>,
    iam_key_encryption_key: Option<String>,
    key_rotation_grace: Option<String>,
    key_rotation_interval: Option<String>,
    jwks_max_age: Option<String>,
    jwks_refresh_interval: Option<String>,
    password_hash_memory_kib: Option<String>,
    password_hash_iterations: Option<String>,
    password_hash_parallelism: Option<String>,
    password_hash_queue: Option<String>,
    rate_limit_per_minute: Option<String>,
    bootstrap_admin_email: Option<String>,
    bootstrap_admin_password: Option<String>,
    log_format: Option<String>,
}

/// An admin that must exist after start (`BOOTSTRAP_ADMIN_*`).
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: Email,
    pub password: Password,
}

/// Everything iam-api needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub profile: Profile,
    pub env_label: String,
    pub host: String,
    pub port: u16,
    pub database_url: String,
    pub pool_size: u32,
    pub worker_count: usize,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    /// Issuer, audience and leeway as the verifier takes them, built once.
    verification_rules: VerificationRules,
    pub key_encryption_key: KeyEncryptionKey,
    pub key_rotation_grace: Duration,
    /// Rotate automatically when the newest key is this old (`KEY_ROTATION_INTERVAL`).
    pub key_rotation_interval: Option<Duration>,
    pub key_refresh_interval: Duration,
    pub password_hash: HashParameters,
    pub password_hash_queue: usize,
    /// POSTs to `/tokens` and `/users` allowed per client address per minute; `None` = off.
    pub rate_limit_per_minute: Option<u32>,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    pub log_format: LogFormat,
}

impl ApiConfig {
    /// Reads and validates the environment for `profile`; the error names every problem.
    pub fn from_env(profile: Profile) -> Result<Self, String> {
        let raw: RawEnvironment = envy::from_env().map_err(|error| error.to_string())?;
        Self::from_raw(profile, raw)
    }

    fn from_raw(profile: Profile, raw: RawEnvironment) -> Result<Self, String> {
        let mut problems = ConfigProblems::default();
        let strict = profile.requires_explicit_settings();

        let database_url = problems.database_url(raw.postgres_connection_string.clone(), profile);

        let key_encryption_key = match raw.iam_key_encryption_key.as_deref().map(str::trim) {
            Some(encoded) if !encoded.is_empty() => {
                match STANDARD.decode(encoded).ok().map(<[u8; 32]>::try_from) {
                    Some(Ok(bytes)) => KeyEncryptionKey::new(bytes, false),
                    _ => {
                        problems.invalid(
                            "IAM_KEY_ENCRYPTION_KEY",
                            "expected base64 of exactly 32 bytes (openssl rand -base64 32)",
                        );
                        KeyEncryptionKey::new(DEVELOPMENT_KEY_ENCRYPTION_KEY, true)
                    }
                }
            }
            _ => {
                if strict {
                    problems.missing("IAM_KEY_ENCRYPTION_KEY", profile);
                }
                KeyEncryptionKey::new(DEVELOPMENT_KEY_ENCRYPTION_KEY, true)
            }
        };

        let worker_count = problems.worker_count(raw.worker_count.as_deref());
        let default_pool = u32::try_from(worker_count * 2).unwrap_or(u32::MAX);
        let pool_size: u32 = problems.parse_or(
            "POSTGRES_POOL_SIZE",
            raw.postgres_pool_size.as_deref(),
            default_pool,
        );
        if pool_size == 0 {
            problems.invalid("POSTGRES_POOL_SIZE", "must be at least 1");
        }

        let access_token_ttl = positive_seconds(
            &mut problems,
            "ACCESS_TOKEN_TTL",
            &raw.access_token_ttl,
            86_400,
        );
        let refresh_token_ttl = positive_seconds(
            &mut problems,
            "REFRESH_TOKEN_TTL",
            &raw.refresh_token_ttl,
            432_000,
        );
        let jwks_max_age: u64 = problems.parse_or("JWKS_MAX_AGE", raw.jwks_max_age.as_deref(), 60);
        let jwks_refresh: u64 = problems.parse_or(
            "JWKS_REFRESH_INTERVAL",
            raw.jwks_refresh_interval.as_deref(),
            30,
        );
        let key_rotation_grace: u64 = problems.parse_or(
            "KEY_ROTATION_GRACE",
            raw.key_rotation_grace.as_deref(),
            jwks_max_age + jwks_refresh,
        );
        if key_rotation_grace > MAX_TTL_SECONDS {
            problems.invalid("KEY_ROTATION_GRACE", "must be at most 10 years");
        }
        let key_rotation_interval = match raw.key_rotation_interval.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(_) => {
                let seconds: u64 = problems.parse_or(
                    "KEY_ROTATION_INTERVAL",
                    raw.key_rotation_interval.as_deref(),
                    0,
                );
                if seconds <= key_rotation_grace || seconds > MAX_TTL_SECONDS {
                    problems.invalid(
                        "KEY_ROTATION_INTERVAL",
                        "must be longer than KEY_ROTATION_GRACE and at most 10 years",
                    );
                }
                Some(Duration::from_secs(seconds))
            }
        };
        let leeway: u64 = problems.parse_or("JWT_LEEWAY", raw.jwt_leeway.as_deref(), 30);
        if leeway > MAX_TTL_SECONDS {
            problems.invalid("JWT_LEEWAY", "must be at most 10 years");
        }

        let password_hash = HashParameters {
            memory_kib: problems.parse_or(
                "PASSWORD_HASH_MEMORY_KIB",
                raw.password_hash_memory_kib.as_deref(),
                19_456,
            ),
            iterations: problems.parse_or(
                "PASSWORD_HASH_ITERATIONS",
                raw.password_hash_iterations.as_deref(),
                2,
            ),
            parallelism: problems.parse_or(
                "PASSWORD_HASH_PARALLELISM",
                raw.password_hash_parallelism.as_deref(),
                1,
            ),
        };
        if let Err(why) = password_hash.validate() {
            problems.invalid("PASSWORD_HASH_*", why);
        }
        let password_hash_queue: usize = problems.parse_or(
            "PASSWORD_HASH_QUEUE",
            raw.password_hash_queue.as_deref(),
            64,
        );

        // Off by default in local (tests and development log in a lot from one address).
        let default_rate_limit = if strict { 300 } else { 0 };
        let rate_limit: u32 = problems.parse_or(
            "RATE_LIMIT_PER_MINUTE",
            raw.rate_limit_per_minute.as_deref(),
            default_rate_limit,
        );
        let rate_limit_per_minute = (rate_limit > 0).then_some(rate_limit);
        let bootstrap_admin = bootstrap_admin(&mut problems, &raw);

        let log_format = problems.log_format(raw.log_format.as_deref(), profile);
        let port: u16 = problems.parse_or("PORT", raw.port.as_deref(), 8000);

        let issuer = non_empty_or(raw.jwt_issuer, "iam");
        let audience = non_empty_or(raw.jwt_audience, "iam");

        problems.into_result()?;
        let verification_rules = VerificationRules {
            issuer: issuer.clone(),
            audience: audience.clone(),
            leeway_seconds: i64::try_from(leeway).unwrap_or(i64::MAX),
        };
        Ok(ApiConfig {
            profile,
            env_label: non_empty_or(raw.env, "DEFAULT"),
            host: non_empty_or(raw.host, "127.0.0.1"),
            port,
            database_url,
            pool_size,
            worker_count,
            access_token_ttl,
            refresh_token_ttl,
            issuer,
            audience,
            leeway: Duration::from_secs(leeway),
            verification_rules,
            key_encryption_key,
            key_rotation_grace: Duration::from_secs(key_rotation_grace),
            key_rotation_interval,
            key_refresh_interval: Duration::from_secs(jwks_refresh.max(1)),
            password_hash,
            password_hash_queue,
            rate_limit_per_minute,
            bootstrap_admin,
            log_format,
        })
    }
}

impl ApiConfig {
    /// What access tokens presented to this service must satisfy.
    pub fn verification_rules(&self) -> &VerificationRules {
        &self.verification_rules
    }

    /// How rotations are timed under this configuration.
    pub fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            grace: self.key_rotation_grace,
            token_lifetime: self.access_token_ttl + self.leeway,
        }
    }
}

fn positive_seconds(
    problems: &mut ConfigProblems,
    variable: &str,
    value: &Option<String>,
    default: u64,
) -> Duration {
    let seconds: u64 = problems.parse_or(variable, value.as_deref(), default);
    if !(1..=MAX_TTL_SECONDS).contains(&seconds) {
        problems.invalid(variable, "must be between 1 second and 10 years");
    }
    Duration::from_secs(seconds.clamp(1, MAX_TTL_SECONDS))
}

fn non_empty_or(value: Option<String>, default: &str) -> String {
    non_empty(value).unwrap_or_else(|| default.to_owned())
}

fn bootstrap_admin(problems: &mut ConfigProblems, raw: &RawEnvironment) -> Option<BootstrapAdmin> {
    let email = raw
        .bootstrap_admin_email
        .as_deref()
        .filter(|v| !v.is_empty());
    let password = raw
        .bootstrap_admin_password
        .as_deref()
        .filter(|v| !v.is_empty());
    match (email, password) {
        (None, None) => None,
        (Some(_), None) => {
            problems.invalid(
                "BOOTSTRAP_ADMIN_PASSWORD",
                "must be set together with BOOTSTRAP_ADMIN_EMAIL",
            );
            None
        }
        (None, Some(_)) => {
            problems.invalid(
                "BOOTSTRAP_ADMIN_EMAIL",
                "must be set together with BOOTSTRAP_ADMIN_PASSWORD",
            );
            None
        }
        (Some(email), Some(password)) => {
            let email = Email::parse(email)
                .map_err(|why| problems.invalid("BOOTSTRAP_ADMIN_EMAIL", why))
                .ok();
            let password = Password::parse(password)
                .map_err(|why| problems.invalid("BOOTSTRAP_ADMIN_PASSWORD", why))
                .ok();
            Some(BootstrapAdmin {
                email: email?,
                password: password?,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn local_runs_with_no_environment_at_all() {
        let config = ApiConfig::from_raw(Profile::Local, RawEnvironment::default()).expect("ok");
        assert_eq!(config.port, 8000);
        assert_eq!(config.database_url, "postgres://localhost:5432/iam");
        assert!(config.key_encryption_key.is_development_key);
        assert_eq!(config.key_rotation_grace, Duration::from_secs(90));
        assert_eq!(config.password_hash.memory_kib, 19_456);
    }

    #[test]
    fn prod_names_every_missing_variable() {
        let error = ApiConfig::from_raw(Profile::Prod, RawEnvironment::default()).expect_err("");
        assert!(error.contains("POSTGRES_CONNECTION_STRING"), "{error}");
        assert!(error.contains("IAM_KEY_ENCRYPTION_KEY"), "{error}");
    }

    #[test]
    fn invalid_values_are_all_reported() {
        let raw = RawEnvironment {
            port: Some("eighty".into()),
            access_token_ttl: Some("0".into()),
            iam_key_encryption_key: Some("c2hvcnQ=".into()),
            bootstrap_admin_email: Some("admin@example.com".into()),
            ..RawEnvironment::default()
        };
        let error = ApiConfig::from_raw(Profile::Local, raw).expect_err("invalid");
        for variable in [
            "PORT",
            "ACCESS_TOKEN_TTL",
            "IAM_KEY_ENCRYPTION_KEY",
            "BOOTSTRAP_ADMIN_PASSWORD",
        ] {
            assert!(error.contains(variable), "{variable} missing from {error}");
        }
    }

    #[test]
    fn the_key_encryption_key_is_never_printed() {
        let key = KeyEncryptionKey::new([7; 32], false);
        let printed = format!("{key:?}");
        assert!(!printed.contains("7, 7"), "{printed}");
        assert_eq!(key.id().len(), 16);
    }
}
