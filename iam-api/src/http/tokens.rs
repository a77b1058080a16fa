//! `/api/v1/tokens`: the OAuth 2.0 token endpoint (password, refresh and client-credentials
//! grants) and revocation (RFC 7009).

use salvo::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue, PRAGMA};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use serde::Serialize;

use super::auth::anonymous;
use super::client_auth::{self, ClientCredentials};
use super::error::TokenEndpointError;
use super::{Accepts, BodyFields, NoContent, Ok200, app_state, rate_limit};
use crate::domain::client_credentials::{self, ClientToken};
use crate::domain::sessions::{self, TokenPair};
use crate::domain::sign_out;
use crate::error::AppError;

/// A token request, JSON or `application/x-www-form-urlencoded`: one of three grants, told
/// apart by `grant_type` (`password` when it is left out).
// These types only describe the body for the OpenAPI document: the handler reads it leniently
// with `BodyFields` to report every bad field at once. No `discriminator`: OpenAPI requires its
// property, and `grant_type` may be left out of a password grant.
#[allow(dead_code)] // describes the body in the OpenAPI document only
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TokenRequest {
    Password(PasswordGrant),
    RefreshToken(RefreshTokenGrant),
    ClientCredentials(ClientCredentialsGrant),
}

/// `grant_type` of a password grant.
#[allow(dead_code)] // describes the body in the OpenAPI document only
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PasswordGrantType {
    Password,
}

/// `grant_type` of a refresh grant.
#[allow(dead_code)] // describes the body in the OpenAPI document only
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenGrantType {
    RefreshToken,
}

/// `grant_type` of a client-credentials grant.
#[allow(dead_code)] // describes the body in the OpenAPI document only
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientCredentialsGrantType {
    ClientCredentials,
}

/// Password grant: the account's `email` (or OAuth's `username`) and `password`. One of
/// `email` and `username` is needed (400 otherwise); `email` wins when both are sent.
/// `grant_type` may be left out: `password` is the default grant.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"grant_type": "password", "username": "alice@example.com", "password": "correct horse battery"})))]
pub struct PasswordGrant {
    // No doc comment: with one, the $ref is wrapped in an allOf that generators such as
    // openapi-python-client cannot read.
    #[salvo(schema(required = false))]
    pub grant_type: PasswordGrantType,
    /// The account's email; compared after trimming and lowercasing.
    #[salvo(schema(required = false))]
    pub email: Option<String>,
    /// OAuth 2.0 spelling of `email`.
    #[salvo(schema(required = false))]
    pub username: Option<String>,
    /// The account's password. Any string is accepted here: a wrong one is a 401.
    pub password: String,
}

/// Refresh grant: exchanges a refresh token for a new pair; the old token is retired.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"grant_type": "refresh_token", "refresh_token": "0e4lr5Sx1M8pJv3QpXb2Yc7Wq9Zt6Ha4Dk1Nf8Gm2Uo"})))]
pub struct RefreshTokenGrant {
    pub grant_type: RefreshTokenGrantType,
    /// The refresh token of a previous answer; it can be used once.
    pub refresh_token: String,
}

/// Client-credentials grant: a service account's access token. The client's id and secret
/// go in HTTP Basic (`client_secret_basic`) or here (`client_secret_post`), not both.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"grant_type": "client_credentials", "client_id": "svc-3f9a2c41d0b87e65a1c4f0d2b9e87a13", "client_secret": "q7Vn2xL0cR8sT4wY1zB6mK9pD3fH5jN0aE2gU8iO4lQ", "scope": "orders:read"})))]
pub struct ClientCredentialsGrant {
    pub grant_type: ClientCredentialsGrantType,
    /// The client's id, when not sent in HTTP Basic.
    #[salvo(schema(required = false))]
    pub client_id: Option<String>,
    /// The client's secret, when not sent in HTTP Basic.
    #[salvo(schema(required = false))]
    pub client_secret: Option<String>,
    /// Space-separated permissions narrowing the client's role (400 `invalid_scope` for one
    /// the role lacks); without it, the role's permissions.
    #[salvo(schema(required = false))]
    pub scope: Option<String>,
}

