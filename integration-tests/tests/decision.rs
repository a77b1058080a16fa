//! Decision mode (contract §6): the sidecar answers another proxy's "may this pass?" with
//! the gate proxy mode uses. Behind a real nginx (`auth_request`, the README's snippet), and
//! asked directly with the hostile spellings a client could slip into the question.

use integration_tests::ServiceProcess;
use integration_tests::api::{access_token, expect_problem};
use integration_tests::nginx::Nginx;
use integration_tests::raw_http::{self, authority};
use integration_tests::sidecar::{CLERK_EMAIL, Stack, stack_with};
use reqwest::StatusCode;

/// The server block of the README's nginx example: `{sidecar}` is the sidecar's main port,
/// `{upstream}` the protected service.
const NGINX_SERVER: &str = r#"
    location = /_iam_decision {
      internal;
      proxy_pass http://{sidecar};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      # A client's own copies must not reach the sidecar (it refuses disagreeing ones).
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-Method "";
    }
    location / {
      auth_request /_iam_decision;
      auth_request_set $iam_user_id $upstream_http_x_user_id;
      auth_request_set $iam_user_email $upstream_http_x_user_email;
      auth_request_set $iam_client_id $upstream_http_x_client_id;
      auth_request_set $iam_user_role $upstream_http_x_user_role;
      auth_request_set $iam_user_permissions $upstream_http_x_user_permissions;
      # Set from the answer, or removed when it has none: a client's copies never pass.
      proxy_set_header X-User-Id $iam_user_id;
      proxy_set_header X-User-Email $iam_user_email;
      proxy_set_header X-Client-Id $iam_client_id;
      proxy_set_header X-User-Role $iam_user_role;
      proxy_set_header X-User-Permissions $iam_user_permissions;
      proxy_pass http://{upstream};
    }
"#;

