//! OAuth 2.0 clients (service accounts): creating them with a role and a first secret,
//! listing them, disabling and deleting them, and rotating their secrets. Everything that
//! changes a client is within the delegation ceiling (nobody creates, takes over by a new
//! secret, disables or deletes a client holding a permission they do not), and disabling or
//! deleting revokes its access tokens as for a user, in the transaction of the change.

use iam_core::database::connections::Database;
use std::collections::HashMap;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::ApiConfig;
use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::domain::opaque_secret::{self, OpaqueSecret};
use crate::domain::rbac::{ClientsRead, ClientsWrite, RoleName, within_ceiling};
use crate::domain::revocation;
use crate::error::{AppError, violated_constraint};
use crate::store::clients::{self, ClientRecord, SecretRecord};
use crate::store::roles;

/// The longest client name.
const MAX_NAME_CHARS: usize = 200;
/// Random bytes in a client id (128 bits: unguessable, and never the shape of a UUID).
const CLIENT_ID_BYTES: usize = 16;
/// Every client id starts with this, so that one is told from a user id at a glance.
const CLIENT_ID_PREFIX: &str = "svc-";

/// A client with its secrets' ids and ages.
#[derive(Debug, Clone)]
pub struct Client {
    pub record: ClientRecord,
    pub secrets: Vec<SecretRecord>,
}

/// A new secret, whose value is shown this once.
#[derive(Debug)]
pub struct IssuedSecret {
    pub record: SecretRecord,
    pub value: OpaqueSecret,
}

/// A client's name: trimmed, 1 to 200 characters, no control characters.
fn parse_name(name: &str) -> Result<&str, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::invalid_field(
            "name",
            "must be 1 to 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid_field(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name)
}

