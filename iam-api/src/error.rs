//! The one error type of iam-api. `http/error.rs` is the only place it becomes a response.

use iam_core::Reason;

use crate::domain::password::HashingError;

/// A problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a Bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerFailure {
    /// No `Authorization: Bearer` header at all.
    Missing,
    /// A token was sent and did not verify.
    Invalid(Reason),
    /// The token verified but its user no longer exists.
    UnknownUser,
    /// The token verified but was issued before its user's sessions were revoked.
    Revoked,
    /// The token verified but its user is disabled.
    Disabled,
}

/// Everything that can go wrong while serving a request or running a command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the request body is not valid: {0}")]
    BadRequest(String),
    #[error(transparent)]
    DuplicateAuthorization(#[from] iam_core::bearer::DuplicateAuthorization),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("the access token was not accepted: {0:?}")]
    Unauthenticated(BearerFailure),
    #[error("invalid credentials")]
    InvalidCredentials,
    /// `PUT /me/password` with a current password that is not the account's.
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    /// The client-credentials grant with an unknown client, a wrong secret or a disabled
    /// client (one answer for all three).
    #[error("client authentication failed")]
    InvalidClient,
    /// A requested scope beyond the client's role.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    #[error("unsupported grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("the permission {0} is required")]
    Forbidden(&'static str),
    /// The delegation ceiling: the caller tried to grant a permission it does not hold.
    #[error("the permission {0} is not yours to grant")]
    BeyondCeiling(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("too many failed logins; retry after {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },
    #[error("too many failed client authentications; retry after {retry_after_seconds} s")]
    ClientThrottled { retry_after_seconds: u64 },
    #[error("too many requests from this client; retry after {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the service is busy; retry after {retry_after_seconds} s")]
    Busy { retry_after_seconds: u64 },
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A 422 for a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        // Connection-level failures, a server shutting down or read-only during a failover:
        // "try again later", not "bug" (the rule is iam-core's, shared with iam-jwks).
        if iam_core::database::is_unavailable(&error) {
            AppError::DatabaseUnavailable(error.to_string())
        } else {
            AppError::Internal(format!("database: {error}"))
        }
    }
}

impl From<HashingError> for AppError {
    fn from(error: HashingError) -> Self {
        match error {
            HashingError::Busy => AppError::Busy {
                retry_after_seconds: 1,
            },
            HashingError::Stopped | HashingError::Failed(_) => {
                AppError::Internal(error.to_string())
            }
        }
    }
}

/// The name of the constraint a database error violated, if any; used to map unique and
/// foreign-key violations to 409/422 without matching on message text.
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}