/// The stack of the sidecar tests with its sidecar in decision mode (no upstream).
async fn decision_stack() -> Stack {
    stack_with(|builder| {
        builder
            .without_env("UPSTREAM_URL")
            .env("SIDECAR_MODE", "decision")
    })
    .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn nginx_in_front(stack: &Stack) -> Nginx {
    let server = NGINX_SERVER
        .replace("{sidecar}", authority(&stack.sidecar.url("")))
        .replace("{upstream}", authority(&stack.upstream.url));
    Nginx::start(&server).await
}

async fn through(
    nginx: &Nginx,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().request(method, format!("{}{path}", nginx.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.expect("nginx answers")
}

#[tokio::test]
async fn behind_nginx_a_valid_token_passes_with_the_identity_and_nothing_else_does() {
    let stack = decision_stack().await;
    let nginx = nginx_in_front(&stack).await;

    // Valid: the upstream gets the identity from the decision, not the client's copies.
    let response = through(
        &nginx,
        reqwest::Method::POST,
        "/orders?x=1",
        Some(&stack.token),
        &[("X-User-Role", "admin"), ("X-User-Id", "someone-else")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let seen = stack.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path_and_query, "/orders?x=1");
    assert_eq!(seen[0].header("x-user-id"), Some(stack.clerk_id.as_str()));
    assert_eq!(seen[0].header("x-user-email"), Some(CLERK_EMAIL));
    assert_eq!(seen[0].header("x-user-role"), Some("clerk"));
    assert_eq!(seen[0].header("x-user-permissions"), Some("orders:write"));
    assert_eq!(seen[0].header("x-client-id"), Some("iam"));

    // Missing: 401 with the challenge, and the upstream is not called.
    let response = through(&nginx, reqwest::Method::GET, "/orders", None, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // Forged: the signature of another payload.
    let mut forged = stack.token.clone();
    forged.pop();
    forged.push(if stack.token.ends_with('A') { 'B' } else { 'A' });
    let response = through(&nginx, reqwest::Method::GET, "/orders", Some(&forged), &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains(r#"error="invalid_token""#)
    );
    // Refused by a rule: /admin needs admin:all, which the clerk lacks.
    let response = through(
        &nginx,
        reqwest::Method::GET,
        "/admin/users",
        Some(&stack.token),
        &[],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A client naming another target in the proxy's headers changes nothing.
    let response = through(
        &nginx,
        reqwest::Method::GET,
        "/admin/users",
        Some(&stack.token),
        &[
            ("X-Forwarded-Uri", "/public"),
            ("X-Forwarded-Method", "GET"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        stack.upstream.requests().len(),
        1,
        "only the valid request passed"
    );

    // The method is the client's: a user without orders:write may read, not write.
    let (_, reader) = stack.api.user_with_token("reader@example.com").await;
    let read = through(&nginx, reqwest::Method::GET, "/orders", Some(&reader), &[]).await;
    assert_eq!(read.status(), StatusCode::OK);
    let write = through(
        &nginx,
        reqwest::Method::DELETE,
        "/orders/7",
        Some(&reader),
        &[],
    )
    .await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // Public: passes without a token, and without the client's identity headers.
    let response = through(
        &nginx,
        reqwest::Method::GET,
        "/public/page",
        None,
        &[("X-User-Id", "admin"), ("X-User-Role", "admin")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = stack.upstream.requests();
    let public = seen.last().expect("the public request");
    assert_eq!(public.path_and_query, "/public/page");
    assert_eq!(public.header("x-user-id"), None);
    assert_eq!(public.header("x-user-role"), None);
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn asked_directly_the_answer_carries_the_identity_of_the_request_described() {
    let stack = decision_stack().await;
    let ask = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let url = stack.sidecar.url(path);
        async move {
            let mut request = client().get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.expect("the sidecar answers")
        }
    };
    let bearer = format!("Bearer {}", stack.token);
    let allowed = ask(
        vec![
            ("authorization", bearer.clone()),
            ("x-original-method", "DELETE".into()),
            ("x-original-uri", "/orders/7?force=1".into()),
        ],
        "/auth",
    )
    .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-user-id"], stack.clerk_id.as_str());
    assert_eq!(allowed.headers()["x-user-permissions"], "orders:write");
    assert_eq!(allowed.text().await.expect("body"), "");
    // Without the proxy's headers the question is its own request (Envoy's ext_authz).
    let own = ask(vec![("authorization", bearer.clone())], "/admin").await;
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    let public = ask(vec![], "/public").await;
    assert_eq!(public.status(), StatusCode::OK);
    assert!(public.headers().get("x-user-id").is_none());
    // Traefik's spelling.
    let traefik = ask(
        vec![
            ("x-forwarded-method", "GET".into()),
            ("x-forwarded-uri", "/admin".into()),
        ],
        "/public",
    )
    .await;
    assert_eq!(traefik.status(), StatusCode::UNAUTHORIZED);
    // Disagreeing spellings: which one the proxy acts on is unknowable.
    let conflicting = ask(
        vec![
            ("x-forwarded-uri", "/public".into()),
            ("x-original-uri", "/admin".into()),
        ],
        "/public",
    )
    .await;
    let problem = expect_problem(conflicting, 400).await;
    assert_eq!(
        problem["detail"],
        "the X-Forwarded-Uri and X-Original-URI headers disagree"
    );
    let not_a_method = ask(vec![("x-original-method", "GE T".into())], "/public").await;
    expect_problem(not_a_method, 400).await;
    let not_a_path = ask(vec![("x-original-uri", "admin".into())], "/public").await;
    expect_problem(not_a_path, 400).await;
    // Hostile paths are normalised as in proxy mode: no way around the /admin rule.
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "//admin",
        "/admin/",
    ] {
        let tricked = ask(
            vec![
                ("authorization", bearer.clone()),
                ("x-original-uri", target.into()),
            ],
            "/public",
        )
        .await;
        assert!(
            matches!(tricked.status().as_u16(), 400 | 403),
            "{target}: {}",
            tricked.status()
        );
    }
}

#[tokio::test]
async fn over_a_raw_socket_repeats_and_connection_tricks_do_not_move_the_question() {
    let stack = decision_stack().await;
    let sidecar = stack.sidecar.url("");
    let address = authority(&sidecar);
    // Two copies of one header, equal or not.
    for copies in [
        ["X-Original-URI: /admin", "X-Original-URI: /admin"],
        ["X-Original-URI: /public", "x-original-uri: /admin"],
        ["X-Original-Method: GET", "X-Original-Method: GET"],
    ] {
        let answer =
            raw_http::exchange(address, &raw_http::request("GET", "/public", &copies, "")).await;
        assert_eq!(answer.status, 400, "{copies:?}: {}", answer.head);
    }
    // A client's `Connection` header naming the proxy's header does not remove it: the
    // question stays /admin, not the question's own /public.
    let answer = raw_http::exchange(
        address,
        b"GET /public HTTP/1.1\r\nHost: localhost\r\nConnection: close, x-original-uri\r\n\
          X-Original-URI: /admin\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.head);
    // Spellings the sidecar does not read are not the proxy's header either way.
    let answer = raw_http::exchange(
        address,
        &raw_http::request("GET", "/admin", &["X_Original_URI: /public"], ""),
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.head);
    // Two Authorization headers: 400, as in proxy mode.
    let token = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    let first = format!("Authorization: Bearer {token}");
    let answer = raw_http::exchange(
        address,
        &raw_http::request("GET", "/orders", &[&first, "Authorization: Bearer x"], ""),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.head);
}

#[tokio::test]
async fn decision_mode_takes_no_upstream_and_an_unknown_mode_stops_the_start() {
    let with_upstream =
        ServiceProcess::sidecar_builder("http://127.0.0.1:9", "http://127.0.0.1:9/jwks")
            .env("SIDECAR_MODE", "decision")
            .run(None)
            .await;
    assert_eq!(with_upstream.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&with_upstream.stderr);
    assert!(stderr.contains("UPSTREAM_URL"), "{stderr}");
    let unknown = ServiceProcess::sidecar_builder("http://127.0.0.1:9", "http://127.0.0.1:9/jwks")
        .env("SIDECAR_MODE", "Decision")
        .run(None)
        .await;
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("SIDECAR_MODE"), "{stderr}");
}
