//! iam-api configuration: read once from the environment at start, then passed down.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use iam_core::VerificationRules;
use iam_core::config::{
    CommonSettings, ConfigProblems, DatabaseSettings, Environment, ProcessConfig, Setting,
};
use serde::Deserialize;

use crate::domain::client_address::TrustedProxies;
use crate::domain::email::Email;
use crate::domain::keys::{KeyEncryptionKey, RotationPolicy};
use crate::domain::password::{HashParameters, Password};

/// The development key-encryption key used by `--config=local` when none is given. It is
/// public (it is in this file), so `stage` and `prod` refuse to run without their own.
const DEVELOPMENT_KEY_ENCRYPTION_KEY: [u8; 32] = *b"iam-local-development-only-key!!";

/// Longest accepted audit retention (100 years): keeps the purge's cut-off in range.
const MAX_AUDIT_RETENTION_DAYS: u32 = 36_500;

/// Longest accepted token lifetime (10 years): keeps every timestamp computation in range.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// The variables only iam-api reads, typed; each may be unset or invalid so that every
/// problem is reported at once.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OwnEnvironment {
    access_token_ttl: Setting<u64>,
    refresh_token_ttl: Setting<u64>,
    iam_key_encryption_key: Setting<String>,
    key_rotation_grace: Setting<u64>,
    key_rotation_interval: Setting<u64>,
    password_hash_memory_kib: Setting<u32>,
    password_hash_iterations: Setting<u32>,
    password_hash_parallelism: Setting<u32>,
    password_hash_queue: Setting<usize>,
    rate_limit_per_minute: Setting<u32>,
    trusted_proxies: Setting<String>,
    registration: Setting<Registration>,
    audit_retention_days: Setting<u32>,
    jwt_default_client_id: Setting<String>,
    // Plain strings, kept as given (not trimmed): a password's spaces are part of it.
    bootstrap_admin_email: Option<String>,
    bootstrap_admin_password: Option<String>,
}

/// Who may register (`REGISTRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may `POST /users`.
    Open,
    /// `POST /users` needs `iam:users:write`.
    Closed,
}

impl std::str::FromStr for Registration {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "open" => Ok(Registration::Open),
            "closed" => Ok(Registration::Closed),
            other => Err(format!("expected open or closed, got {other:?}")),
        }
    }
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
    pub common: CommonSettings,
    pub database: DatabaseSettings,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Issuer, audience and leeway: written into tokens and required of presented ones.
    verification_rules: VerificationRules,
    pub key_encryption_key: KeyEncryptionKey,
    pub key_rotation_grace: Duration,
    /// Rotate automatically when the newest key is this old (`KEY_ROTATION_INTERVAL`).
    pub key_rotation_interval: Option<Duration>,
    /// `JWKS_REFRESH_INTERVAL`: how often this replica reloads the signing keys.
    pub key_refresh_interval: Duration,
    pub password_hash: HashParameters,
    pub password_hash_queue: usize,
    /// POSTs to `/tokens` and `/users` allowed per client address per minute; `None` = off.
    pub rate_limit_per_minute: Option<u32>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client (for that limit).
    pub trusted_proxies: TrustedProxies,
    pub registration: Registration,
    /// `JWT_DEFAULT_CLIENT_ID`: the `client_id` claim of tokens from the password and
    /// refresh grants.
    pub default_client_id: String,
    /// `AUDIT_RETENTION_DAYS`: audit events older than this are purged.
    pub audit_retention: Duration,
    pub bootstrap_admin: Option<BootstrapAdmin>,
}

impl ProcessConfig for ApiConfig {
    type Own = OwnEnvironment;

