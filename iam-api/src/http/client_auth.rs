//! How a client authenticates at the token endpoint (RFC 6749 §2.3.1): HTTP Basic
//! (`client_secret_basic`) or `client_id` and `client_secret` in the body
//! (`client_secret_post`), never both.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::AppError;

/// A client's id and secret as presented.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The credentials of an `Authorization: Basic` value, or `None` for another scheme. A
/// Basic value that does not decode to `id:secret` is a failed client authentication.
/// Both parts are form-urlencoded before the base64 (RFC 6749 §2.3.1), so they are decoded
/// after it.
pub fn from_basic(authorization: &[u8]) -> Result<Option<ClientCredentials>, AppError> {
    let Some((scheme, rest)) = split_scheme(authorization) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(rest.trim_ascii())
        .map_err(|_| AppError::InvalidClient)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AppError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(AppError::InvalidClient)?;
    Ok(Some(ClientCredentials {
        client_id: form_decode(id)?,
        client_secret: form_decode(secret)?,
    }))
}

/// The scheme and the rest of an `Authorization` value (from the space after the scheme).
fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    Some(value.split_at(space))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte.
fn form_decode(value: &str) -> Result<String, AppError> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| AppError::InvalidClient)
}

/// The one way the client authenticated: the Basic header's credentials or the body's.
/// Both at once is a bad request (RFC 6749 §2.3); a body with only one of the two fields
/// names no client. `None`: the request carries no client authentication at all.
pub fn choose(
    basic: Option<ClientCredentials>,
    body_id: Option<String>,
    body_secret: Option<String>,
) -> Result<Option<ClientCredentials>, AppError> {
    match (basic, body_id, body_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(AppError::BadRequest(
            "authenticate the client one way: HTTP Basic or client_id and client_secret in \
             the body, not both"
                .to_owned(),
        )),
        (Some(basic), None, None) => Ok(Some(basic)),
        (None, Some(client_id), Some(client_secret)) => Ok(Some(ClientCredentials {
            client_id,
            client_secret,
        })),
        (None, Some(_), None) | (None, None, Some(_)) => Err(AppError::InvalidClient),
        (None, None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn basic(raw: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(raw)).into_bytes()
    }

    fn credentials(id: &str, secret: &str) -> ClientCredentials {
        ClientCredentials {
            client_id: id.into(),
            client_secret: secret.into(),
        }
    }

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(
            from_basic(&basic("svc-abc:s3cret")).expect("ok"),
            Some(credentials("svc-abc", "s3cret"))
        );
        // The secret may hold a colon; only the first one separates.
        assert_eq!(
            from_basic(&basic("svc-abc:a:b")).expect("ok"),
            Some(credentials("svc-abc", "a:b"))
        );
        // Form-urlencoded parts, any case of the scheme, blanks around the value.
        assert_eq!(
            from_basic(format!("bAsIc  {} ", STANDARD.encode("svc%2Dx:a+b%3A")).as_bytes())
                .expect("ok"),
            Some(credentials("svc-x", "a b:"))
        );
        assert_eq!(
            from_basic(&basic(":")).expect("ok"),
            Some(credentials("", ""))
        );
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let shown = format!("{:?}", credentials("svc-abc", "s3cret-value"));
        assert!(shown.contains("svc-abc"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }

    #[test]
    fn other_schemes_are_not_client_authentication() {
        for value in ["Bearer abc", "Digest x", "Basic", "", "Basicabc"] {
            assert!(
                matches!(from_basic(value.as_bytes()), Ok(None)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn malformed_basic_values_fail_client_authentication() {
        for value in [
            b"Basic !!!".to_vec(),
            basic("no-colon"),
            format!("Basic {}", STANDARD.encode([0xff, b':', b'x'])).into_bytes(),
            basic("svc:%zz%ff"),
            basic("%ff:secret"),
        ] {
            assert!(
                matches!(from_basic(&value), Err(AppError::InvalidClient)),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }

    #[test]
    fn a_client_authenticates_one_way_only() {
        let header = || Some(credentials("svc-a", "s"));
        let some = |value: &str| Some(value.to_owned());
        assert_eq!(choose(header(), None, None).expect("ok"), header());
        assert_eq!(
            choose(None, some("svc-b"), some("t")).expect("ok"),
            Some(credentials("svc-b", "t"))
        );
        assert_eq!(choose(None, None, None).expect("ok"), None);
        for (id, secret) in [
            (some("svc-b"), some("t")),
            (some("svc-b"), None),
            (None, some("t")),
        ] {
            assert!(
                matches!(choose(header(), id, secret), Err(AppError::BadRequest(_))),
                "both ways"
            );
        }
        assert!(matches!(
            choose(None, some("svc-b"), None),
            Err(AppError::InvalidClient)
        ));
        assert!(matches!(
            choose(None, None, some("t")),
            Err(AppError::InvalidClient)
        ));
    }
}
