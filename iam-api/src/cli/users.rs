//! `users list|disable|enable|delete|set-role|set-password`: the account changes of the API,
//! for the operator, who acts with every permission (no delegation ceiling) but under the
//! same rules otherwise: the last enabled admin stays, and every change that ends sessions
//! revokes them everywhere.

use iam_core::database::connections::Database;
use iam_core::process::ProcessError;

use super::{parse_email, start_hasher};
use crate::config::ApiConfig;
use crate::domain::accounts::{self, Accounts};
use crate::domain::audit::Actor;
use crate::domain::password::Password;
use crate::domain::rbac::{UsersRead, UsersWrite, operator};
use crate::domain::{paging, users};
use crate::error::AppError;
use crate::store::users::UserRecord;

/// What `users` does to the account named by `--email`.
#[derive(Debug)]
pub enum AccountChange {
    Disable,
    Enable,
    Delete,
    SetRole(String),
    /// The password as read from standard input ([`super::read_password`]).
    SetPassword(Password),
}

/// `users list [--email E]`: every user (or the one with that email), one line each,
/// printed page by page.
pub async fn list(db: &Database, email: Option<&str>) -> Result<(), ProcessError> {
    let reader = operator::<UsersRead>();
    println!(
        "{:<36} {:<40} {:<16} {:<8} {:<26}",
        "ID", "EMAIL", "ROLE", "STATE", "CREATED"
    );
    if let Some(email) = email {
        let email = parse_email(email)?;
        if let Some(user) = users::find_by_email(&reader, db, email.as_str()).await? {
            print_user(&user);
        }
        return Ok(());
    }
    let mut after = None;
    loop {
        let page = users::list(&reader, db, after, Some(paging::MAX_PAGE_SIZE)).await?;
        page.items.iter().for_each(print_user);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

fn print_user(user: &UserRecord) {
    println!(
        "{:<36} {:<40} {:<16} {:<8} {:<26}",
        user.id,
        user.email,
        user.role,
        if user.disabled { "disabled" } else { "enabled" },
        user.created_at.to_rfc3339(),
    );
}

/// `users disable|enable|delete|set-role|set-password --email E`.
pub async fn change(
    db: &Database,
    config: &ApiConfig,
    email: &str,
    change: AccountChange,
) -> Result<(), ProcessError> {
    let email = parse_email(email)?;
    let Some(user) = users::find_by_email(&operator::<UsersRead>(), db, email.as_str()).await?
    else {
        return Err(ProcessError::config(format!(
            "no user has the email {}",
            email.as_str()
        )));
    };
    let hasher = start_hasher(config)?;
    let accounts = Accounts {
        db,
        config,
        hasher: &hasher,
    };
    let writer = operator::<UsersWrite>();
    let operator = Actor::operator();
    let done = match change {
        AccountChange::Disable => {
            accounts::set_disabled(&writer, &accounts, &operator, user.id, true)
                .await
                .map(|_| "disabled; every session of the account has ended".to_owned())
        }
        AccountChange::Enable => {
            accounts::set_disabled(&writer, &accounts, &operator, user.id, false)
                .await
                .map(|_| "enabled".to_owned())
        }
        AccountChange::Delete => accounts::delete(&writer, &accounts, &operator, user.id)
            .await
            .map(|()| "deleted; its tokens are refused everywhere".to_owned()),
        AccountChange::SetRole(role) => {
            users::assign_role(&writer, &accounts, &operator, user.id, &role)
                .await
                .map(|user| format!("role is now {}", user.role))
        }
        AccountChange::SetPassword(password) => {
            accounts::set_password(&writer, &accounts, &operator, user.id, password)
                .await
                .map(|()| "password set; every session of the account has ended".to_owned())
        }
    };
    match done {
        Ok(what) => {
            println!("{} {}: {what}", user.id, user.email);
            Ok(())
        }
        Err(AppError::NotFound(_)) => Err(ProcessError::config(format!(
            "no user has the email {}",
            email.as_str()
        ))),
        Err(error) => Err(super::refusal(error)),
    }
}