    fn build(env: Environment<OwnEnvironment>, problems: &mut ConfigProblems) -> Self {
        let strict = env.profile.requires_explicit_settings();

        let common = env.shared.common(
            problems,
            env.profile,
            8000,
            iam_core::config::LogRequests::All,
        );
        let default_pool = u32::try_from(common.worker_count * 2).unwrap_or(u32::MAX);
        let database = env.shared.database(problems, env.profile, default_pool);

        let key_encryption_key = match &env.own.iam_key_encryption_key {
            Setting::Value(encoded) => {
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
            Setting::Unset | Setting::Invalid { .. } => {
                if strict {
                    problems.missing("IAM_KEY_ENCRYPTION_KEY", env.profile);
                }
                KeyEncryptionKey::new(DEVELOPMENT_KEY_ENCRYPTION_KEY, true)
            }
        };

        let access_token_ttl = positive_seconds(
            problems,
            "ACCESS_TOKEN_TTL",
            &env.own.access_token_ttl,
            86_400,
        );
        let refresh_token_ttl = positive_seconds(
            problems,
            "REFRESH_TOKEN_TTL",
            &env.own.refresh_token_ttl,
            432_000,
        );
        let jwks_max_age = env.shared.jwks_max_age(problems);
        let key_refresh_interval = env.shared.jwks_refresh_interval(problems);
        let key_rotation_grace = problems.take(
            "KEY_ROTATION_GRACE",
            &env.own.key_rotation_grace,
            jwks_max_age
                .as_secs()
                .saturating_add(key_refresh_interval.as_secs()),
        );
        if key_rotation_grace > MAX_TTL_SECONDS {
            problems.invalid("KEY_ROTATION_GRACE", "must be at most 10 years");
        }
        let key_rotation_interval = match &env.own.key_rotation_interval {
            Setting::Unset => None,
            interval => {
                let seconds = problems.take("KEY_ROTATION_INTERVAL", interval, 0);
                if seconds <= key_rotation_grace || seconds > MAX_TTL_SECONDS {
                    problems.invalid(
                        "KEY_ROTATION_INTERVAL",
                        "must be longer than KEY_ROTATION_GRACE and at most 10 years",
                    );
                }
                Some(Duration::from_secs(seconds))
            }
        };
        let verification_rules = env.shared.verification_rules(problems);

        let password_hash = HashParameters {
            memory_kib: problems.take(
                "PASSWORD_HASH_MEMORY_KIB",
                &env.own.password_hash_memory_kib,
                19_456,
            ),
            iterations: problems.take(
                "PASSWORD_HASH_ITERATIONS",
                &env.own.password_hash_iterations,
                2,
            ),
            parallelism: problems.take(
                "PASSWORD_HASH_PARALLELISM",
                &env.own.password_hash_parallelism,
                1,
            ),
        };
        if let Err(why) = password_hash.validate() {
            problems.invalid("PASSWORD_HASH_*", why);
        }
        let password_hash_queue =
            problems.take("PASSWORD_HASH_QUEUE", &env.own.password_hash_queue, 64);

        // Off by default in local (tests and development log in a lot from one address).
        let default_rate_limit = if strict { 300 } else { 0 };
        let rate_limit = problems.take(
            "RATE_LIMIT_PER_MINUTE",
            &env.own.rate_limit_per_minute,
            default_rate_limit,
        );
        let rate_limit_per_minute = (rate_limit > 0).then_some(rate_limit);
        let trusted_proxies = match &env.own.trusted_proxies {
            Setting::Value(value) => TrustedProxies::parse(value).unwrap_or_else(|why| {
                problems.invalid("TRUSTED_PROXIES", why);
                TrustedProxies::default()
            }),
            Setting::Unset | Setting::Invalid { .. } => TrustedProxies::default(),
        };
        let registration = problems.take("REGISTRATION", &env.own.registration, Registration::Open);
        let audit_retention_days =
            problems.take("AUDIT_RETENTION_DAYS", &env.own.audit_retention_days, 365);
        if !(1..=MAX_AUDIT_RETENTION_DAYS).contains(&audit_retention_days) {
            problems.invalid("AUDIT_RETENTION_DAYS", "must be between 1 and 36500 days");
        }
        let audit_retention = Duration::from_secs(
            u64::from(audit_retention_days.clamp(1, MAX_AUDIT_RETENTION_DAYS)) * 86_400,
        );
        let default_client_id = problems.take(
            "JWT_DEFAULT_CLIENT_ID",
            &env.own.jwt_default_client_id,
            "iam".to_owned(),
        );
        if !is_client_id(&default_client_id) {
            problems.invalid(
                "JWT_DEFAULT_CLIENT_ID",
                "must be 1 to 255 printable ASCII characters without spaces",
            );
        }
        let bootstrap_admin = bootstrap_admin(problems, &env.own);

        ApiConfig {
            common,
            database,
            access_token_ttl,
            refresh_token_ttl,
            verification_rules,
            key_encryption_key,
            key_rotation_grace: Duration::from_secs(key_rotation_grace),
            key_rotation_interval,
            key_refresh_interval,
            password_hash,
            password_hash_queue,
            rate_limit_per_minute,
            trusted_proxies,
            registration,
            audit_retention,
            default_client_id,
            bootstrap_admin,
        }
    }
}

impl ApiConfig {
    /// What access tokens presented to this service must satisfy.
    pub fn verification_rules(&self) -> &VerificationRules {
        &self.verification_rules
    }

