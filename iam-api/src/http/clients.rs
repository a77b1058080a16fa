//! `/api/v1/clients`: OAuth 2.0 clients (service accounts) and their secrets.

use chrono::{DateTime, Utc};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use salvo_oapi::extract::PathParam;
use serde::Serialize;
use uuid::Uuid;

use super::auth::{Authorized, authorize};
use super::{Accepts, BodyFields, Created, NoContent, Ok200};
use crate::domain::clients::{self, Client, IssuedSecret};
use crate::domain::rbac::{ClientsRead, ClientsWrite};
use crate::error::AppError;
use crate::store::clients::SecretRecord;

/// One secret of a client: its id and age (the value is shown only when it is made).
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"secret_id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "created_at": "2026-12-01T09:30:00Z"})))]
pub struct SecretResponse {
    pub secret_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<SecretRecord> for SecretResponse {
    fn from(secret: SecretRecord) -> Self {
        SecretResponse {
            secret_id: secret.id,
            created_at: secret.created_at,
        }
    }
}

/// A client (service account).
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"client_id": "svc-3f9a2c41d0b87e65a1c4f0d2b9e87a13", "name": "billing-worker", "role": "billing", "disabled": false, "created_at": "2026-12-01T09:30:00Z", "secrets": [{"secret_id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "created_at": "2026-12-01T09:30:00Z"}]})))]
pub struct ClientResponse {
    /// Random and URL-safe; the `sub` and `client_id` of its tokens.
    pub client_id: String,
    pub name: String,
    pub role: String,
    /// A disabled client gets no tokens, and those it had are refused.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Its secrets, oldest first.
    pub secrets: Vec<SecretResponse>,
}

impl From<Client> for ClientResponse {
    fn from(client: Client) -> Self {
        ClientResponse {
            client_id: client.record.id,
            name: client.record.name,
            role: client.record.role,
            disabled: client.record.disabled,
            created_at: client.record.created_at,
            secrets: client.secrets.into_iter().map(Into::into).collect(),
        }
    }
}

/// A new client and its first secret.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"client_id": "svc-3f9a2c41d0b87e65a1c4f0d2b9e87a13", "name": "billing-worker", "role": "billing", "disabled": false, "created_at": "2026-12-01T09:30:00Z", "secrets": [{"secret_id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "created_at": "2026-12-01T09:30:00Z"}], "client_secret": "q7Vn2xL0cR8sT4wY1zB6mK9pD3fH5jN0aE2gU8iO4lQ"})))]
pub struct CreatedClientResponse {
    #[serde(flatten)]
    pub client: ClientResponse,
    /// The secret's value: shown only here, stored only as a hash.
    pub client_secret: String,
}

/// A new secret of a client.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"secret_id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "created_at": "2026-12-01T09:30:00Z", "client_secret": "q7Vn2xL0cR8sT4wY1zB6mK9pD3fH5jN0aE2gU8iO4lQ"})))]
pub struct CreatedSecretResponse {
    pub secret_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The secret's value: shown only here, stored only as a hash.
    pub client_secret: String,
}

impl From<IssuedSecret> for CreatedSecretResponse {
    fn from(secret: IssuedSecret) -> Self {
        CreatedSecretResponse {
            secret_id: secret.record.id,
            created_at: secret.record.created_at,
            client_secret: secret.value.value,
        }
    }
}

/// Every client.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"items": [{"client_id": "svc-3f9a2c41d0b87e65a1c4f0d2b9e87a13", "name": "billing-worker", "role": "billing", "disabled": false, "created_at": "2026-12-01T09:30:00Z", "secrets": [{"secret_id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "created_at": "2026-12-01T09:30:00Z"}]}]})))]
pub struct ClientListResponse {
    pub items: Vec<ClientResponse>,
}

/// A new client.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"name": "billing-worker", "role": "billing"})))]
pub struct CreateClientRequest {
    /// 1 to 200 characters after trimming, no control characters; unique.
    #[salvo(schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// The name of an existing role, holding nothing beyond the caller's permissions.
    #[salvo(schema(pattern = r"^[a-z][a-z0-9_.-]{1,62}$"))]
    pub role: String,
}

/// A change of a client's state.
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"disabled": true})))]
pub struct UpdateClientRequest {
    /// `true` disables the client (its tokens are refused, it gets no new ones).
    pub disabled: bool,
}

/// Creates a client with a role and its first secret (requires `iam:clients:write`).
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    request_body = CreateClientRequest,
    responses(
        (status_code = 201, description = "Created; client_secret is shown only here", body = CreatedClientResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:write, or the role holds a permission the caller lacks"),
        (status_code = 409, description = "A client with this name exists"),
        (status_code = 422, description = "Invalid name, or unknown or invalid role"),
    )
)]
pub async fn create_client(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<CreatedClientResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<ClientsWrite>(req, depot).await?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = CreateClientRequest {
        name: body.required_string("name"),
        role: body.required_string("role"),
    };
    body.finish()?;
    let (client, secret) =
        clients::create(&permission, &state.db, &actor, &request.name, &request.role).await?;
    Ok(Created {
        location: format!("/api/v1/clients/{}", client.record.id),
        body: CreatedClientResponse {
            client: client.into(),
            client_secret: secret.value.value,
        },
    })
}

