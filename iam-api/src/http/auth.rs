//! Bearer authentication: verifies the access token with the shared iam-core verifier, then
//! re-reads the user so that a deleted or disabled user or a changed role takes effect at once.

use chrono::Utc;
use iam_core::Reason;
use iam_core::bearer;
use salvo::http::header::{AUTHORIZATION, HeaderValue};
use salvo::prelude::*;
use uuid::Uuid;

use super::app_state;
use super::rate_limit::client_address;
use crate::domain::audit::Actor;
use crate::domain::rbac::{IamPermission, require};
use crate::domain::users;
use crate::error::{AppError, BearerFailure};
use crate::state::AppState;
use crate::store::users::UserRecord;

/// The caller's Bearer token, if the request has one; more than one `Authorization` header
/// is a 400 (see [`iam_core::bearer::bearer_token`], shared with the sidecar).
fn bearer_token(req: &Request) -> Result<Option<&str>, AppError> {
    let values = req.headers().get_all(AUTHORIZATION);
    Ok(bearer::bearer_token(
        values.iter().map(HeaderValue::as_bytes),
    )?)
}

/// Authenticates the request and returns its user as stored now (role and permissions
/// from the database, not from the token).
pub async fn authenticate(req: &Request, state: &AppState) -> Result<UserRecord, AppError> {
    let token = bearer_token(req)?.ok_or(AppError::Unauthenticated(BearerFailure::Missing))?;
    let claims = state
        .keys
        .verify(
            token,
            state.config.verification_rules(),
            Utc::now().timestamp(),
        )
        .map_err(|reason| AppError::Unauthenticated(BearerFailure::Invalid(reason)))?;
    let user_id = Uuid::parse_str(&claims.sub)
        .map_err(|_| AppError::Unauthenticated(BearerFailure::Invalid(Reason::InvalidClaims)))?;
    let bearer = users::find_bearer(state, user_id, &claims.jti)
        .await?
        .ok_or(AppError::Unauthenticated(BearerFailure::UnknownUser))?;
    let user = bearer.user;
    if user.disabled {
        return Err(AppError::Unauthenticated(BearerFailure::Disabled));
    }
    if bearer.token_revoked {
        return Err(AppError::Unauthenticated(BearerFailure::Revoked));
    }
    if user.tokens_revoked_at.is_some_and(|cutoff| {
        iam_core::revocation::revoked_by_subject_cutoff(
            claims.iat,
            iam_core::revocation::cutoff_second(cutoff.timestamp_micros()),
        )
    }) {
        return Err(AppError::Unauthenticated(BearerFailure::Revoked));
    }
    Ok(user)
}

/// An authorised request: the state, the capability that privileged domain functions
/// demand, and the caller as audit events name it.
pub struct Authorized<'d, P> {
    pub state: &'d AppState,
    pub permission: P,
    pub actor: Actor,
}

/// Authenticates the request and checks that its user holds `P`.
pub async fn authorize<'d, P: IamPermission>(
    req: &Request,
    depot: &'d Depot,
) -> Result<Authorized<'d, P>, AppError> {
    let state = app_state(depot)?;
    let caller = authenticate(req, state).await?;
    Ok(Authorized {
        state,
        permission: require::<P>(&caller.role, &caller.permissions)?,
        actor: Actor::user(
            caller.id,
            client_address(req, &state.config.trusted_proxies),
        ),
    })
}

/// The caller of an authenticated request, as audit events name it.
pub fn actor_of(req: &Request, state: &AppState, user: &UserRecord) -> Actor {
    Actor::user(user.id, client_address(req, &state.config.trusted_proxies))
}

/// A request without an authenticated caller, as audit events name it.
pub fn anonymous(req: &Request, state: &AppState) -> Actor {
    Actor::anonymous(client_address(req, &state.config.trusted_proxies))
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn request_with(authorizations: &[&str]) -> Request {
        let mut req = Request::new();
        for authorization in authorizations {
            req.headers_mut()
                .append(AUTHORIZATION, authorization.parse().expect("header"));
        }
        req
    }

    fn token_of(authorizations: &[&str]) -> Result<Option<String>, String> {
        bearer_token(&request_with(authorizations))
            .map(|token| token.map(str::to_owned))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn only_bearer_credentials_are_taken() {
        assert_eq!(token_of(&["Bearer abc.def"]), Ok(Some("abc.def".into())));
        assert_eq!(token_of(&["bearer  abc"]), Ok(Some("abc".into())));
        assert_eq!(token_of(&["Basic dXNlcjpwdw=="]), Ok(None));
        assert_eq!(token_of(&["Bearer "]), Ok(None));
        assert_eq!(token_of(&[]), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_a_bad_request() {
        for pair in [
            ["Bearer abc", "Bearer abc"],
            ["Bearer abc", "Bearer other"],
            ["Bearer abc", ""],
            ["Basic dXNlcjpwdw==", "Bearer abc"],
        ] {
            assert_eq!(
                token_of(&pair),
                Err("the request has more than one Authorization header".into()),
                "{pair:?}"
            );
        }
    }
}
