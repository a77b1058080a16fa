//! The gate's header handling, pure parts.

#![allow(clippy::expect_used)] // test helpers report failure by panicking

use super::*;
use hyper::Uri;

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let pairs: Vec<(&str, &[u8])> = pairs
        .iter()
        .map(|(name, value)| (*name, value.as_bytes()))
        .collect();
    super::test_support::headers(&pairs)
}

fn names(headers: &HeaderMap) -> Vec<&str> {
    let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    names
}

#[test]
fn identity_headers_from_the_client_are_removed() {
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", HeaderValue::from_static("admin"));
    headers.insert("X-User-Role", HeaderValue::from_static("admin"));
    headers.insert("x-request-id", HeaderValue::from_static("keep"));
    strip_identity_headers(&mut headers);
    assert_eq!(headers.len(), 1);
    assert!(headers.contains_key("x-request-id"));
}

#[test]
fn identity_headers_are_removed_in_every_spelling_and_every_copy() {
    let mut headers = header_map(&[
        ("X_User_Role", "admin"),
        ("X.User.Role", "admin"),
        ("x-USER-role", "admin"),
        ("x-user-role", "admin"),
        ("x-user-role", "second copy"),
        ("X-User-Anything", "x"),
        ("X-User-", "x"),
        ("X-Client-Id", "c"),
        ("x_client_id", "c"),
        ("x-users", "keep"),
        ("x-client-ids", "keep"),
        ("accept", "keep"),
    ]);
    strip_identity_headers(&mut headers);
    assert_eq!(names(&headers), ["accept", "x-client-ids", "x-users"]);
}

#[test]
fn what_the_client_sent_is_taken_before_the_hop_by_hop_headers_go() {
    let mut headers = header_map(&[
        (
            "connection",
            "host, traceparent, tracestate, x-forwarded-for",
        ),
        ("host", "orders.example.com"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=1"),
        ("x-forwarded-for", "203.0.113.9"),
    ]);
    let received = Received::take(&headers, &Uri::from_static("/orders"));
    let _ = remove_hop_by_hop(&mut headers);
    assert!(headers.is_empty(), "{headers:?}");
    add_forwarding_headers(&mut headers, Some("127.0.0.1".into()), received);
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "orders.example.com");
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(headers["tracestate"], "vendor=1");
    assert_eq!(headers.len(), 5);
}

#[test]
fn forwarding_headers_extend_what_the_client_sent_end_to_end() {
    let mut headers = header_map(&[
        ("host", "orders.example.com"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example.com"),
    ]);
    let received = Received::take(&headers, &Uri::from_static("/orders"));
    add_forwarding_headers(&mut headers, Some("10.0.0.1".into()), received);
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "shop.example.com");
    assert!(!headers.contains_key("traceparent"));
}

#[test]
fn without_a_client_address_or_host_nothing_is_made_up() {
    let mut headers = HeaderMap::new();
    let received = Received::take(&headers, &Uri::from_static("/orders"));
    add_forwarding_headers(&mut headers, None, received);
    assert_eq!(names(&headers), ["x-forwarded-proto"]);
}

#[test]
fn an_http2_clients_authority_is_its_host() {
    let mut headers = HeaderMap::new();
    let uri = Uri::from_static("http://orders.example.com:8080/orders");
    let received = Received::take(&headers, &uri);
    add_forwarding_headers(&mut headers, None, received);
    assert_eq!(headers["x-forwarded-host"], "orders.example.com:8080");
    // A Host header, when sent, is what counts.
    let mut headers = header_map(&[("host", "shop.example.com")]);
    let received = Received::take(&headers, &uri);
    add_forwarding_headers(&mut headers, None, received);
    assert_eq!(headers["x-forwarded-host"], "shop.example.com");
}
