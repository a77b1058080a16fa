//! The one place errors become RFC 9457 `application/problem+json` responses.

use iam_core::problem::{self, Problem, ProblemFieldError};
use iam_core::refusal::Refusal;
use salvo::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use salvo::http::{HeaderMap, StatusCode};
use salvo::prelude::*;
use salvo_oapi::{Components, EndpointOutRegister, Operation, ToSchema};

use crate::error::{AppError, BearerFailure, FieldError};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = problem::CONTENT_TYPE;

fn field_problem(error: FieldError) -> ProblemFieldError {
    ProblemFieldError {
        field: error.field,
        message: error.message,
    }
}

/// Status, problem type slug, title and detail of an error; extra headers are added by
/// `render`. No internal error's text reaches a client.
fn describe(error: &AppError) -> (StatusCode, &'static str, &'static str, String) {
    match error {
        AppError::BadRequest(why) => (
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            why.clone(),
        ),
        AppError::DuplicateAuthorization(duplicate) => (
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            duplicate.to_string(),
        ),
        AppError::Validation(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            "Validation failed",
            "one or more fields are invalid".to_owned(),
        ),
        AppError::Unauthenticated(failure) => refusal_parts(&bearer_refusal(failure)),
        AppError::InvalidCredentials => (
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "Invalid credentials",
            "invalid credentials".to_owned(),
        ),
        AppError::WrongCurrentPassword => (
            StatusCode::FORBIDDEN,
            "wrong-current-password",
            "Wrong current password",
            "current_password is not the account's password".to_owned(),
        ),
        AppError::InvalidRefreshToken => (
            StatusCode::UNAUTHORIZED,
            "invalid-grant",
            "Invalid refresh token",
            "the refresh token is invalid, expired or revoked".to_owned(),
        ),
        AppError::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            "invalid-client",
            "Invalid client",
            "client authentication failed: unknown client, wrong secret or disabled client"
                .to_owned(),
        ),
        AppError::InvalidScope(why) => (
            StatusCode::BAD_REQUEST,
            "invalid-scope",
            "Invalid scope",
            why.clone(),
        ),
        AppError::UnsupportedGrantType(why) => (
            StatusCode::BAD_REQUEST,
            "unsupported-grant-type",
            "Unsupported grant type",
            why.clone(),
        ),
        AppError::Forbidden(permission) => {
            refusal_parts(&Refusal::InsufficientScope { permission })
        }
        AppError::BeyondCeiling(permission) => (
            StatusCode::FORBIDDEN,
            "beyond-own-permissions",
            "Forbidden",
            format!(
                "the permission {permission} is not one you hold, so you cannot grant it or \
                 manage an account that has it"
            ),
        ),
        AppError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{what} not found"),
        ),
        AppError::Conflict(why) => (StatusCode::CONFLICT, "conflict", "Conflict", why.clone()),
        AppError::PayloadTooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the request body must be at most {limit} bytes"),
        ),
        AppError::BodyTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request timeout",
            format!(
                "the request body must arrive within {} s",
                super::BODY_READ_TIMEOUT.as_secs()
            ),
        ),
        AppError::UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send application/json (or application/x-www-form-urlencoded where documented)"
                .to_owned(),
        ),
        AppError::Throttled {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many failed logins",
            format!("too many failed logins; retry after {retry_after_seconds} s"),
        ),
        AppError::ClientThrottled {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many failed client authentications",
            format!(
                "too many failed authentications of this client; retry after \
                 {retry_after_seconds} s"
            ),
        ),
        AppError::RateLimited {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("too many requests from this client; retry after {retry_after_seconds} s"),
        ),
        AppError::Busy {
            retry_after_seconds,
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "Service busy",
            format!("the service is busy; retry after {retry_after_seconds} s"),
        ),
        AppError::DatabaseUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database-unavailable",
            "Service unavailable",
            "the database is unavailable; retry later".to_owned(),
        ),
        AppError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal error",
            "an internal error occurred; it has been logged".to_owned(),
        ),
    }
}

/// A refused Bearer token is answered as every verifier answers it (`iam_core::refusal`).
fn bearer_refusal(failure: &BearerFailure) -> Refusal<'static> {
    match failure {
        BearerFailure::Missing => Refusal::MissingToken,
        BearerFailure::Invalid(_)
        | BearerFailure::UnknownUser
        | BearerFailure::Revoked
        | BearerFailure::Disabled => Refusal::InvalidToken,
    }
}

fn refusal_parts(refusal: &Refusal<'_>) -> (StatusCode, &'static str, &'static str, String) {
    (
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED),
        refusal.problem_slug(),
        refusal.title(),
        refusal.detail(),
    )
}

