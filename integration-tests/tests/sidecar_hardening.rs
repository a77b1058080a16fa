//! What the sidecar guarantees the upstream, tried the way an attacker would: raw HTTP/1.1
//! over TCP (an HTTP client would normalise most of these away), several spellings of each
//! trick, and the upstream's own record of what reached it.

use std::time::Duration;

use integration_tests::forge::{self, claims, header, sign_rs256};
use integration_tests::raw_http::{RawResponse, authority, exchange};
use integration_tests::sidecar::jwks_server::{
    Framing, JwksServer, TestSigningKey, jwks_of, padded_jwks_of,
};
use integration_tests::sidecar::{
    CLERK_EMAIL, Stack, metric_value, metrics, stack, stack_with_rules, upgrade_and_echo,
    upgrading_upstream,
};
use integration_tests::upstream::EchoUpstream;
use integration_tests::{ServiceProcess, eventually};
use serde_json::{Value, json};

/// The methods' rules: `GET` (so `HEAD`) on `/catalog` is public, anything else there needs
/// `catalog:write`; on `/orders` `DELETE` needs `orders:delete`, `GET` `orders:read`, the
/// rest `orders:write` (which the stack's clerk holds).
const METHOD_RULES: &str = r#"
[[rule]]
path = "/catalog"
methods = ["GET"]
public = true

[[rule]]
path = "/catalog"
permissions = ["catalog:write"]

[[rule]]
path = "/orders"
methods = ["DELETE"]
permissions = ["orders:delete"]

[[rule]]
path = "/orders"
methods = ["GET"]
permissions = ["orders:read"]

[[rule]]
path = "/orders"
permissions = ["orders:write"]
"#;

/// `host:port` of a process's main port, for raw sockets.
fn address(process: &ServiceProcess) -> String {
    authority(&process.base_url).to_owned()
}

/// A `Connection: close` request head with `headers` exactly as given (names and values
/// unchanged, repeats kept; an empty value is sent as `Name:`).
fn raw_request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let lines: Vec<String> = headers
        .iter()
        .map(|(name, value)| {
            if value.is_empty() {
                format!("{name}:")
            } else {
                format!("{name}: {value}")
            }
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    integration_tests::raw_http::request(method, target, &lines, "")
}

/// Sends raw bytes and reads the whole answer.
async fn send(address: &str, request: &[u8]) -> RawResponse {
    exchange(address, request).await
}

/// Reading a raw answer's body.
trait RawBody {
    /// The body as JSON.
    fn json(&self) -> Value;
    /// Asserts an RFC 9457 problem document with `status` and returns it.
    fn expect_problem(&self, status: u16) -> Value;
}

impl RawBody for RawResponse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    fn expect_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        for member in ["type", "title", "detail"] {
            assert!(body[member].is_string(), "problem lacks {member}: {body}");
        }
        body
    }
}

/// A token of the service's own key for a user holding exactly `permissions`.
async fn token_with(stack: &Stack, permissions: &[&str]) -> String {
    let (kid, key) = forge::service_signing_key(&stack.db).await;
    sign_rs256(&header(&kid), &claims(permissions, 0, 300), &key)
}

/// Sends a raw request to the sidecar with `headers` (and `Authorization: Bearer token`
/// first, when given).
async fn raw(
    stack: &Stack,
    method: &str,
    target: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> RawResponse {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut all: Vec<(&str, &str)> = Vec::new();
    if let Some(bearer) = &bearer {
        all.push(("Authorization", bearer));
    }
    all.extend_from_slice(headers);
    send(&address(&stack.sidecar), &raw_request(method, target, &all)).await
}

/// What the upstream received, from the echo it answered with.
struct Seen(Value);

impl Seen {
    fn of(response: &RawResponse) -> Seen {
        assert_eq!(response.status, 200, "{response:?}");
        Seen(response.json())
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.0["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("name").to_owned(),
                    pair[1].as_str().expect("value").to_owned(),
                )
            })
            .collect()
    }

    /// Every value the upstream received under `name` (lowercase).
    fn values(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(header, _)| header == name)
            .map(|(_, value)| value)
            .collect()
    }

    /// The one value of `name`; fails if it is missing or repeated.
    fn one(&self, name: &str) -> String {
        let values = self.values(name);
        assert_eq!(
            values.len(),
            1,
            "{name}: {values:?} in {:?}",
            self.headers()
        );
        values[0].clone()
    }

    fn method(&self) -> &str {
        self.0["method"].as_str().expect("method")
    }
}

