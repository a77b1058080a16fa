//! `clients create|list|delete`: service accounts, for the operator, who acts with every
//! permission (no delegation ceiling) but under the same rules as the API otherwise.

use iam_core::database::connections::Database;
use iam_core::process::ProcessError;

use crate::config::ApiConfig;
use crate::domain::audit::Actor;
use crate::domain::clients::{self, Client};
use crate::domain::rbac::{ClientsRead, ClientsWrite, operator};

/// `clients create --name N --role R`: prints the client's id and its secret, once.
pub async fn create(db: &Database, name: &str, role: &str) -> Result<(), ProcessError> {
    match clients::create(
        &operator::<ClientsWrite>(),
        db,
        &Actor::operator(),
        name,
        role,
    )
    .await
    {
        Ok((client, secret)) => {
            println!("client_id={}", client.record.id);
            println!("client_secret={}", secret.value.value);
            eprintln!(
                "created client {:?} with role {}; the secret is shown only now",
                client.record.name, client.record.role
            );
            Ok(())
        }
        Err(error) => Err(super::refusal(error)),
    }
}

/// `clients list`: one line per client.
pub async fn list(db: &Database) -> Result<(), ProcessError> {
    let clients = clients::list(&operator::<ClientsRead>(), db).await?;
    println!(
        "{:<28} {:<32} {:<16} {:<8} {:<7} {:<26}",
        "CLIENT_ID", "NAME", "ROLE", "STATE", "SECRETS", "CREATED"
    );
    clients.iter().for_each(print_client);
    Ok(())
}

fn print_client(client: &Client) {
    let record = &client.record;
    println!(
        "{:<28} {:<32} {:<16} {:<8} {:<7} {:<26}",
        record.id,
        record.name,
        record.role,
        if record.disabled {
            "disabled"
        } else {
            "enabled"
        },
        client.secrets.len(),
        record.created_at.to_rfc3339(),
    );
}

/// `clients delete --client-id C`: its tokens are refused everywhere.
pub async fn delete(
    db: &Database,
    config: &ApiConfig,
    client_id: &str,
) -> Result<(), ProcessError> {
    let writer = operator::<ClientsWrite>();
    match clients::delete(&writer, db, config, &Actor::operator(), client_id).await {
        Ok(()) => {
            println!("{client_id}: deleted; its tokens are refused everywhere");
            Ok(())
        }
        Err(error) => Err(super::refusal(error)),
    }
}