/// The fields of a token request as the handler reads them, whatever the grant.
#[derive(Debug)]
struct TokenFields {
    grant_type: Option<String>,
    email: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A revocation request (RFC 7009): JSON or form.
#[allow(dead_code)] // describes the body in the OpenAPI document only
#[derive(Debug, ToSchema)]
#[salvo(schema(example = json!({"token": "0e4lr5Sx1M8pJv3QpXb2Yc7Wq9Zt6Ha4Dk1Nf8Gm2Uo", "token_type_hint": "refresh_token"})))]
pub struct RevokeRequest {
    /// An access token (refused everywhere from now on) or a refresh token (revoked with
    /// every token of its family). `refresh_token` is accepted as this field's name too.
    pub token: String,
    /// A hint only (RFC 7009 §2.1): the token's own form decides what it is, so any string
    /// is accepted.
    #[salvo(schema(required = false))]
    pub token_type_hint: Option<String>,
}

/// A new access token and the refresh token that renews it.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiI1ZjBjIn0.c2lnbmF0dXJl", "token_type": "Bearer", "expires_in": 86400, "refresh_token": "0e4lr5Sx1M8pJv3QpXb2Yc7Wq9Zt6Ha4Dk1Nf8Gm2Uo", "refresh_expires_in": 432000})))]
pub struct TokenPairResponse {
    /// An RS256 JWT (RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; can be used once.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
}

/// An access token for a client (client credentials): no refresh token, since the client
/// can ask again with its secret.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiI1ZjBjIn0.c2lnbmF0dXJl", "token_type": "Bearer", "expires_in": 86400, "scope": "orders:read"})))]
pub struct ClientTokenResponse {
    /// An RS256 JWT (RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted permissions, space-separated; absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// What the token endpoint answers: a token pair, or a client's access token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TokenResponse {
    Pair(TokenPairResponse),
    Client(ClientTokenResponse),
}

impl From<ClientToken> for ClientTokenResponse {
    fn from(token: ClientToken) -> Self {
        ClientTokenResponse {
            access_token: token.access_token,
            token_type: "Bearer",
            expires_in: token.expires_in,
            scope: token.scope,
        }
    }
}

impl From<TokenPair> for TokenPairResponse {
    fn from(pair: TokenPair) -> Self {
        TokenPairResponse {
            access_token: pair.access_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: pair.refresh_token,
            refresh_expires_in: pair.refresh_expires_in,
        }
    }
}

/// Token responses must never be cached (RFC 6749 §5.1).
fn forbid_caching(res: &mut Response) {
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Issues a token pair for a password or a refresh token, or an access token for a client.
/// Every error carries the RFC 6749 `error` member.
#[endpoint(
    tags("tokens"),
    request_body(
        content = TokenRequest,
        content_type = "application/json",
        description = "One of the three grants, as JSON or (documented beside it) as an OAuth 2.0 form",
        examples(
            ("password" = (summary = "Password grant", value = json!({"grant_type": "password", "username": "alice@example.com", "password": "correct horse battery"}))),
            ("refresh_token" = (summary = "Refresh grant", value = json!({"grant_type": "refresh_token", "refresh_token": "0e4lr5Sx1M8pJv3QpXb2Yc7Wq9Zt6Ha4Dk1Nf8Gm2Uo"}))),
            ("client_credentials" = (summary = "Client credentials, secret in the body (client_secret_post)", value = json!({"grant_type": "client_credentials", "client_id": "svc-3f9a2c41d0b87e65a1c4f0d2b9e87a13", "client_secret": "q7Vn2xL0cR8sT4wY1zB6mK9pD3fH5jN0aE2gU8iO4lQ", "scope": "orders:read"}))),
        )
    ),
    responses(
        (status_code = 200, description = "A new token pair, or (client credentials) an access token", body = TokenResponse),
        (status_code = 400, description = "Malformed body, missing fields, unsupported grant_type (unsupported_grant_type) or a scope beyond the client's role (invalid_scope)"),
        (status_code = 401, description = "Invalid credentials, an invalid, expired or reused refresh token (invalid_grant), or a failed client authentication (invalid_client, with WWW-Authenticate: Basic)"),
        (status_code = 413, description = "Body over 64 KiB"),
        (status_code = 415, description = "Neither JSON nor form"),
        (status_code = 422, description = "A field is not a string"),
        (status_code = 429, description = "Too many failed logins for this account or client; see Retry-After"),
        (status_code = 503, description = "Busy or database unavailable; see Retry-After"),
    )
)]
pub async fn issue_tokens(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<Ok200<TokenResponse>, TokenEndpointError> {
    forbid_caching(res);
    let state = app_state(depot)?;
    rate_limit::admit(req, state)?;
    let mut body = BodyFields::read(req, Accepts::JsonOrForm).await?;
    let request = TokenFields {
        grant_type: body.optional_string("grant_type"),
        email: body.optional_string("email"),
        username: body.optional_string("username"),
        password: body.optional_string("password"),
        refresh_token: body.optional_string("refresh_token"),
        scope: body.optional_string("scope"),
        client_id: body.optional_string("client_id"),
        client_secret: body.optional_string("client_secret"),
    };
    body.finish()?;
    let actor = anonymous(req, state);
    match request.grant_type.as_deref() {
        None | Some("password") => {
            let (Some(email), Some(password)) =
                (request.email.or(request.username), request.password)
            else {
                return Err(AppError::BadRequest(
                    "the password grant needs email (or username) and password".to_owned(),
                )
                .into());
            };
            let result = sessions::login(state, &actor, &email, &password).await;
            state.metrics.grant("password", grant_outcome(&result));
            Ok(Ok200(TokenResponse::Pair(result?.into())))
        }
        Some("refresh_token") => {
            let Some(refresh_token) = request.refresh_token else {
                return Err(AppError::BadRequest(
                    "the refresh_token grant needs refresh_token".to_owned(),
                )
                .into());
            };
            let result = sessions::refresh(state, &actor, &refresh_token).await;
            state.metrics.grant("refresh_token", grant_outcome(&result));
            Ok(Ok200(TokenResponse::Pair(result?.into())))
        }
        Some("client_credentials") => {
            // Only this grant authenticates a client: the others ignore an Authorization
            // header (some OAuth libraries send the public client's id in one).
            let basic = basic_credentials(req)?;
            let credentials = client_auth::choose(basic, request.client_id, request.client_secret)?
                .ok_or(AppError::InvalidClient)?;
            let result = client_credentials::issue(
                state,
                &actor,
                &credentials.client_id,
                &credentials.client_secret,
                request.scope.as_deref(),
            )
            .await;
            state
                .metrics
                .grant("client_credentials", grant_outcome(&result));
            Ok(Ok200(TokenResponse::Client(result?.into())))
        }
        Some(other) => Err(AppError::UnsupportedGrantType(format!(
            "{other:?}: use password, refresh_token or client_credentials"
        ))
        .into()),
    }
}

/// The client credentials of the request's `Authorization: Basic` header, if it has one;
/// more than one `Authorization` header is a 400.
fn basic_credentials(req: &Request) -> Result<Option<ClientCredentials>, AppError> {
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(iam_core::bearer::DuplicateAuthorization.into());
    }
    client_auth::from_basic(value.as_bytes())
}

