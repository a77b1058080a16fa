//! How every verifier says no to a request's Bearer token: the status, the RFC 6750
//! `WWW-Authenticate` challenge and the problem document's `type`, `title` and `detail`.
//! iam-api and iam-sidecar both answer from here, so a client sees one answer for one
//! refusal whichever process refused it.

/// The prefix of every problem `type` the IAM defines.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:iam:problem:";

/// Why a request's Bearer token does not let it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// No Bearer token was sent.
    MissingToken,
    /// A token was sent and is not (or no longer) acceptable. Why is logged and counted,
    /// never told to the client.
    InvalidToken,
    /// The token is acceptable but does not carry `permission`.
    InsufficientScope { permission: &'a str },
}

impl Refusal<'_> {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingToken | Refusal::InvalidToken => 401,
            Refusal::InsufficientScope { .. } => 403,
        }
    }

    /// The `WWW-Authenticate` value. RFC 6750 §3.1: no error code when no token was sent.
    pub fn challenge(&self) -> &'static str {
        match self {
            Refusal::MissingToken => "Bearer",
            Refusal::InvalidToken => r#"Bearer error="invalid_token""#,
            Refusal::InsufficientScope { .. } => r#"Bearer error="insufficient_scope""#,
        }
    }

    /// The last part of the problem `type` (after [`PROBLEM_TYPE_PREFIX`]).
    pub fn problem_slug(&self) -> &'static str {
        match self {
            Refusal::MissingToken | Refusal::InvalidToken => "unauthenticated",
            Refusal::InsufficientScope { .. } => "forbidden",
        }
    }

    /// The problem `title`.
    pub fn title(&self) -> &'static str {
        match self {
            Refusal::MissingToken | Refusal::InvalidToken => "Unauthenticated",
            Refusal::InsufficientScope { .. } => "Forbidden",
        }
    }

    /// The problem `detail`.
    pub fn detail(&self) -> String {
        match self {
            Refusal::MissingToken => "a Bearer access token is required".to_owned(),
            Refusal::InvalidToken => "the access token is invalid or expired".to_owned(),
            Refusal::InsufficientScope { permission } => {
                format!("the permission {permission} is required")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Refusal<'static> = Refusal::InsufficientScope {
        permission: "orders:write",
    };

    #[test]
    fn a_missing_token_gets_a_bare_challenge() {
        let refusal = Refusal::MissingToken;
        assert_eq!(refusal.status(), 401);
        assert_eq!(refusal.challenge(), "Bearer");
        assert_eq!(refusal.problem_slug(), "unauthenticated");
        assert_eq!(refusal.title(), "Unauthenticated");
        assert_eq!(refusal.detail(), "a Bearer access token is required");
    }

    #[test]
    fn an_invalid_token_is_named_in_the_challenge() {
        let refusal = Refusal::InvalidToken;
        assert_eq!(refusal.status(), 401);
        assert_eq!(refusal.challenge(), r#"Bearer error="invalid_token""#);
        assert_eq!(refusal.problem_slug(), "unauthenticated");
        assert_eq!(refusal.title(), "Unauthenticated");
        assert_eq!(refusal.detail(), "the access token is invalid or expired");
    }

    #[test]
    fn a_missing_permission_is_forbidden_and_named() {
        assert_eq!(SCOPE.status(), 403);
        assert_eq!(SCOPE.challenge(), r#"Bearer error="insufficient_scope""#);
        assert_eq!(SCOPE.problem_slug(), "forbidden");
        assert_eq!(SCOPE.title(), "Forbidden");
        assert_eq!(SCOPE.detail(), "the permission orders:write is required");
    }
}