/// A header name read the way CGI-style upstreams read it.
fn normalised(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_method_rule_holds_whatever_the_case_of_the_method() {
    let stack = stack_with_rules(METHOD_RULES, |builder| builder).await;
    let deleter = token_with(&stack, &["orders:delete"]).await;
    let calls = stack.upstream_calls();
    for method in ["DELETE", "delete", "Delete", "dELETE", "DeLeTe"] {
        // The clerk may write orders but not delete them.
        let response = raw(&stack, method, "/orders/7", Some(&stack.token), &[]).await;
        response.expect_problem(403);
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer error="insufficient_scope""#),
            "{method}"
        );
        assert_eq!(
            stack.upstream_calls(),
            calls,
            "{method} reached the upstream"
        );
    }
    for method in ["DELETE", "delete", "Delete"] {
        let response = raw(&stack, method, "/orders/7", Some(&deleter), &[]).await;
        // The method reaches the upstream as the client wrote it.
        assert_eq!(Seen::of(&response).method(), method);
    }
    // The rule for other methods is unaffected by the DELETE rule's spelling.
    let put = raw(&stack, "put", "/orders/7", Some(&stack.token), &[]).await;
    assert_eq!(Seen::of(&put).method(), "put");
}

#[tokio::test]
async fn rules_file_methods_may_be_written_in_any_case() {
    let mixed_case = METHOD_RULES
        .replace(r#"["GET"]"#, r#"["get"]"#)
        .replace(r#"["DELETE"]"#, r#"["Delete"]"#);
    assert_ne!(mixed_case, METHOD_RULES);
    let stack = stack_with_rules(&mixed_case, |builder| builder).await;
    for method in ["DELETE", "delete"] {
        let response = raw(&stack, method, "/orders/7", Some(&stack.token), &[]).await;
        assert_eq!(response.status, 403, "{method}");
    }
    for method in ["GET", "HEAD", "get"] {
        let response = raw(&stack, method, "/catalog/shoes", None, &[]).await;
        assert_eq!(response.status, 200, "{method}");
    }
    let write = raw(&stack, "POST", "/catalog/shoes", None, &[]).await;
    assert_eq!(write.status, 401);
}

#[tokio::test]
async fn a_get_rule_covers_head_in_any_case() {
    let stack = stack_with_rules(METHOD_RULES, |builder| builder).await;
    let reader = token_with(&stack, &["orders:read"]).await;
    let calls = stack.upstream_calls();
    for method in ["HEAD", "head", "Head"] {
        // HEAD runs the GET handler, so it needs what GET needs: the clerk lacks orders:read.
        let refused = raw(&stack, method, "/orders/7", Some(&stack.token), &[]).await;
        assert_eq!(refused.status, 403, "{method}");
        let missing = raw(&stack, method, "/orders/7", None, &[]).await;
        assert_eq!(missing.status, 401, "{method}");
    }
    assert_eq!(stack.upstream_calls(), calls);
    for method in ["HEAD", "head"] {
        let allowed = raw(&stack, method, "/orders/7", Some(&reader), &[]).await;
        assert_eq!(allowed.status, 200, "{method}");
        // And a public GET is a public HEAD.
        let public = raw(&stack, method, "/catalog/shoes", None, &[]).await;
        assert_eq!(public.status, 200, "{method}");
    }
    assert_eq!(stack.upstream_calls(), calls + 4);
    assert_eq!(
        raw(&stack, "GET", "/catalog/shoes", None, &[]).await.status,
        200
    );
    // Only GET and HEAD: a write to the catalog still needs a token.
    for method in ["POST", "post", "PUT", "DELETE", "PATCH"] {
        let write = raw(&stack, method, "/catalog/shoes", None, &[]).await;
        assert_eq!(write.status, 401, "{method}");
    }
}

#[tokio::test]
async fn a_method_override_header_cannot_dodge_a_method_rule() {
    let stack = stack_with_rules(METHOD_RULES, |builder| builder).await;
    let calls = stack.upstream_calls();
    let override_names = [
        "X-HTTP-Method-Override",
        "x-http-method-override",
        "X-HTTP-METHOD-OVERRIDE",
        "X_HTTP_Method_Override",
        "X.HTTP.Method.Override",
        "X-HTTP-Method",
        "x_http_method",
        "X-Method-Override",
        "X.Method.Override",
    ];
    for name in override_names {
        for value in ["DELETE", "delete", "Delete"] {
            // A POST the clerk may send, turned into a DELETE it may not.
            let post = raw(
                &stack,
                "POST",
                "/orders/7",
                Some(&stack.token),
                &[(name, value)],
            )
            .await;
            assert_eq!(post.status, 403, "{name}: {value}");
            // A public GET turned into a write needs a token.
            let get = raw(&stack, "GET", "/catalog/shoes", None, &[(name, value)]).await;
            assert_eq!(get.status, 401, "{name}: {value}");
        }
    }
    // Several overrides: every one of them must be allowed.
    let reader = token_with(&stack, &["orders:read"]).await;
    let two = [
        ("X-HTTP-Method-Override", "GET"),
        ("X-Method-Override", "DELETE"),
    ];
    let response = raw(&stack, "GET", "/orders/7", Some(&reader), &two).await;
    assert_eq!(response.status, 403);
    let repeated = [("X-HTTP-Method", "GET"), ("X-HTTP-Method", "DELETE")];
    let response = raw(&stack, "GET", "/orders/7", Some(&reader), &repeated).await;
    assert_eq!(response.status, 403);
    assert_eq!(
        stack.upstream_calls(),
        calls,
        "a refused override reached the upstream"
    );

    // Overrides to methods that are allowed pass, and reach the upstream as sent.
    for value in ["GET", "get", "HEAD"] {
        let response = raw(
            &stack,
            "GET",
            "/catalog/shoes",
            None,
            &[("X-HTTP-Method-Override", value)],
        )
        .await;
        assert_eq!(
            Seen::of(&response).one("x-http-method-override"),
            value,
            "{value}"
        );
    }
    let both = token_with(&stack, &["orders:read", "orders:delete"]).await;
    let response = raw(&stack, "GET", "/orders/7", Some(&both), &two).await;
    assert_eq!(Seen::of(&response).one("x-method-override"), "DELETE");
    // PUBLIC_PATHS are public whatever the method.
    let public = raw(
        &stack,
        "POST",
        "/public/form",
        None,
        &[("X-HTTP-Method-Override", "DELETE")],
    )
    .await;
    assert_eq!(public.status, 200);
}

#[tokio::test]
async fn a_method_override_that_is_not_a_method_is_a_bad_request() {
    let stack = stack_with_rules(METHOD_RULES, |builder| builder).await;
    let calls = stack.upstream_calls();
    let address = address(&stack.sidecar);
    for value in [
        &b""[..],
        b"   ",
        b"DELETE, PUT",
        b"DEL ETE",
        b"(DELETE)",
        b"DELETE;",
        b"DELETE/1",
        b"\"DELETE\"",
        b"D\xc3\x89LETE",
        b"DELETE\xff",
    ] {
        for (path, token) in [
            ("/orders/7", Some(stack.token.as_str())),
            ("/catalog/shoes", None),
            ("/public/form", None),
        ] {
            let mut bytes =
                format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n")
                    .into_bytes();
            if let Some(token) = token {
                bytes.extend(format!("Authorization: Bearer {token}\r\n").bytes());
            }
            bytes.extend(b"X-HTTP-Method-Override: ");
            bytes.extend(value);
            bytes.extend(b"\r\nContent-Length: 0\r\n\r\n");
            let response = send(&address, &bytes).await;
            let problem = response.expect_problem(400);
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains("x-http-method-override")),
                "{problem}"
            );
        }
    }
    assert_eq!(stack.upstream_calls(), calls);
    let text = stack.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            r#"iam_sidecar_requests_total{outcome="bad_request"}"#
        ),
        30.0,
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Identity headers and Connection
// ---------------------------------------------------------------------------------------

