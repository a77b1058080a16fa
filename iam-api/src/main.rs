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
            let state = startup::build_state(config, db).await?;
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
                Command::Migrate => Ok(()),
            };
            db.close().await;
            result
        }
    }
}
