//! The operator commands: `keys list|rotate|import` and `admin create`.

use std::io::Read as _;
use std::path::Path;

use chrono::Utc;
use iam_core::process::ProcessError;

use crate::config::ApiConfig;
use crate::domain::email::Email;
use crate::domain::keys::{self, SigningKeyState};
use crate::domain::password::{Password, PasswordHasherPool};
use crate::domain::users::{self, AdminOutcome, ExistingAccount};
use crate::error::AppError;
use crate::metrics::HashPoolObserver;
use crate::store::signing_keys::{self, SigningKeyRecord};

/// `keys list`: one line per key with its state and timestamps.
pub async fn list_keys(db: &sqlx::PgPool) -> Result<(), ProcessError> {
    let keys = signing_keys::list_all(db).await.map_err(AppError::from)?;
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
    db: &sqlx::PgPool,
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
        Err(AppError::Validation(errors)) => Err(ProcessError::config(
            errors
                .into_iter()
                .map(|error| format!("{}: {}", error.field, error.message))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Err(AppError::Conflict(why)) => Err(ProcessError::config(why)),
        Err(error) => Err(error.into()),
    }
}

/// `admin create --email E --password-stdin [--promote]`: creates an admin; an existing
/// non-admin account is refused (exit 2) unless `--promote` is given.
pub async fn create_admin(
    db: &sqlx::PgPool,
    config: &ApiConfig,
    email: &str,
    password_stdin: bool,
    promote: bool,
) -> Result<(), ProcessError> {
    if !password_stdin {
        return Err(ProcessError::config(
            "pass the password on standard input with --password-stdin".to_owned(),
        ));
    }
    let email =
        Email::parse(email).map_err(|why| ProcessError::config(format!("--email {why}")))?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|error| ProcessError::config(format!("cannot read the password: {error}")))?;
    // Only the line ending that `echo` adds is removed; other whitespace is part of it.
    let line = input.strip_suffix('\n').unwrap_or(&input);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let password =
        Password::parse(line).map_err(|why| ProcessError::config(format!("password {why}")))?;
    let hasher = PasswordHasherPool::start(config.password_hash, 1, 1, HashPoolObserver::default())
        .map_err(ProcessError::config)?;
    let existing = if promote {
        ExistingAccount::Promote
    } else {
        ExistingAccount::Refuse
    };
    let (user, outcome) =
        match users::ensure_admin(db, config, &hasher, &email, &password, existing).await {
            Ok(done) => done,
            // The refusal is the operator's to act on: exit 2 with the reason.
            Err(AppError::Conflict(why)) => return Err(ProcessError::config(why)),
            Err(error) => return Err(error.into()),
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
