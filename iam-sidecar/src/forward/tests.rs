//! Header rules of forwarding, pure parts.

use super::*;

#[test]
fn only_connection_upgrade_requests_are_upgrades() {
    let mut headers = HeaderMap::new();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    assert_eq!(upgrade_type(&headers), None);
    headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
    assert_eq!(
        upgrade_type(&headers),
        Some(HeaderValue::from_static("websocket"))
    );
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("close, x-hop"));
    headers.insert("x-hop", HeaderValue::from_static("1"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("host", HeaderValue::from_static("orders.example.com"));
    headers.insert("x-user-id", HeaderValue::from_static("42"));
    keep_end_to_end_headers(&mut headers, None);
    let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["host", "x-user-id"]);
}

#[test]
fn each_hop_by_hop_header_goes_even_alone() {
    for name in HOP_BY_HOP.iter().chain([&UPGRADE]) {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static("1"));
        headers.insert("host", HeaderValue::from_static("orders.example.com"));
        keep_end_to_end_headers(&mut headers, None);
        assert!(!headers.contains_key(name), "{name}");
        assert!(headers.contains_key("host"), "{name}");
    }
}

#[test]
fn connection_names_headers_in_any_case_across_its_fields() {
    let mut headers = HeaderMap::new();
    headers.append(
        CONNECTION,
        HeaderValue::from_static(" X-Hop-One ,keep-alive"),
    );
    headers.append(
        CONNECTION,
        HeaderValue::from_static("x-HOP-two, not a name, , x:y"),
    );
    headers.insert("x-hop-one", HeaderValue::from_static("1"));
    headers.insert("x-hop-two", HeaderValue::from_static("2"));
    headers.insert("x-kept", HeaderValue::from_static("3"));
    keep_end_to_end_headers(&mut headers, None);
    let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["x-kept"]);
    assert!(is_hop_by_hop(&CONNECTION) && is_hop_by_hop(&UPGRADE));
    assert!(!is_hop_by_hop(&HOST) && !is_hop_by_hop(&HeaderName::from_static("x-hop-one")));
}

#[test]
fn an_upgrade_keeps_exactly_its_connection_and_upgrade_headers() {
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade, x-hop"));
    headers.insert("x-hop", HeaderValue::from_static("1"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let upgrade = upgrade_type(&headers);
    keep_end_to_end_headers(&mut headers, upgrade);
    assert_eq!(headers[CONNECTION], "upgrade");
    assert_eq!(headers[UPGRADE], "websocket");
    assert!(!headers.contains_key("x-hop"));
}

#[test]
fn trailers_are_forwarded_and_te_says_whether_the_client_takes_them() {
    let mut headers = HeaderMap::new();
    headers.insert("trailer", HeaderValue::from_static("grpc-status"));
    headers.insert(TE, HeaderValue::from_static("gzip;q=0.5, Trailers"));
    let end_to_end = remove_hop_by_hop(&mut headers);
    assert!(end_to_end.accepts_trailers);
    assert!(!headers.contains_key(TE));
    assert_eq!(headers["trailer"], "grpc-status");
    for te in ["gzip", "trailersx", ""] {
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static(te));
        assert!(!remove_hop_by_hop(&mut headers).accepts_trailers, "{te}");
    }
}

#[test]
fn several_cookie_fields_become_one() {
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, HeaderValue::from_static("a=1"));
    join_cookies(&mut headers);
    assert_eq!(headers[COOKIE], "a=1");
    headers.append(COOKIE, HeaderValue::from_static("b=2"));
    headers.append(COOKIE, HeaderValue::from_static("c=3"));
    join_cookies(&mut headers);
    let cookies: Vec<_> = headers.get_all(COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
}

#[test]
fn removal_on_arrival_remembers_the_upgrade_the_client_asked_for() {
    let mut headers = HeaderMap::new();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade, x-user-id"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("x-user-id", HeaderValue::from_static("spoofed"));
    let end_to_end = remove_hop_by_hop(&mut headers);
    assert_eq!(
        end_to_end.upgrade,
        Some(HeaderValue::from_static("websocket"))
    );
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[CONNECTION], "upgrade");
    assert_eq!(headers[UPGRADE], "websocket");

    let mut plain = HeaderMap::new();
    plain.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    plain.insert(UPGRADE, HeaderValue::from_static("websocket"));
    assert_eq!(remove_hop_by_hop(&mut plain).upgrade, None);
    assert!(plain.is_empty());
}
