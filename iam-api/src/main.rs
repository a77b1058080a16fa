//! iam-api: the identity service. Parses the command line, reads the configuration, builds
//! the runtime and hands over to `startup` or `cli`.

mod app;
mod cli;
mod config;
mod domain;
mod error;
mod http;
mod metrics;
mod startup;
mod state;
mod store;

use iam_core::database::connections::Database;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iam_core::config::{ProcessConfig as _, Profile};
use iam_core::process::{self, ProcessError};

use crate::config::ApiConfig;

/// The IAM identity service.
#[derive(Debug, Parser)]
#[command(name = "iam-api", version, about)]
struct Cli {
    /// Configuration profile: local works without any environment; stage and prod require
    /// POSTGRES_CONNECTION_STRING and IAM_KEY_ENCRYPTION_KEY.
    #[arg(long, default_value = "local", global = true)]
    config: Profile,
    /// Apply the SQL migrations before serving (safe when several replicas start at once).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    migrate: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the SQL migrations and exit (what a deployment's one-off migration job runs).
    Migrate,
    /// Manage token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
    /// Manage user accounts (as the operator: every permission, and the same rules as the API).
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Manage OAuth 2.0 clients (service accounts).
    Clients {
        #[command(subcommand)]
        action: ClientsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Create a client with a role; prints its client_id and secret (shown only once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
    },
    /// List clients (id, name, role, state, number of secrets, creation time).
    List,
    /// Delete a client; its tokens are refused everywhere.
    Delete {
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List users (ID, email, role, state, creation time), or the one with --email.
    List {
        #[arg(long)]
        email: Option<String>,
    },
    /// Disable an account: every session ends at once everywhere, and it cannot log in.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Delete an account; its tokens are refused everywhere.
    Delete {
        #[arg(long)]
        email: String,
    },
    /// Give an account another role.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Set an account's password; every session of the account ends.
    SetPassword {
        #[arg(long)]
        email: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List keys with their state and timestamps.
    List,
    /// Create a new key: published now, signing after KEY_ROTATION_GRACE.
    Rotate,
    /// Bring your own RSA key (PKCS#8 or PKCS#1 PEM, at least 2048 bits); rotates to it.
    Import {
        #[arg(long)]
        pem_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin. An existing non-admin account with that email is refused unless
    /// --promote is given.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make an existing non-admin account admin: its password becomes the given one and
        /// every session it has is revoked.
        #[arg(long)]
        promote: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::run_service(
        "iam-api",
        ApiConfig::from_env(cli.config),
        |config| &config.common,
        |config| run(cli, config),
    )
}

async fn run(cli: Cli, config: ApiConfig) -> Result<(), ProcessError> {
    match cli.command {
        None => {
            let db = startup::open_database(&config, cli.migrate).await?;
            let read_db = startup::open_read_database(&config, &db)?;
            let state = startup::build_state(config, db, read_db).await?;
            startup::serve(state).await
        }
        Some(Command::Migrate) => {
            let db = startup::open_database(&config, true).await?;
            db.close().await;
            Ok(())
        }
        Some(command) => {
            // Commands need the current schema too, and may create it when asked.
            let db = startup::open_database(&config, cli.migrate).await?;
            let result = match command {
                Command::Keys {
                    action: KeysCommand::List,
                } => cli::list_keys(&db).await,
                Command::Keys {
                    action: KeysCommand::Rotate,
                } => cli::rotate_key(&db, &config, None).await,
                Command::Keys {
                    action: KeysCommand::Import { pem_file },
                } => cli::rotate_key(&db, &config, Some(&pem_file)).await,
                Command::Admin {
                    action:
                        AdminCommand::Create {
                            email,
                            password_stdin,
                            promote,
                        },
                } => cli::create_admin(&db, &config, &email, password_stdin, promote).await,
                Command::Users { action } => run_users_command(&db, &config, action).await,
                Command::Clients { action } => match action {
                    ClientsCommand::Create { name, role } => {
                        cli::clients::create(&db, &name, &role).await
                    }
                    ClientsCommand::List => cli::clients::list(&db).await,
                    ClientsCommand::Delete { client_id } => {
                        cli::clients::delete(&db, &config, &client_id).await
                    }
                },
                Command::Migrate => Ok(()),
            };
            db.close().await;
            result
        }
    }
}

async fn run_users_command(
    db: &Database,
    config: &ApiConfig,
    action: UsersCommand,
) -> Result<(), ProcessError> {
    use cli::users::AccountChange;
    let (email, change) = match action {
        UsersCommand::List { email } => return cli::users::list(db, email.as_deref()).await,
        UsersCommand::Disable { email } => (email, AccountChange::Disable),
        UsersCommand::Enable { email } => (email, AccountChange::Enable),
        UsersCommand::Delete { email } => (email, AccountChange::Delete),
        UsersCommand::SetRole { email, role } => (email, AccountChange::SetRole(role)),
        UsersCommand::SetPassword {
            email,
            password_stdin,
        } => (
            email,
            AccountChange::SetPassword(cli::read_password(password_stdin)?),
        ),
    };
    cli::users::change(db, config, &email, change).await
}
