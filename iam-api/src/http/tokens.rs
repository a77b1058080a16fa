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

/// A token request. JSON or `application/x-www-form-urlencoded`.
///
/// Password grant: `{"email", "password"}` (or OAuth's `grant_type=password`, `username`,
/// `password`). Refresh grant: `{"grant_type": "refresh_token", "refresh_token"}`. Client
/// credentials: `grant_type=client_credentials`, optional `scope`, and the client's id and
/// secret in HTTP Basic or as `client_id` and `client_secret`.
#[derive(Debug, ToSchema)]
pub struct TokenRequest {
    /// `password` (the default), `refresh_token` or `client_credentials`.
    pub grant_type: Option<String>,
    /// The account's email (password grant).
    pub email: Option<String>,
    /// OAuth 2.0 spelling of `email` (password grant).
    pub username: Option<String>,
    /// The password (password grant).
    pub password: Option<String>,
    /// The refresh token to exchange (refresh grant).
    pub refresh_token: Option<String>,
    /// Space-separated permissions narrowing the client's role (client credentials).
    pub scope: Option<String>,
    /// The client's id, when not sent in HTTP Basic (client credentials).
    pub client_id: Option<String>,
    /// The client's secret, when not sent in HTTP Basic (client credentials).
    pub client_secret: Option<String>,
}

/// A revocation request (RFC 7009): JSON or form.
#[derive(Debug, ToSchema)]
pub struct RevokeRequest {
    /// An access token (refused everywhere from now on) or a refresh token (revoked with
    /// every token of its family). `token_type_hint` may be sent; the token's form decides.
    pub token: String,
}

/// A new access token and the refresh token that renews it.
#[derive(Debug, Serialize, ToSchema)]
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
        description = "Also accepted as application/x-www-form-urlencoded"
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
    let request = TokenRequest {
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
        description = "Also accepted as application/x-www-form-urlencoded"
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
    let request = RevokeRequest {
        token: token.ok_or_else(|| AppError::BadRequest("token is required".to_owned()))?,
    };
    sign_out::revoke(state, &anonymous(req, state), &request.token).await?;
    Ok(NoContent)
}

/// The token routes.
pub fn router() -> Router {
    Router::with_path("tokens")
        .post(issue_tokens)
        .push(Router::with_path("revoke").post(revoke_token))
}
