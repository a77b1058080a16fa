//! Decision mode (contract §6): the request another proxy asks about, read from the headers
//! that proxy sets (`X-Forwarded-Method`/`X-Original-Method`, `X-Forwarded-Uri`/
//! `X-Original-URI`), else from the question itself (Envoy's `ext_authz` asks with the
//! original method and path).
//!
//! A hostile client may send these headers too, and a proxy may pass them on beside its own:
//! nginx's `auth_request` copies the client's headers into its question, so a client could
//! add `X-Forwarded-Uri: /public` to a request for `/admin` that nginx describes with
//! `X-Original-URI: /admin`. So a name sent twice, or the two spellings of one thing
//! disagreeing, is refused (400, which the proxy turns into a refusal) rather than resolved.

use hyper::HeaderMap;
use hyper::header::HeaderName;

use crate::rules::is_method_token;

/// The methods' headers, the one a proxy is likelier to set first.
const METHOD_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-original-method"),
];
/// The request targets' (path and query) headers, likewise.
const URI_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-original-uri"),
];

/// The request a proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest<'a> {
    /// A method token, as sent (matching is case-insensitive).
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
}

/// Why the question cannot be judged safely; answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnclearQuestion {
    #[error("the {0} header is sent more than once")]
    Repeated(&'static str),
    #[error("the {0} and {1} headers disagree")]
    Conflicting(&'static str, &'static str),
    #[error("the {0} header is not an HTTP method")]
    InvalidMethod(&'static str),
    #[error("the {0} header is not a path (it must start with /)")]
    InvalidTarget(&'static str),
}

/// The one value of the first of `names` present, after checking that neither is repeated
/// and that, when both are present, they agree (`same` compares them).
fn one_of<'a>(
    headers: &'a HeaderMap,
    names: &[HeaderName; 2],
    same: fn(&str, &str) -> bool,
) -> Result<Option<(&'static str, &'a [u8])>, UnclearQuestion> {
    let mut found: Option<(&'static str, &'a [u8])> = None;
    for name in names {
        let label = canonical_label(name);
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(UnclearQuestion::Repeated(label));
        }
        let value = value.as_bytes();
        match found {
            None => found = Some((label, value)),
            Some((first, taken)) => {
                let agree = match (std::str::from_utf8(taken), std::str::from_utf8(value)) {
                    (Ok(taken), Ok(value)) => same(taken.trim_ascii(), value.trim_ascii()),
                    _ => false,
                };
                if !agree {
                    return Err(UnclearQuestion::Conflicting(first, label));
                }
            }
        }
    }
    Ok(found)
}

/// The header's name as operators write it, for messages.
fn canonical_label(name: &HeaderName) -> &'static str {
    match name.as_str() {
        "x-forwarded-method" => "X-Forwarded-Method",
        "x-original-method" => "X-Original-Method",
        "x-forwarded-uri" => "X-Forwarded-Uri",
        _ => "X-Original-URI",
    }
}