fn extra_headers(error: &AppError, headers: &mut HeaderMap) {
    match error {
        AppError::Unauthenticated(failure) => {
            let challenge = bearer_refusal(failure).challenge();
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        AppError::Forbidden(permission) => {
            let challenge = Refusal::InsufficientScope { permission }.challenge();
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        AppError::InvalidClient => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
        }
        AppError::Throttled {
            retry_after_seconds,
        }
        | AppError::ClientThrottled {
            retry_after_seconds,
        }
        | AppError::RateLimited {
            retry_after_seconds,
        }
        | AppError::Busy {
            retry_after_seconds,
        } => {
            headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        AppError::DatabaseUnavailable(_) => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        AppError::BadRequest(_)
        | AppError::BeyondCeiling(_)
        | AppError::DuplicateAuthorization(_)
        | AppError::Validation(_)
        | AppError::InvalidCredentials
        | AppError::WrongCurrentPassword
        | AppError::InvalidRefreshToken
        | AppError::InvalidScope(_)
        | AppError::UnsupportedGrantType(_)
        | AppError::NotFound(_)
        | AppError::Conflict(_)
        | AppError::PayloadTooLarge { .. }
        | AppError::BodyTimeout
        | AppError::UnsupportedMediaType
        | AppError::Internal(_) => {}
    }
}

/// The challenge of a failed client authentication (RFC 6749 §5.2, `invalid_client`).
const BASIC_CHALLENGE: &str = "Basic realm=\"iam\", charset=\"UTF-8\"";

/// The RFC 6749 §5.2 `error` code of an error answered by the token endpoint; `None` for
/// errors that OAuth gives no code (the service's own failures: 5xx).
pub fn oauth_error_code(error: &AppError) -> Option<&'static str> {
    match error {
        AppError::BadRequest(_)
        | AppError::DuplicateAuthorization(_)
        | AppError::Validation(_)
        | AppError::PayloadTooLarge { .. }
        | AppError::BodyTimeout
        | AppError::UnsupportedMediaType
        | AppError::RateLimited { .. } => Some("invalid_request"),
        AppError::InvalidCredentials
        | AppError::InvalidRefreshToken
        | AppError::Throttled { .. } => Some("invalid_grant"),
        AppError::InvalidClient | AppError::ClientThrottled { .. } => Some("invalid_client"),
        AppError::InvalidScope(_) => Some("invalid_scope"),
        AppError::UnsupportedGrantType(_) => Some("unsupported_grant_type"),
        AppError::Unauthenticated(_)
        | AppError::WrongCurrentPassword
        | AppError::Forbidden(_)
        | AppError::BeyondCeiling(_)
        | AppError::NotFound(_)
        | AppError::Conflict(_)
        | AppError::Busy { .. }
        | AppError::DatabaseUnavailable(_)
        | AppError::Internal(_) => None,
    }
}

/// An error of the token endpoint: the same problem document as [`AppError`]'s, with the
/// OAuth `error` member that OAuth client libraries read.
#[derive(Debug)]
pub struct TokenEndpointError(pub AppError);

impl From<AppError> for TokenEndpointError {
    fn from(error: AppError) -> Self {
        TokenEndpointError(error)
    }
}

impl Scribe for TokenEndpointError {
    fn render(self, res: &mut Response) {
        let code = oauth_error_code(&self.0);
        let problem = problem_of(self.0, res);
        match code {
            Some(code) => problem.with_member("error", code).write_to(res),
            None => problem.write_to(res),
        }
    }
}

impl EndpointOutRegister for TokenEndpointError {
    fn register(components: &mut Components, operation: &mut Operation) {
        AppError::register(components, operation);
    }
}

/// Logs what needs logging, adds the error's headers to `res`, and returns its problem.
fn problem_of(error: AppError, res: &mut Response) -> Problem {
    match &error {
        AppError::Internal(why) => tracing::error!(error = %why, "internal error"),
        AppError::DatabaseUnavailable(why) => {
            tracing::warn!(error = %why, "database unavailable")
        }
        AppError::Unauthenticated(BearerFailure::Invalid(reason)) => {
            tracing::debug!(reason = reason.as_str(), "access token refused");
        }
        _ => {}
    }
    let (status, slug, title, detail) = describe(&error);
    extra_headers(&error, res.headers_mut());
    let errors = match error {
        AppError::Validation(errors) => errors.into_iter().map(field_problem).collect(),
        _ => Vec::new(),
    };
    Problem::iam(status, slug, title, detail).with_errors(errors)
}

/// The problem document `error` is answered with, as JSON (with the OAuth `error` member
/// when `token_endpoint`): the OpenAPI document's examples come from here, so they cannot
/// drift from what is sent. Nothing is logged.
pub fn problem_example(error: AppError, token_endpoint: bool) -> serde_json::Value {
    let code = if token_endpoint {
        oauth_error_code(&error)
    } else {
        None
    };
    let (status, slug, title, detail) = describe(&error);
    let errors = match error {
        AppError::Validation(errors) => errors.into_iter().map(field_problem).collect(),
        _ => Vec::new(),
    };
    let problem = Problem::iam(status, slug, title, detail).with_errors(errors);
    let problem = match code {
        Some(code) => problem.with_member("error", code),
        None => problem,
    };
    serde_json::to_value(&problem).unwrap_or_default()
}

impl Scribe for AppError {
    fn render(self, res: &mut Response) {
        problem_of(self, res).write_to(res);
    }
}

impl EndpointOutRegister for AppError {
    fn register(components: &mut Components, operation: &mut Operation) {
        let schema = <Problem as ToSchema>::to_schema(components);
        let response = salvo_oapi::Response::new("An RFC 9457 problem document")
            .add_content(PROBLEM_JSON, salvo_oapi::Content::new(schema));
        operation.responses.insert("default", response);
    }
}