    /// How rotations are timed under this configuration.
    pub fn rotation_policy(&self) -> RotationPolicy {
        let leeway = u64::try_from(self.verification_rules.leeway_seconds).unwrap_or(0);
        RotationPolicy {
            grace: self.key_rotation_grace,
            token_lifetime: self.access_token_ttl + Duration::from_secs(leeway),
        }
    }
}

/// A `client_id` that fits a claim and the sidecar's `X-Client-Id` header as it is.
fn is_client_id(value: &str) -> bool {
    (1..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

fn positive_seconds(
    problems: &mut ConfigProblems,
    variable: &str,
    value: &Setting<u64>,
    default: u64,
) -> Duration {
    let seconds = problems.take(variable, value, default);
    if !(1..=MAX_TTL_SECONDS).contains(&seconds) {
        problems.invalid(variable, "must be between 1 second and 10 years");
    }
    Duration::from_secs(seconds.clamp(1, MAX_TTL_SECONDS))
}

fn bootstrap_admin(problems: &mut ConfigProblems, own: &OwnEnvironment) -> Option<BootstrapAdmin> {
    let email = own
        .bootstrap_admin_email
        .as_deref()
        .filter(|v| !v.is_empty());
    let password = own
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
    use iam_core::config::{Profile, SharedEnvironment};

    #[test]
    fn local_runs_with_no_environment_at_all() {
        let config = ApiConfig::from_parts(Profile::Local, Default::default(), Default::default())
            .expect("ok");
        assert_eq!(config.common.port, 8000);
        assert_eq!(config.database.url, "postgres://localhost:5432/iam");
        assert!(config.key_encryption_key.is_development_key);
        assert_eq!(config.key_rotation_grace, Duration::from_secs(90));
        assert_eq!(config.password_hash.memory_kib, 19_456);
    }

    #[test]
    fn prod_names_every_missing_variable() {
        let error = ApiConfig::from_parts(Profile::Prod, Default::default(), Default::default())
            .expect_err("");
        assert!(error.contains("POSTGRES_CONNECTION_STRING"), "{error}");
        assert!(error.contains("IAM_KEY_ENCRYPTION_KEY"), "{error}");
    }

    #[test]
    fn invalid_values_are_all_reported() {
        let shared = SharedEnvironment {
            port: "eighty".into(),
            ..SharedEnvironment::default()
        };
        let own = OwnEnvironment {
            access_token_ttl: "0".into(),
            iam_key_encryption_key: "c2hvcnQ=".into(),
            bootstrap_admin_email: Some("admin@example.com".into()),
            ..OwnEnvironment::default()
        };
        let error = ApiConfig::from_parts(Profile::Local, shared, own).expect_err("invalid");
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
    fn the_shared_rules_apply_to_the_api_too() {
        // JWKS_REFRESH_INTERVAL=0 used to be read as 1 here while iam-jwks and the sidecar
        // refused it; now every process refuses it, and bounds JWT_LEEWAY the same way.
        let shared = SharedEnvironment {
            jwks_refresh_interval: "0".into(),
            jwt_leeway: "86401".into(),
            ..SharedEnvironment::default()
        };
        let error = ApiConfig::from_parts(Profile::Local, shared, OwnEnvironment::default())
            .expect_err("invalid");
        assert!(
            error.contains("JWKS_REFRESH_INTERVAL is invalid: must be at least 1 second"),
            "{error}"
        );
        assert!(error.contains("JWT_LEEWAY is invalid"), "{error}");
    }

    #[test]
    fn the_default_grace_follows_the_shared_jwks_timing() {
        let shared = SharedEnvironment {
            jwks_refresh_interval: "5".into(),
            jwks_max_age: "10".into(),
            jwt_leeway: "7".into(),
            ..SharedEnvironment::default()
        };
        let config = ApiConfig::from_parts(Profile::Local, shared, OwnEnvironment::default())
            .expect("valid");
        assert_eq!(config.key_rotation_grace, Duration::from_secs(15));
        assert_eq!(config.key_refresh_interval, Duration::from_secs(5));
        assert_eq!(
            config.rotation_policy().token_lifetime,
            Duration::from_secs(86_400 + 7)
        );
    }

    #[test]
    fn the_bootstrap_password_is_kept_verbatim() {
        let own = OwnEnvironment {
            bootstrap_admin_email: Some("admin@example.com".into()),
            // Nine characters as given, five if it were trimmed (too short to be accepted).
            bootstrap_admin_password: Some("  short  ".into()),
            ..OwnEnvironment::default()
        };
        let config = ApiConfig::from_parts(Profile::Local, SharedEnvironment::default(), own)
            .expect("the spaces count");
        assert!(config.bootstrap_admin.is_some());
    }

    #[test]
    fn the_default_client_id_is_iam_and_must_fit_a_header() {
        let config = ApiConfig::from_parts(Profile::Local, Default::default(), Default::default())
            .expect("ok");
        assert_eq!(config.default_client_id, "iam");
        for bad in ["with space", "tab\there", "é", &"x".repeat(256)] {
            let own = OwnEnvironment {
                jwt_default_client_id: bad.into(),
                ..OwnEnvironment::default()
            };
            let error = ApiConfig::from_parts(Profile::Local, SharedEnvironment::default(), own)
                .expect_err(bad);
            assert!(error.contains("JWT_DEFAULT_CLIENT_ID"), "{error}");
        }
        let own = OwnEnvironment {
            jwt_default_client_id: "web-app".into(),
            ..OwnEnvironment::default()
        };
        let config = ApiConfig::from_parts(Profile::Local, SharedEnvironment::default(), own)
            .expect("valid");
        assert_eq!(config.default_client_id, "web-app");
    }

    #[test]
    fn the_key_encryption_key_is_never_printed() {
        let key = KeyEncryptionKey::new([7; 32], false);
        let printed = format!("{key:?}");
        assert!(!printed.contains("7, 7"), "{printed}");
        assert_eq!(key.id().len(), 16);
    }
}