/// The request the question is about: method and path from the proxy's headers when
/// present, else `own_method` and `own_path` (the question's own).
pub fn original_request<'a>(
    headers: &'a HeaderMap,
    own_method: &'a str,
    own_path: &'a str,
) -> Result<OriginalRequest<'a>, UnclearQuestion> {
    let method = match one_of(headers, &METHOD_HEADERS, str::eq_ignore_ascii_case)? {
        None => own_method,
        Some((label, value)) => std::str::from_utf8(value)
            .ok()
            .map(str::trim_ascii)
            .filter(|method| is_method_token(method))
            .ok_or(UnclearQuestion::InvalidMethod(label))?,
    };
    let path = match one_of(headers, &URI_HEADERS, |a, b| a == b)? {
        None => own_path,
        Some((label, value)) => {
            let target = std::str::from_utf8(value)
                .ok()
                .map(str::trim_ascii)
                .filter(|target| target.starts_with('/'))
                .ok_or(UnclearQuestion::InvalidTarget(label))?;
            target.split_once('?').map_or(target, |(path, _query)| path)
        }
    };
    Ok(OriginalRequest { method, path })
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use crate::proxy::test_support::headers;

    fn asked(pairs: &[(&str, &[u8])]) -> Result<(String, String), UnclearQuestion> {
        let headers = headers(pairs);
        original_request(&headers, "GET", "/auth")
            .map(|request| (request.method.to_owned(), request.path.to_owned()))
    }

    fn ok(method: &str, path: &str) -> Result<(String, String), UnclearQuestion> {
        Ok((method.to_owned(), path.to_owned()))
    }

    #[test]
    fn without_the_proxy_headers_the_question_is_the_request() {
        assert_eq!(asked(&[]), ok("GET", "/auth"));
        assert_eq!(
            asked(&[("x-forwarded-host", b"a.example")]),
            ok("GET", "/auth")
        );
    }

    #[test]
    fn either_spelling_names_the_method_and_the_path_without_its_query() {
        assert_eq!(
            asked(&[
                ("X-Original-Method", b"delete"),
                ("X-Original-URI", b"/orders/7?force=1")
            ]),
            ok("delete", "/orders/7")
        );
        assert_eq!(
            asked(&[
                ("X-Forwarded-Method", b" POST "),
                ("X-Forwarded-Uri", b"/orders")
            ]),
            ok("POST", "/orders")
        );
        // The method alone, or the path alone.
        assert_eq!(asked(&[("x-forwarded-method", b"PUT")]), ok("PUT", "/auth"));
        assert_eq!(asked(&[("x-original-uri", b"/a?")]), ok("GET", "/a"));
    }

    #[test]
    fn both_spellings_must_agree() {
        assert_eq!(
            asked(&[
                ("X-Forwarded-Uri", b"/public"),
                ("X-Original-URI", b"/admin")
            ]),
            Err(UnclearQuestion::Conflicting(
                "X-Forwarded-Uri",
                "X-Original-URI"
            ))
        );
        assert_eq!(
            asked(&[
                ("X-Forwarded-Method", b"GET"),
                ("X-Original-Method", b"DELETE")
            ]),
            Err(UnclearQuestion::Conflicting(
                "X-Forwarded-Method",
                "X-Original-Method"
            ))
        );
        // Agreeing copies are one answer; methods compare without case.
        assert_eq!(
            asked(&[
                ("X-Forwarded-Method", b"get"),
                ("X-Original-Method", b"GET"),
                ("X-Forwarded-Uri", b"/a?x=1"),
                ("X-Original-URI", b"/a?x=1"),
            ]),
            ok("get", "/a")
        );
        // Paths compare exactly: the query is part of what must agree.
        assert_eq!(
            asked(&[
                ("X-Forwarded-Uri", b"/a?x=1"),
                ("X-Original-URI", b"/a?x=2")
            ]),
            Err(UnclearQuestion::Conflicting(
                "X-Forwarded-Uri",
                "X-Original-URI"
            ))
        );
    }

    #[test]
    fn a_repeated_header_is_refused_whatever_the_values() {
        for name in [
            "x-forwarded-method",
            "x-original-method",
            "x-forwarded-uri",
            "x-original-uri",
        ] {
            let value: &[u8] = if name.ends_with("method") {
                b"GET"
            } else {
                b"/a"
            };
            let result = asked(&[(name, value), (name, value)]);
            assert!(
                matches!(result, Err(UnclearQuestion::Repeated(_))),
                "{name}: {result:?}"
            );
        }
        assert_eq!(
            asked(&[("x-original-uri", b"/a"), ("x-original-uri", b"/b")]),
            Err(UnclearQuestion::Repeated("X-Original-URI"))
        );
    }

    #[test]
    fn a_method_or_target_that_is_not_one_is_refused() {
        for method in [&b""[..], b"GE T", b"GET\xff", b"(GET)"] {
            assert_eq!(
                asked(&[("x-forwarded-method", method)]),
                Err(UnclearQuestion::InvalidMethod("X-Forwarded-Method"))
            );
        }
        for target in [
            &b""[..],
            b"admin",
            b"http://a.example/admin",
            b"*",
            b"/\xff",
        ] {
            assert_eq!(
                asked(&[("x-original-uri", target)]),
                Err(UnclearQuestion::InvalidTarget("X-Original-URI"))
            );
        }
        // Undecodable values disagree with anything.
        assert_eq!(
            asked(&[("x-forwarded-uri", b"/a"), ("x-original-uri", b"/a\xff")]),
            Err(UnclearQuestion::Conflicting(
                "X-Forwarded-Uri",
                "X-Original-URI"
            ))
        );
    }

    #[test]
    fn messages_name_the_header() {
        assert_eq!(
            UnclearQuestion::Repeated("X-Original-URI").to_string(),
            "the X-Original-URI header is sent more than once"
        );
        assert_eq!(
            UnclearQuestion::Conflicting("X-Forwarded-Uri", "X-Original-URI").to_string(),
            "the X-Forwarded-Uri and X-Original-URI headers disagree"
        );
        assert_eq!(
            UnclearQuestion::InvalidMethod("X-Original-Method").to_string(),
            "the X-Original-Method header is not an HTTP method"
        );
        assert_eq!(
            UnclearQuestion::InvalidTarget("X-Forwarded-Uri").to_string(),
            "the X-Forwarded-Uri header is not a path (it must start with /)"
        );
    }
}