/// Whether `id` has the shape of a client id; anything else names no client, and is
/// answered without a database round trip.
pub fn is_client_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn new_client_id() -> Result<String, AppError> {
    let bytes = opaque_secret::random_bytes::<CLIENT_ID_BYTES>()?;
    Ok(format!(
        "{CLIENT_ID_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Creates a client with `role` and its first secret. The role must exist (422) and hold
/// nothing beyond the caller's ceiling (403); the name must be free (409).
pub async fn create(
    permission: &ClientsWrite,
    db: &Database,
    actor: &Actor,
    name: &str,
    role: &str,
) -> Result<(Client, IssuedSecret), AppError> {
    let name = parse_name(name)?;
    let role = RoleName::parse(role).map_err(|why| AppError::invalid_field("role", why))?;
    let mut tx = db.begin().await?;
    // Held until the client exists, so the role cannot gain permissions meanwhile.
    let role = roles::find_for_share(&mut *tx, role.as_str())
        .await?
        .ok_or_else(|| AppError::invalid_field("role", "no such role"))?;
    within_ceiling(permission, &role.permissions)?;
    let record = clients::insert(&mut *tx, &new_client_id()?, name, &role.name)
        .await
        .map_err(|error| match violated_constraint(&error) {
            Some(clients::NAME_UNIQUE_INDEX) => {
                AppError::Conflict(format!("a client named {name:?} exists"))
            }
            Some(clients::ROLE_FOREIGN_KEY) => AppError::invalid_field("role", "no such role"),
            _ => error.into(),
        })?;
    let secret = insert_secret(&mut tx, &record.id).await?;
    let event = AuditEvent::success(EventType::ClientCreated, &record.id)
        .with_detail(json!({ "name": record.name, "role": record.role }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    let client = Client {
        record,
        secrets: vec![secret.record.clone()],
    };
    Ok((client, secret))
}

async fn insert_secret(
    tx: &mut sqlx::PgConnection,
    client_id: &str,
) -> Result<IssuedSecret, AppError> {
    let value = opaque_secret::generate()?;
    let record = clients::insert_secret(&mut *tx, Uuid::now_v7(), client_id, &value.hash).await?;
    Ok(IssuedSecret { record, value })
}

/// Every client, by name, with its secrets' ids.
pub async fn list(_: &ClientsRead, db: &Database) -> Result<Vec<Client>, AppError> {
    let records = clients::list(&mut *db.acquire().await?).await?;
    let ids: Vec<String> = records.iter().map(|client| client.id.clone()).collect();
    let mut secrets_by_client: HashMap<String, Vec<SecretRecord>> = HashMap::new();
    for secret in clients::secrets_of(&mut *db.acquire().await?, &ids).await? {
        secrets_by_client
            .entry(secret.client_id.clone())
            .or_default()
            .push(secret);
    }
    Ok(records
        .into_iter()
        .map(|record| Client {
            secrets: secrets_by_client.remove(&record.id).unwrap_or_default(),
            record,
        })
        .collect())
}

/// The client with this id, with its secrets' ids.
pub async fn get(_: &ClientsRead, db: &Database, id: &str) -> Result<Client, AppError> {
    if !is_client_id(id) {
        return Err(AppError::NotFound("client"));
    }
    let record = clients::find(&mut *db.acquire().await?, id)
        .await?
        .ok_or(AppError::NotFound("client"))?;
    let secrets =
        clients::secrets_of(&mut *db.acquire().await?, std::slice::from_ref(&record.id)).await?;
    Ok(Client { record, secrets })
}

/// Locks the client's row and reads it; 404 when there is none, 403 when it holds a
/// permission beyond the caller's ceiling.
async fn lock_target(
    permission: &ClientsWrite,
    tx: &mut sqlx::PgConnection,
    id: &str,
) -> Result<ClientRecord, AppError> {
    if !is_client_id(id) {
        return Err(AppError::NotFound("client"));
    }
    let target = clients::lock(&mut *tx, id)
        .await?
        .ok_or(AppError::NotFound("client"))?;
    within_ceiling(permission, &target.permissions)?;
    Ok(target)
}

/// Disables (`true`) or enables (`false`) a client. Disabling refuses its token requests and
/// revokes its access tokens everywhere; enabling lets it get tokens again (the old ones stay
/// refused). Setting the state it already has changes nothing.
pub async fn set_disabled(
    permission: &ClientsWrite,
    db: &Database,
    config: &ApiConfig,
    actor: &Actor,
    id: &str,
    disabled: bool,
) -> Result<Client, AppError> {
    let mut tx = db.begin().await?;
    let mut target = lock_target(permission, &mut tx, id).await?;
    if target.disabled != disabled {
        clients::set_disabled(&mut *tx, id, disabled).await?;
        let kind = if disabled {
            revocation::revoke_client_access_tokens(&mut tx, config, &target, Utc::now()).await?;
            EventType::ClientDisabled
        } else {
            EventType::ClientEnabled
        };
        let event = AuditEvent::success(kind, id).with_detail(json!({ "name": target.name }));
        let recorded = audit::record(&mut *tx, actor, event).await?;
        tx.commit().await?;
        recorded.log();
        target.disabled = disabled;
    } else {
        tx.rollback().await?;
    }
    let secrets =
        clients::secrets_of(&mut *db.acquire().await?, std::slice::from_ref(&target.id)).await?;
    Ok(Client {
        record: target,
        secrets,
    })
}

/// Deletes a client and its secrets. Its access tokens are revoked first: the revocation
/// outlives the client in the feed for as long as any of its tokens could be valid.
pub async fn delete(
    permission: &ClientsWrite,
    db: &Database,
    config: &ApiConfig,
    actor: &Actor,
    id: &str,
) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    let target = lock_target(permission, &mut tx, id).await?;
    revocation::revoke_client_access_tokens(&mut tx, config, &target, Utc::now()).await?;
    if !clients::delete(&mut *tx, id).await? {
        return Err(AppError::NotFound("client"));
    }
    let event = AuditEvent::success(EventType::ClientDeleted, id)
        .with_detail(json!({ "name": target.name, "role": target.role }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}

/// Adds a secret to a client; the ones it has stay valid (rotation with overlap). Whoever
/// gets a secret acts as the client, so this is within the ceiling like creating one.
pub async fn add_secret(
    permission: &ClientsWrite,
    db: &Database,
    actor: &Actor,
    id: &str,
) -> Result<IssuedSecret, AppError> {
    let mut tx = db.begin().await?;
    let target = lock_target(permission, &mut tx, id).await?;
    let secret = insert_secret(&mut tx, &target.id).await?;
    let event = AuditEvent::success(EventType::ClientSecretAdded, id)
        .with_detail(json!({ "secret_id": secret.record.id }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(secret)
}

/// Deletes one secret of a client: token requests with it fail from now on (tokens it got
/// stay valid until they expire). The last secret cannot be deleted (409): delete or
/// disable the client instead.
pub async fn delete_secret(
    permission: &ClientsWrite,
    db: &Database,
    actor: &Actor,
    id: &str,
    secret_id: Uuid,
) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    let target = lock_target(permission, &mut tx, id).await?;
    // The client's row lock serialises secret changes, so the count cannot go stale.
    if !clients::delete_secret(&mut *tx, &target.id, secret_id).await? {
        return Err(AppError::NotFound("secret"));
    }
    if clients::count_secrets(&mut *tx, &target.id).await? == 0 {
        return Err(AppError::Conflict(
            "this is the client's last secret: add another first, or delete the client".to_owned(),
        ));
    }
    let event = AuditEvent::success(EventType::ClientSecretDeleted, id)
        .with_detail(json!({ "secret_id": secret_id }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_never_uuids_and_have_the_stored_shape() {
        let id = new_client_id().expect("id");
        assert!(id.starts_with(CLIENT_ID_PREFIX));
        assert!(is_client_id(&id), "{id}");
        assert!(Uuid::parse_str(&id).is_err());
        assert_ne!(new_client_id().expect("id"), id);
        for not_an_id in [
            "",
            "short",
            "svc-has a space-xx",
            &"a".repeat(65),
            "svc-ünicode-xxxxxx",
        ] {
            assert!(!is_client_id(not_an_id), "{not_an_id}");
        }
        assert!(is_client_id(&"a".repeat(64)));
        assert!(is_client_id(&"a".repeat(16)));
        assert!(!is_client_id(&"a".repeat(15)));
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(parse_name("  billing worker ").ok(), Some("billing worker"));
        assert!(parse_name(&"n".repeat(200)).is_ok());
        for bad in ["", "   ", &"n".repeat(201), "a\nb", "tab\there"] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
