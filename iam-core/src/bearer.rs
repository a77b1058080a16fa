//! Taking the Bearer access token out of a request's `Authorization` header (RFC 6750 §2.1):
//! the one reading that iam-api and the sidecar share, so that they cannot disagree on which
//! token a request carries.

/// A request carried more than one `Authorization` header. Callers answer 400: which of
/// them a server behind would read is anyone's guess, so none of them may be judged alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request has more than one Authorization header")]
pub struct DuplicateAuthorization;

/// The Bearer token among the values of every `Authorization` header of a request (pass
/// them all, raw, in any order: `headers.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes())`).
///
/// - no header: `Ok(None)`;
/// - two or more headers, whatever they hold (identical, empty, other schemes):
///   `Err(DuplicateAuthorization)`;
/// - one header: its value without surrounding whitespace is split at the first space or
///   tab; a scheme other than `Bearer` (compared case-insensitively), no token after it, or
///   a value that is not UTF-8 is `Ok(None)` (no Bearer credentials; the caller answers 401
///   without an error code); otherwise the token, trimmed, is `Ok(Some(token))`. The token
///   is not judged here: a malformed one fails verification.
pub fn bearer_token<'a, I>(
    authorization_values: I,
) -> Result<Option<&'a str>, DuplicateAuthorization>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = authorization_values.into_iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DuplicateAuthorization);
    }
    let Ok(value) = std::str::from_utf8(value) else {
        return Ok(None);
    };
    let Some((scheme, token)) = value.trim_ascii().split_once([' ', '\t']) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_ascii();
    Ok((!token.is_empty()).then_some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result for one request whose `Authorization` headers hold `values`.
    fn token_of<'a>(values: &[&'a [u8]]) -> Result<Option<&'a str>, DuplicateAuthorization> {
        bearer_token(values.iter().copied())
    }

    #[test]
    fn no_authorization_header_is_no_token() {
        assert_eq!(token_of(&[]), Ok(None));
    }

    #[test]
    fn a_bearer_token_is_taken_whatever_the_scheme_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER abc.def.ghi",
            "bEaReR abc.def.ghi",
        ] {
            assert_eq!(
                token_of(&[value.as_bytes()]),
                Ok(Some("abc.def.ghi")),
                "{value}"
            );
        }
    }

    #[test]
    fn whitespace_around_the_scheme_and_the_token_is_ignored() {
        for value in [
            "  Bearer abc",
            "Bearer abc  ",
            "Bearer   abc",
            "\tBearer\tabc\t",
            "Bearer \t abc",
            " \t Bearer abc \t ",
        ] {
            assert_eq!(token_of(&[value.as_bytes()]), Ok(Some("abc")), "{value:?}");
        }
    }

    #[test]
    fn the_token_is_passed_on_as_sent_for_the_verifier_to_judge() {
        // Inner spaces, commas and non-ASCII are not a Bearer token's, but refusing them is
        // the verifier's job (401 invalid_token), not a reason to say "no token".
        assert_eq!(token_of(&[b"Bearer a b"]), Ok(Some("a b")));
        assert_eq!(token_of(&[b"Bearer a, Basic b"]), Ok(Some("a, Basic b")));
        assert_eq!(
            token_of(&["Bearer t\u{f6}ken".as_bytes()]),
            Ok(Some("t\u{f6}ken"))
        );
    }

    #[test]
    fn an_empty_token_is_no_token() {
        for value in ["Bearer", "Bearer ", "Bearer \t ", "bearer", "", " ", "\t"] {
            assert_eq!(token_of(&[value.as_bytes()]), Ok(None), "{value:?}");
        }
    }

    #[test]
    fn other_schemes_are_no_token() {
        for value in [
            "Basic dXNlcjpwdw==",
            "Digest username=\"a\"",
            "Token abc",
            "Bearerx abc",
            "Bear abc",
            "xBearer abc",
            "abc.def.ghi",
            "Bearer-abc",
            "Bearer:abc",
        ] {
            assert_eq!(token_of(&[value.as_bytes()]), Ok(None), "{value}");
        }
    }

    #[test]
    fn a_value_that_is_not_utf8_is_no_token() {
        assert_eq!(token_of(&[b"Bearer \xff\xfe"]), Ok(None));
        assert_eq!(token_of(&[b"\xffBearer abc"]), Ok(None));
    }

    #[test]
    fn two_or_more_headers_are_refused_whatever_they_hold() {
        let cases: [&[&[u8]]; 7] = [
            &[b"Bearer abc", b"Bearer abc"],
            &[b"Bearer good", b"Bearer garbage"],
            &[b"Bearer garbage", b"Bearer good"],
            &[b"Bearer abc", b""],
            &[b"", b"Bearer abc"],
            &[b"Basic dXNlcjpwdw==", b"Bearer abc"],
            &[b"Bearer a", b"Bearer b", b"Bearer c"],
        ];
        for values in cases {
            assert_eq!(token_of(values), Err(DuplicateAuthorization), "{values:?}");
        }
    }

    #[test]
    fn the_duplicate_error_says_what_is_wrong() {
        assert_eq!(
            DuplicateAuthorization.to_string(),
            "the request has more than one Authorization header"
        );
    }
}