/// The metric label for how a grant ended.
fn grant_outcome<T>(result: &Result<T, AppError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(AppError::InvalidCredentials) => "invalid_credentials",
        Err(AppError::InvalidRefreshToken) => "invalid_grant",
        Err(AppError::InvalidClient) => "invalid_client",
        Err(AppError::InvalidScope(_)) => "invalid_scope",
        Err(AppError::Throttled { .. } | AppError::ClientThrottled { .. }) => "throttled",
        Err(AppError::Busy { .. }) => "busy",
        Err(AppError::DatabaseUnavailable(_)) => "unavailable",
        Err(_) => "error",
    }
}

/// Revokes a token: an access token everywhere, or a refresh token and its whole family.
///
/// Answers 204 for unknown tokens too (RFC 7009), so the answer says nothing about which
/// tokens exist.
#[endpoint(
    tags("tokens"),
    request_body(
        content = RevokeRequest,
        content_type = "application/json",
        description = "The token to revoke, as JSON or (documented beside it) as an OAuth 2.0 form"
    ),
    responses(
        (status_code = 204, description = "Revoked (or never existed)"),
        (status_code = 400, description = "Malformed body or no token"),
        (status_code = 413, description = "Body over 64 KiB"),
        (status_code = 415, description = "Neither JSON nor form"),
    )
)]
pub async fn revoke_token(req: &mut Request, depot: &mut Depot) -> Result<NoContent, AppError> {
    let state = app_state(depot)?;
    let mut body = BodyFields::read(req, Accepts::JsonOrForm).await?;
    let token = body
        .optional_string("token")
        .or_else(|| body.optional_string("refresh_token"));
    // RFC 7009 §2.1: a hint only; the token's own form decides what it is.
    let _hint = body.optional_string("token_type_hint");
    if body.finish().is_err() {
        return Err(AppError::BadRequest("token must be a string".to_owned()));
    }
    let token = token.ok_or_else(|| AppError::BadRequest("token is required".to_owned()))?;
    sign_out::revoke(state, &anonymous(req, state), &token).await?;
    Ok(NoContent)
}

/// The token routes.
pub fn router() -> Router {
    Router::with_path("tokens")
        .post(issue_tokens)
        .push(Router::with_path("revoke").post(revoke_token))
}
