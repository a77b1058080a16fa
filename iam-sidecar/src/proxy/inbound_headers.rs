//! The client's headers read as the upstream may read them.
//!
//! Names: many servers and frameworks do not read a name byte for byte: CGI-style gateways
//! (and the PHP, Python and Ruby stacks behind them) turn `-` into `_` and lowercase or
//! uppercase everything, so `X_User_Role` and `X.User.Role` reach the application as
//! `X-User-Role` does. Names are therefore judged after normalising: ASCII lowercase, with
//! `_` and `.` read as `-`.
//!
//! Method overrides: frameworks honour `X-HTTP-Method-Override: DELETE` (and its cousins) on
//! a `POST`, so the gate judges a request under every method it may be run as.

use hyper::HeaderMap;

use crate::rules::is_method_token;

/// Identity headers are those that, normalised, start with this prefix…
const IDENTITY_PREFIX: &str = "x-user-";
/// …or are exactly this one.
const CLIENT_ID: &str = "x-client-id";

/// Method-override headers that frameworks honour (normalised spelling).
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// One byte of a name as it is judged: ASCII lowercase, `_` and `.` as `-`.
fn normalized(byte: u8) -> u8 {
    match byte {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// Whether `name`, normalised, starts with `prefix` (given in normalised form).
fn normalized_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(byte, wanted)| normalized(byte) == wanted)
}

/// Whether `name`, normalised, is `other` (given in normalised form).
fn normalized_eq(name: &str, other: &str) -> bool {
    name.len() == other.len() && normalized_starts_with(name, other)
}

/// Whether the upstream may read `name` as one of the identity headers only the sidecar may
/// set (`X-User-*`, `X-Client-Id`), in any spelling.
pub fn is_identity_header(name: &str) -> bool {
    normalized_starts_with(name, IDENTITY_PREFIX) || normalized_eq(name, CLIENT_ID)
}

/// Whether the upstream may read `name` as a method override (`X-HTTP-Method-Override`,
/// `X-HTTP-Method`, `X-Method-Override`), in any spelling.
pub fn is_method_override_header(name: &str) -> bool {
    METHOD_OVERRIDE_HEADERS
        .iter()
        .any(|known| normalized_eq(name, known))
}

/// A method-override header whose value is not a method token; the request gets 400,
/// since what an upstream makes of such a value cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMethodOverride {
    /// The header's name as received.
    pub header: String,
}

impl std::fmt::Display for InvalidMethodOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} header is not an HTTP method", self.header)
    }
}

