//! The operator commands: `keys list|rotate|import`, `admin create` and (in `users`)
//! `users list|disable|enable|delete|set-role|set-password`, and (in `clients`)
//! `clients create|list|delete`.

pub mod clients;
pub mod users;

use iam_core::database::connections::Database;
use std::io::Read as _;
use std::path::Path;

use chrono::Utc;
use iam_core::process::ProcessError;

use crate::config::ApiConfig;
use crate::domain::accounts::Accounts;
use crate::domain::audit::Actor;
use crate::domain::email::Email;
use crate::domain::keys::{self, SigningKeyState};
use crate::domain::password::{Password, PasswordHasherPool};
use crate::domain::users::{AdminOutcome, ExistingAccount, ensure_admin};
use crate::error::AppError;
use crate::metrics::HashPoolObserver;
use crate::store::signing_keys::{self, SigningKeyRecord};

/// `keys list`: one line per key with its state and timestamps.
pub async fn list_keys(db: &Database) -> Result<(), ProcessError> {
    let keys = async { signing_keys::list_all(&mut *db.acquire().await?).await }
        .await
        .map_err(AppError::from)?;
    let now = Utc::now();
    println!(
        "{:<44} {:<12} {:<26} {:<26} {:<26}",
        "KID", "STATE", "CREATED", "ACTIVATES", "RETIRES"
    );
    for key in &keys {
        print_key(key, SigningKeyState::of(key, now));
    }
    Ok(())
}

fn print_key(key: &SigningKeyRecord, state: SigningKeyState) {
    let format =
        |at: Option<chrono::DateTime<Utc>>| at.map_or_else(|| "-".to_owned(), |at| at.to_rfc3339());
    println!(
        "{:<44} {:<12} {:<26} {:<26} {:<26}",
        key.kid,
        state.as_str(),
        format(Some(key.created_at)),
        format(Some(key.activates_at)),
        format(key.retires_at),
    );
}

/// `keys rotate` and `keys import`: a new key, published now, signing after the grace.
pub async fn rotate_key(
    db: &Database,
    config: &ApiConfig,
    pem_file: Option<&Path>,
) -> Result<(), ProcessError> {
    let pem = match pem_file {
        Some(path) => Some(std::fs::read(path).map_err(|error| {
            ProcessError::config(format!("cannot read {}: {error}", path.display()))
        })?),
        None => None,
    };
    match keys::rotate(
        db,
        &config.key_encryption_key,
        config.rotation_policy(),
        &Actor::operator(),
        pem.as_deref(),
    )
    .await
    {
        Ok(key) => {
            println!(
                "key {} is published now and signs from {} (KEY_ROTATION_GRACE = {} s)",
                key.kid,
                key.activates_at.to_rfc3339(),
                config.key_rotation_grace.as_secs()
            );
            Ok(())
        }
        Err(error) => Err(refusal(error)),
    }
}

/// A command's error as its exit: what the operator can act on (bad input, a conflict, a
/// missing account) exits 2 with the reason; anything else is the process's own failure.
fn refusal(error: AppError) -> ProcessError {
    match error {
        AppError::Validation(errors) => ProcessError::config(
            errors
                .into_iter()
                .map(|error| format!("{}: {}", error.field, error.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        AppError::Conflict(why) => ProcessError::config(why),
        AppError::NotFound(what) => ProcessError::config(format!("no such {what}")),
        error => error.into(),
    }
}

/// `admin create --email E --password-stdin [--promote]`: creates an admin; an existing
/// non-admin account is refused (exit 2) unless `--promote` is given.
pub async fn create_admin(
    db: &Database,
    config: &ApiConfig,
    email: &str,
    password_stdin: bool,
    promote: bool,
) -> Result<(), ProcessError> {
    let email = parse_email(email)?;
    let password = read_password(password_stdin)?;
    let hasher = start_hasher(config)?;
    let accounts = Accounts {
        db,
        config,
        hasher: &hasher,
    };
    let existing = if promote {
        ExistingAccount::Promote
    } else {
        ExistingAccount::Refuse
    };
    let (user, outcome) =
        match ensure_admin(&accounts, &Actor::operator(), &email, &password, existing).await {
            Ok(done) => done,
            Err(error) => return Err(refusal(error)),
        };
    let what = match outcome {
        AdminOutcome::Created => "created admin".to_owned(),
        AdminOutcome::Promoted { revoked_sessions } => format!(
            "promoted to admin with the new password; {revoked_sessions} refresh token(s) revoked"
        ),
        AdminOutcome::AlreadyAdmin => "already an admin (nothing changed)".to_owned(),
    };
    println!("{what}: {} {}", user.id, user.email);
    Ok(())
}

/// `--email`, parsed as the api parses emails.
fn parse_email(email: &str) -> Result<Email, ProcessError> {
    Email::parse(email).map_err(|why| ProcessError::config(format!("--email {why}")))
}

/// The password given on standard input (`--password-stdin`, which must be there: a
/// password on the command line would show in the process list). Only the line ending that
/// `echo` adds is removed; other whitespace is part of it.
pub fn read_password(password_stdin: bool) -> Result<Password, ProcessError> {
    if !password_stdin {
        return Err(ProcessError::config(
            "pass the password on standard input with --password-stdin".to_owned(),
        ));
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| ProcessError::config(format!("cannot read the password: {error}")))?;
    let line = input.strip_suffix('\n').unwrap_or(&input);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Password::parse(line).map_err(|why| ProcessError::config(format!("password {why}")))
}

/// One hashing thread: a command hashes at most one password.
fn start_hasher(config: &ApiConfig) -> Result<PasswordHasherPool, ProcessError> {
    PasswordHasherPool::start(config.password_hash, 1, 1, HashPoolObserver::default())
        .map_err(ProcessError::config)
}