/// Spellings of identity headers a client might send, each with a value containing "spoofed".
const SPOOFED_IDENTITY: [(&str, &str); 17] = [
    ("X_User_Role", "spoofed-admin"),
    ("X.User.Role", "spoofed-admin"),
    ("x-USER-role", "spoofed-admin"),
    ("X-User-Role", "spoofed-admin"),
    ("X-User-Role", "spoofed-twice"),
    ("X-USER-ID", "spoofed-id"),
    ("x_user_id", "spoofed-id"),
    ("X-User-Email", "spoofed@example.com"),
    ("X_USER_PERMISSIONS", "spoofed:all"),
    ("X-User-Permissions", "spoofed:all"),
    ("X-User-Tenant", "spoofed-tenant"),
    ("X-User-", "spoofed-empty-suffix"),
    ("x_user_", "spoofed-empty-suffix"),
    ("X-Client-Id", "spoofed-client"),
    ("x_client_id", "spoofed-client"),
    ("X.Client.Id", "spoofed-client"),
    ("X-CLIENT-ID", "spoofed-client"),
];

#[tokio::test]
async fn identity_headers_in_any_spelling_never_reach_the_upstream() {
    let stack = stack().await;
    let mut headers: Vec<(&str, &str)> = SPOOFED_IDENTITY.to_vec();
    headers.push(("X-Request-Id", "keep-me"));
    headers.push(("X-Users", "not-identity"));
    for (path, token) in [
        ("/anything", Some(stack.token.as_str())),
        ("/orders/7", Some(stack.token.as_str())),
        ("/public/page", None),
        ("/health", None),
    ] {
        let response = raw(&stack, "GET", path, token, &headers).await;
        let seen = Seen::of(&response);
        let all = seen.headers();
        assert!(
            all.iter().all(|(_, value)| !value.contains("spoofed")),
            "{path}: {all:?}"
        );
        let identity: Vec<&(String, String)> = all
            .iter()
            .filter(|(name, _)| {
                let name = normalised(name);
                name.starts_with("x-user-") || name == "x-client-id"
            })
            .collect();
        if token.is_some() {
            let mut names: Vec<&str> = identity.iter().map(|(name, _)| name.as_str()).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "x-client-id",
                    "x-user-email",
                    "x-user-id",
                    "x-user-permissions",
                    "x-user-role"
                ],
                "{path}"
            );
            assert_eq!(seen.one("x-client-id"), "iam");
            assert_eq!(seen.one("x-user-id"), stack.clerk_id);
            assert_eq!(seen.one("x-user-email"), CLERK_EMAIL);
            assert_eq!(seen.one("x-user-role"), "clerk");
            assert_eq!(seen.one("x-user-permissions"), "orders:write");
        } else {
            assert!(identity.is_empty(), "{path}: {identity:?}");
        }
        assert_eq!(seen.one("x-request-id"), "keep-me");
        assert_eq!(seen.one("x-users"), "not-identity");
    }
}