/// The methods a request's override headers ask the upstream to run it as (every value of
/// every header [`is_method_override_header`] recognises, trimmed), in header order; empty
/// for a request without overrides. Refuses a value that is not a method token.
pub fn method_overrides(headers: &HeaderMap) -> Result<Vec<&str>, InvalidMethodOverride> {
    let mut overrides = Vec::new();
    for (name, value) in headers {
        if !is_method_override_header(name.as_str()) {
            continue;
        }
        let method = value
            .to_str()
            .ok()
            .map(str::trim_ascii)
            .filter(|method| is_method_token(method))
            .ok_or_else(|| InvalidMethodOverride {
                header: name.as_str().to_owned(),
            })?;
        overrides.push(method);
    }
    Ok(overrides)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use crate::proxy::test_support::headers;

    #[test]
    fn identity_headers_are_recognised_in_every_spelling() {
        for name in [
            "x-user-id",
            "X-User-Id",
            "X-USER-ROLE",
            "x-USER-role",
            "X_User_Role",
            "x_user_id",
            "X.User.Role",
            "x.user.email",
            "X-User_Permissions",
            "x_user.id",
            "X-User-",
            "x_user_",
            "X-User-Anything-New",
            "X-User--",
            "X-Client-Id",
            "x-client-id",
            "x_client_id",
            "X.Client.Id",
            "X-CLIENT_ID",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn other_headers_are_not_identity_headers() {
        for name in [
            "",
            "x",
            "x-user",
            "x_user",
            "x-users-id",
            "x-userid",
            "y-user-id",
            "xx-user-id",
            "x-u-ser-id",
            "user-id",
            "x-client",
            "x-client-i",
            "x-client-id2",
            "x-client-ids",
            "x-client-idx",
            "x-clients-id",
            "y-client-id",
            "x-client+id",
            "x-request-id",
            "authorization",
            "x-forwarded-user",
        ] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn method_override_headers_are_recognised_in_every_spelling() {
        for name in [
            "x-http-method-override",
            "X-HTTP-Method-Override",
            "X_HTTP_METHOD_OVERRIDE",
            "x.http.method.override",
            "x-http-method",
            "X-Http-Method",
            "X_HTTP_Method",
            "x-method-override",
            "X-Method_Override",
            "X.METHOD.OVERRIDE",
        ] {
            assert!(is_method_override_header(name), "{name}");
        }
    }

    #[test]
    fn other_headers_are_not_method_overrides() {
        for name in [
            "x-http-method-overrid",
            "x-http-method-overrides",
            "x-http-metho",
            "x-http-methods",
            "x-method",
            "x-method-overrid",
            "x-method-override-2",
            "http-method",
            "method",
            "x-forwarded-method",
            "",
        ] {
            assert!(!is_method_override_header(name), "{name}");
        }
    }

    #[test]
    fn names_are_normalised_byte_by_byte() {
        assert_eq!(normalized(b'_'), b'-');
        assert_eq!(normalized(b'.'), b'-');
        assert_eq!(normalized(b'-'), b'-');
        assert_eq!(normalized(b'A'), b'a');
        assert_eq!(normalized(b'z'), b'z');
        assert_eq!(normalized(b'0'), b'0');
        assert_eq!(normalized(b'+'), b'+');
        assert!(normalized_starts_with("abc", "abc"));
        assert!(normalized_starts_with("abcd", "abc"));
        assert!(!normalized_starts_with("ab", "abc"));
        assert!(normalized_eq("A_B", "a-b"));
        assert!(!normalized_eq("a-bc", "a-b"));
        assert!(!normalized_eq("a-", "a-b"));
    }

    #[test]
    fn a_request_without_override_headers_has_no_overrides() {
        let plain = headers(&[("content-type", b"text/plain"), ("x-method", b"DELETE")]);
        assert_eq!(method_overrides(&plain), Ok(vec![]));
        assert_eq!(method_overrides(&HeaderMap::new()), Ok(vec![]));
    }

    #[test]
    fn every_override_header_in_every_spelling_is_a_candidate() {
        let many = headers(&[
            ("x-http-method-override", b"DELETE"),
            ("X_HTTP_Method", b"put"),
            ("x.method.override", b" PATCH "),
            ("x-http-method-override", b"Delete"),
            ("accept", b"*/*"),
        ]);
        // HeaderMap groups the values of one name; order across names is the map's.
        let mut got = method_overrides(&many).expect("valid");
        got.sort_unstable();
        assert_eq!(got, ["DELETE", "Delete", "PATCH", "put"]);
    }

    #[test]
    fn an_override_that_is_not_a_method_token_is_refused() {
        for value in [
            b"".as_slice(),
            b"   ",
            b"DELETE, PUT",
            b"DEL ETE",
            b"DELETE;x",
            b"\xff",
            b"D\xc3\xa9LETE",
        ] {
            let bad = headers(&[("X-HTTP-Method-Override", value)]);
            assert_eq!(
                method_overrides(&bad),
                Err(InvalidMethodOverride {
                    header: "x-http-method-override".into()
                }),
                "{value:?}"
            );
        }
        // One bad value spoils the request even after good ones.
        let mixed = headers(&[("x-method-override", b"PUT"), ("x-method-override", b"P T")]);
        assert!(method_overrides(&mixed).is_err());
    }

    #[test]
    fn the_refusal_names_the_header() {
        let error = InvalidMethodOverride {
            header: "x_http_method".into(),
        };
        assert_eq!(
            error.to_string(),
            "the x_http_method header is not an HTTP method"
        );
    }
}