/// Lists every client by name (requires `iam:clients:read`); never a secret.
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "Every client", body = ClientListResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:read"),
    )
)]
pub async fn list_clients(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Ok200<ClientListResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<ClientsRead>(req, depot).await?;
    let items = clients::list(&permission, &state.db).await?;
    Ok(Ok200(ClientListResponse {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// One client, with its secrets' ids (requires `iam:clients:read`); never a secret.
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    responses(
        (status_code = 200, description = "The client", body = ClientResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:read"),
        (status_code = 404, description = "No such client"),
    )
)]
pub async fn get_client(
    req: &mut Request,
    depot: &mut Depot,
    client_id: PathParam<String>,
) -> Result<Ok200<ClientResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<ClientsRead>(req, depot).await?;
    let client = clients::get(&permission, &state.db, &client_id).await?;
    Ok(Ok200(client.into()))
}

/// Disables or enables a client (requires `iam:clients:write`). Disabling refuses its
/// token requests and revokes its access tokens (here at once, at sidecars through the
/// revocation feed).
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    request_body = UpdateClientRequest,
    responses(
        (status_code = 200, description = "The client as it is now", body = ClientResponse),
        (status_code = 400, description = "Malformed JSON"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:write, or the client holds a permission the caller lacks"),
        (status_code = 404, description = "No such client"),
        (status_code = 422, description = "disabled missing or not a boolean"),
    )
)]
pub async fn update_client(
    req: &mut Request,
    depot: &mut Depot,
    client_id: PathParam<String>,
) -> Result<Ok200<ClientResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<ClientsWrite>(req, depot).await?;
    let mut body = BodyFields::read(req, Accepts::Json).await?;
    let request = UpdateClientRequest {
        disabled: body.required_bool("disabled"),
    };
    body.finish()?;
    let client = clients::set_disabled(
        &permission,
        &state.db,
        &state.config,
        &actor,
        &client_id,
        request.disabled,
    )
    .await?;
    Ok(Ok200(client.into()))
}

/// Deletes a client and its secrets (requires `iam:clients:write`); its tokens stop working
/// everywhere, as a deleted user's do.
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    responses(
        (status_code = 204, description = "Deleted"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:write, or the client holds a permission the caller lacks"),
        (status_code = 404, description = "No such client"),
    )
)]
pub async fn delete_client(
    req: &mut Request,
    depot: &mut Depot,
    client_id: PathParam<String>,
) -> Result<NoContent, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<ClientsWrite>(req, depot).await?;
    clients::delete(&permission, &state.db, &state.config, &actor, &client_id).await?;
    Ok(NoContent)
}

/// Adds a secret to a client (requires `iam:clients:write`); its other secrets stay valid,
/// so a new one can be rolled out before the old one is deleted.
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    responses(
        (status_code = 201, description = "Added; client_secret is shown only here", body = CreatedSecretResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:write, or the client holds a permission the caller lacks"),
        (status_code = 404, description = "No such client"),
    )
)]
pub async fn add_secret(
    req: &mut Request,
    depot: &mut Depot,
    client_id: PathParam<String>,
) -> Result<Created<CreatedSecretResponse>, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<ClientsWrite>(req, depot).await?;
    let secret = clients::add_secret(&permission, &state.db, &actor, &client_id).await?;
    Ok(Created {
        location: format!(
            "/api/v1/clients/{}/secrets/{}",
            secret.record.client_id, secret.record.id
        ),
        body: secret.into(),
    })
}

/// Deletes one secret of a client (requires `iam:clients:write`): token requests with it
/// fail from now on. The last secret cannot be deleted.
#[endpoint(
    tags("clients"),
    security(("bearer" = [])),
    responses(
        (status_code = 204, description = "Deleted"),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:clients:write, or the client holds a permission the caller lacks"),
        (status_code = 404, description = "No such client or secret"),
        (status_code = 409, description = "It is the client's last secret"),
    )
)]
pub async fn delete_secret(
    req: &mut Request,
    depot: &mut Depot,
    client_id: PathParam<String>,
    secret_id: PathParam<String>,
) -> Result<NoContent, AppError> {
    let Authorized {
        state,
        permission,
        actor,
    } = authorize::<ClientsWrite>(req, depot).await?;
    // A malformed id cannot name a secret.
    let secret_id = Uuid::parse_str(&secret_id).map_err(|_| AppError::NotFound("secret"))?;
    clients::delete_secret(&permission, &state.db, &actor, &client_id, secret_id).await?;
    Ok(NoContent)
}

/// The client routes.
pub fn router() -> Router {
    Router::with_path("clients")
        .post(create_client)
        .get(list_clients)
        .push(
            Router::with_path("{client_id}")
                .get(get_client)
                .patch(update_client)
                .delete(delete_client)
                .push(
                    Router::with_path("secrets")
                        .post(add_secret)
                        .push(Router::with_path("{secret_id}").delete(delete_secret)),
                ),
        )
}