#[tokio::test]
async fn a_clients_connection_header_cannot_remove_what_the_sidecar_adds() {
    let stack = stack().await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // The host `raw_http::request` names.
    let host = "localhost";
    let token = Some(stack.token.as_str());

    // Identity headers named by Connection are still the sidecar's.
    for connection in [
        "x-user-id",
        "X-User-Id",
        "x-user-id, x-user-email, x-user-role, x-user-permissions",
        "keep-alive, X-USER-ROLE",
        "X_User_Role, x-user-id",
        "close, x-user-email",
    ] {
        let response = raw(
            &stack,
            "GET",
            "/anything",
            token,
            &[("Connection", connection), ("X-User-Id", "spoofed")],
        )
        .await;
        let seen = Seen::of(&response);
        assert_eq!(seen.one("x-user-id"), stack.clerk_id, "{connection}");
        assert_eq!(seen.one("x-user-email"), CLERK_EMAIL, "{connection}");
        assert_eq!(seen.one("x-user-role"), "clerk", "{connection}");
        assert_eq!(
            seen.one("x-user-permissions"),
            "orders:write",
            "{connection}"
        );
    }

    // Forwarding and trace-context headers too, on protected and public paths; a client's
    // own value that it declared hop-by-hop is dropped and the sidecar's own is set.
    for (path, token) in [("/anything", token), ("/public/page", None)] {
        for connection in [
            "X-User-Role, x-forwarded-for",
            "x-forwarded-for, x-forwarded-proto, x-forwarded-host",
            "traceparent",
            "traceparent, tracestate, keep-alive",
        ] {
            let response = raw(
                &stack,
                "GET",
                path,
                token,
                &[
                    ("Connection", connection),
                    ("X-Forwarded-For", "203.0.113.7"),
                    ("traceparent", trace),
                    ("tracestate", "vendor=1"),
                ],
            )
            .await;
            let seen = Seen::of(&response);
            let forwarded_for = seen.one("x-forwarded-for");
            assert!(
                forwarded_for.ends_with("127.0.0.1"),
                "{connection}: {forwarded_for}"
            );
            if connection.contains("x-forwarded-for") {
                assert_eq!(forwarded_for, "127.0.0.1", "{connection}");
            } else {
                assert_eq!(forwarded_for, "203.0.113.7, 127.0.0.1", "{connection}");
            }
            assert_eq!(seen.one("x-forwarded-proto"), "http", "{connection}");
            assert_eq!(seen.one("x-forwarded-host"), host, "{connection}");
            assert_eq!(seen.one("traceparent"), trace, "{connection}");
            assert_eq!(seen.one("tracestate"), "vendor=1", "{connection}");
            if token.is_some() {
                assert_eq!(seen.one("x-user-role"), "clerk", "{connection}");
            }
        }
    }

    // Two Connection headers are read together.
    let response = raw(
        &stack,
        "GET",
        "/anything",
        token,
        &[
            ("Connection", "keep-alive"),
            ("Connection", "x-user-role, x-hop"),
            ("x-hop", "1"),
        ],
    )
    .await;
    let seen = Seen::of(&response);
    assert_eq!(seen.one("x-user-role"), "clerk");
    // What a client declares hop-by-hop of its own still goes, as RFC 9110 wants.
    assert!(seen.values("x-hop").is_empty());
    assert!(seen.values("connection").is_empty());

    // Naming Authorization removes the client's own token before it is judged: 401.
    let response = raw(
        &stack,
        "GET",
        "/anything",
        token,
        &[("Connection", "authorization")],
    )
    .await;
    response.expect_problem(401);
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn an_upgrade_keeps_the_identity_headers_its_connection_header_names() {
    let stack = stack().await;
    let upstream = upgrading_upstream(&[
        "upgrade: websocket",
        "connection: upgrade",
        "x-user-email: clerk@example.com",
        "x-user-role: clerk",
    ])
    .await;
    let sidecar =
        ServiceProcess::sidecar_builder(&upstream, &stack.jwks.url("/.well-known/jwks.json"))
            .start()
            .await;
    upgrade_and_echo(
        &address(&sidecar),
        "Upgrade, X-User-Email, x_user_role",
        "X-User-Email: spoofed@example.com\r\n",
        &stack.token,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------

/// Sets of `Authorization` headers that are more than one, whatever they hold.
fn duplicate_authorizations(token: &str) -> Vec<Vec<(&'static str, String)>> {
    let bearer = format!("Bearer {token}");
    vec![
        vec![
            ("Authorization", bearer.clone()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("Authorization", bearer.clone()),
            ("Authorization", "Bearer garbage".into()),
        ],
        vec![
            ("Authorization", "Bearer garbage".into()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("authorization", bearer.clone()),
            ("AUTHORIZATION", bearer.clone()),
        ],
        vec![
            ("Authorization", bearer.clone()),
            ("Authorization", String::new()),
        ],
        vec![
            ("Authorization", String::new()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("Authorization", bearer.clone()),
            ("Authorization", "Basic dXNlcjpwdw==".into()),
        ],
        vec![
            ("Authorization", "Basic dXNlcjpwdw==".into()),
            ("Authorization", bearer.clone()),
        ],
        vec![
            ("Authorization", bearer.clone()),
            ("X-Other", "between".into()),
            ("authorization", bearer.clone()),
            ("Authorization", bearer),
        ],
    ]
}

async fn send_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> RawResponse {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    send(address, &raw_request(method, path, &headers)).await
}

#[tokio::test]
async fn more_than_one_authorization_header_is_a_bad_request_at_the_sidecar() {
    let stack = stack().await;
    let address = address(&stack.sidecar);
    let calls = stack.upstream_calls();
    let cases = duplicate_authorizations(&stack.token);
    for path in ["/anything", "/orders/7", "/public/page", "/health"] {
        for headers in &cases {
            let response = send_with(&address, "GET", path, headers).await;
            let problem = response.expect_problem(400);
            assert_eq!(
                problem["detail"], "the request has more than one Authorization header",
                "{path} {headers:?}"
            );
        }
    }
    assert_eq!(
        stack.upstream_calls(),
        calls,
        "a duplicate reached the upstream"
    );
    let text = stack.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            r#"iam_sidecar_requests_total{outcome="bad_request"}"#
        ),
        (4 * cases.len()) as f64,
        "{text}"
    );

    // One header is judged as before, so the cases above fail for the duplicate alone.
    let bearer = format!("Bearer {}", stack.token);
    for value in [
        bearer.clone(),
        format!("bearer {}", stack.token),
        format!("BEARER   {}  ", stack.token),
    ] {
        let response = send_with(
            &address,
            "GET",
            "/anything",
            &[("Authorization", value.clone())],
        )
        .await;
        // The one header goes on as it was sent (servers drop the surrounding whitespace).
        assert_eq!(Seen::of(&response).one("authorization"), value.trim());
    }
    // One header holding two credentials is one (invalid) token, not two.
    let response = send_with(
        &address,
        "GET",
        "/anything",
        &[("Authorization", format!("{bearer}, Bearer garbage"))],
    )
    .await;
    response.expect_problem(401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    for value in ["", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "Token abc"] {
        let response = send_with(
            &address,
            "GET",
            "/anything",
            &[("Authorization", value.into())],
        )
        .await;
        response.expect_problem(401);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{value:?}"
        );
    }
}

#[tokio::test]
async fn more_than_one_authorization_header_is_a_bad_request_at_the_api() {
    let stack = stack().await;
    let address = address(&stack.api);
    let cases = duplicate_authorizations(&stack.token);
    // Routes that need no token refuse them too: every route of the api.
    for path in [
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/healthcheck",
        "/api/v1/openapi.json",
        "/metrics",
        "/no/such/route",
    ] {
        for headers in &cases {
            let response = send_with(&address, "GET", path, headers).await;
            let problem = response.expect_problem(400);
            assert_eq!(
                problem["detail"], "the request has more than one Authorization header",
                "{path} {headers:?}"
            );
        }
    }
    let one = send_with(
        &address,
        "GET",
        "/api/v1/me",
        &[("Authorization", format!("Bearer {}", stack.token))],
    )
    .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.json()["email"], CLERK_EMAIL);
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_correctly_signed_token_with_a_crit_header_is_refused() {
    let stack = stack().await;
    let (kid, key) = forge::service_signing_key(&stack.db).await;
    // Issued a second ahead: the clerk's role change in the stack's setup revoked every
    // token of the clerk issued before the next whole second.
    let mut claims = claims(&["orders:write"], -1, 300);
    // The clerk's own id, so the api would accept the same token without `crit`.
    claims["sub"] = stack.clerk_id.clone().into();
    let plain = sign_rs256(&header(&kid), &claims, &key);
    assert_eq!(stack.get("/anything", Some(&plain)).await.status(), 200);
    assert_eq!(
        stack.api.get("/api/v1/me", Some(&plain)).await.status(),
        200
    );

    let calls = stack.upstream_calls();
    let crits = [
        json!({"crit": []}),
        json!({"crit": ["exp"]}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": ["urn:example:ext"], "urn:example:ext": true}),
        json!({"crit": null}),
    ];
    for crit in &crits {
        let mut with_crit = header(&kid);
        for (name, value) in crit.as_object().expect("object") {
            with_crit[name] = value.clone();
        }
        let token = sign_rs256(&with_crit, &claims, &key);
        let response = stack.get("/anything", Some(&token)).await;
        assert_eq!(response.status(), 401, "{with_crit}");
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#,
            "{with_crit}"
        );
        let api = stack.api.get("/api/v1/me", Some(&token)).await;
        assert_eq!(api.status(), 401, "api: {with_crit}");
    }
    assert_eq!(stack.upstream_calls(), calls);
    let text = stack.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            r#"iam_sidecar_token_rejections_total{reason="unsupported_crit"}"#
        ),
        crits.len() as f64,
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The key service
// ---------------------------------------------------------------------------------------

/// 1 MiB, the sidecar's `MAX_FETCHED_DOCUMENT_BYTES`.
const JWKS_CAP: usize = 1024 * 1024;

#[tokio::test]
async fn an_oversized_jwks_is_refused_and_the_last_good_keys_stay() {
    let first = TestSigningKey::generate();
    let second = TestSigningKey::generate();
    let jwks = JwksServer::start(&jwks_of(&[&first]).to_string()).await;
    let upstream = EchoUpstream::start().await;
    let sidecar = ServiceProcess::sidecar_builder(&upstream.url, &jwks.url)
        .env("JWKS_REFRESH_INTERVAL", "1")
        .start()
        .await;
    let client = reqwest::Client::new();
    let status_with = |token: String| {
        let client = client.clone();
        let url = sidecar.url("/anything");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_with(first.token(&[])).await, 200);
    assert_eq!(status_with(second.token(&[])).await, 401);

    // Both keys, but in a document over the cap: announced by Content-Length, then chunked
    // with no length, then far over the cap.
    let oversized = [
        (
            padded_jwks_of(&[&first, &second], JWKS_CAP + 1),
            Framing::ContentLength,
        ),
        (
            padded_jwks_of(&[&first, &second], JWKS_CAP + 1),
            Framing::Chunked,
        ),
        (
            padded_jwks_of(&[&first, &second], 16 * JWKS_CAP),
            Framing::Chunked,
        ),
    ];
    let failures = |text: &str| metric_value(text, "iam_sidecar_jwks_refresh_failures_total");
    for (document, framing) in &oversized {
        let before = failures(&metrics(&sidecar).await);
        let served = jwks.requests();
        jwks.serve(document, *framing);
        eventually(
            Duration::from_secs(20),
            "the sidecar refuses the oversized JWKS twice",
            || async {
                jwks.requests() >= served + 2 && failures(&metrics(&sidecar).await) >= before + 2.0
            },
        )
        .await;
        // The last good set stays: the first key works, the second is still unknown.
        assert_eq!(status_with(first.token(&[])).await, 200, "{framing:?}");
        assert_eq!(status_with(second.token(&[])).await, 401, "{framing:?}");
        let text = metrics(&sidecar).await;
        assert_eq!(metric_value(&text, "iam_sidecar_jwks_keys"), 1.0, "{text}");
        let health = reqwest::get(&sidecar.health_url).await.expect("health");
        assert_eq!(health.status(), 200);
    }
    let text = metrics(&sidecar).await;
    assert!(
        metric_value(
            &text,
            r#"iam_sidecar_token_rejections_total{reason="unknown_kid"}"#
        ) >= 4.0,
        "{text}"
    );
    assert!(
        sidecar
            .logs()
            .contains("the document is larger than 1048576 bytes"),
        "{}",
        sidecar.logs()
    );

    // A document of exactly the cap is read: the refusals above were the cap's doing.
    jwks.serve(
        &padded_jwks_of(&[&first, &second], JWKS_CAP),
        Framing::Chunked,
    );
    eventually(
        Duration::from_secs(20),
        "the second key is accepted",
        || {
            let status = status_with(second.token(&[]));
            async move { status.await == 200 }
        },
    )
    .await;
    assert_eq!(status_with(first.token(&[])).await, 200);
}

/// The main port's own refusal of a head over 64 KiB (431, before the gate runs) reaches a
/// gRPC client as gRPC status, as the gate's refusals do, and is counted as the 431 it is.
#[tokio::test]
async fn a_grpc_call_with_a_head_over_the_limit_gets_resource_exhausted() {
    let stack = stack().await;
    let address = authority(&stack.sidecar.base_url);
    let padding = "a".repeat(64 * 1024);
    let grpc = format!(
        "POST /test.Echo/Unary HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\nX-Padding: {padding}\r\n\r\n"
    );
    let answer = exchange(address, grpc.as_bytes()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("grpc-status"), Some("8"), "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/grpc"));
    // Anything else gets the plain 431 problem.
    let plain = format!(
        "GET /orders HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nX-Padding: {padding}\r\n\r\n"
    );
    let answer = exchange(address, plain.as_bytes()).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(stack.upstream.requests().is_empty());
    let metrics = metrics(&stack.sidecar).await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"http_server_requests_total{method="POST",route="/*",status="431"}"#
        ),
        1.0,
        "{metrics}"
    );
}
