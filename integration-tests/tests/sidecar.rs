//! iam-sidecar in front of a test upstream, against the real api and jwks.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use integration_tests::api::{access_token, expect_problem};
use integration_tests::forge::{self, claims, header, sign_hs256, sign_rs256};
use integration_tests::sidecar::{
    CLERK_EMAIL, stack, stack_with, upgrade_and_echo, upgrading_upstream,
};
use integration_tests::upstream::EchoUpstream;
use integration_tests::{ServiceProcess, TestDatabase, eventually, eventually_some, free_port};
use openssl::rsa::Rsa;
use serde_json::{Value, json};

#[tokio::test]
async fn a_valid_token_reaches_the_upstream_with_identity_headers() {
    let stack = stack().await;
    let response = stack
        .sidecar
        .client
        .post(stack.sidecar.url("/orders/42?expand=items&x=%20y"))
        .bearer_auth(&stack.token)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-user-role", "admin")
        .header("X-User-Permissions", "admin:all")
        // Hop-by-hop: meant for the sidecar's connection, never for the upstream.
        .header("connection", "keep-alive, x-hop-header")
        .header("x-hop-header", "for the first hop only")
        .body("order body")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen = &stack.upstream.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/orders/42?expand=items&x=%20y");
    assert_eq!(seen.body_len, "order body".len());
    assert_eq!(seen.header("x-user-email"), Some("clerk@example.com"));
    assert_eq!(seen.header("x-client-id"), Some("iam"));
    assert_eq!(seen.header("x-user-role"), Some("clerk"));
    assert_eq!(seen.header("x-user-permissions"), Some("orders:write"));
    let me: Value = stack
        .api
        .get("/api/v1/me", Some(&stack.token))
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(seen.header("x-user-id"), me["id"].as_str());
    assert_eq!(
        seen.header("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert!(
        seen.header("x-forwarded-for")
            .is_some_and(|value| value.contains("127.0.0.1"))
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    // The client's Host reaches the upstream; headers its Connection named do not.
    let sidecar_host = stack.sidecar.url("/").replace("http://", "");
    assert_eq!(
        seen.header("host"),
        Some(sidecar_host.trim_end_matches('/'))
    );
    assert_eq!(seen.header("x-hop-header"), None);
    // Spoofed identity headers never pass: exactly one of each, the sidecar's.
    assert_eq!(
        seen.headers
            .iter()
            .filter(|(name, _)| name == "x-user-role")
            .count(),
        1
    );
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_public_paths_too() {
    let stack = stack().await;
    let response = stack
        .sidecar
        .client
        .get(stack.sidecar.url("/public/info"))
        .header("x-user-id", "someone-else")
        .header("X-User-Role", "admin")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen = &stack.upstream.requests()[0];
    assert!(
        seen.headers
            .iter()
            .all(|(name, _)| !name.starts_with("x-user-")),
        "{:?}",
        seen.headers
    );
    assert_eq!(stack.get("/health/live", None).await.status(), 200);
}

#[tokio::test]
async fn bad_tokens_get_401_and_never_reach_the_upstream() {
    let stack = stack_with(|builder| builder.env("RUST_LOG", "debug")).await;
    let (kid, key) = forge::service_signing_key(&stack.db).await;
    let attacker = openssl::pkey::PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let jwks: Value = stack
        .jwks
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .expect("jwks");
    let public_jwk = jwks["keys"][0].to_string();
    let valid = claims(&[], 0, 300);
    let mut tampered: Vec<String> = stack.token.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&tampered[1]).expect("b64")).expect("json");
    payload["role"] = "admin".into();
    tampered[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let without = |claim: &str| {
        let mut claims = claims(&[], 0, 300);
        claims.as_object_mut().expect("object").remove(claim);
        claims
    };
    let with = |field: &str, value: Value| {
        let mut claims = claims(&[], 0, 300);
        claims[field] = value;
        claims
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".to_owned()),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
                URL_SAFE_NO_PAD.encode(valid.to_string())
            ),
        ),
        (
            "HS256 with the public key",
            sign_hs256(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                &valid,
                public_jwk.as_bytes(),
            ),
        ),
        ("tampered payload", tampered.join(".")),
        (
            "stripped signature",
            format!(
                "{}.{}.",
                tampered[0],
                stack.token.split('.').nth(1).expect("payload")
            ),
        ),
        (
            "unknown kid",
            sign_rs256(&header("no-such-kid"), &valid, &key),
        ),
        (
            "foreign key under our kid",
            sign_rs256(&header(&kid), &valid, &attacker),
        ),
        (
            "foreign key with a jwk header",
            sign_rs256(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": "attacker", "jku": "http://127.0.0.1:1/jwks.json"}),
                &valid,
                &attacker,
            ),
        ),
        (
            "wrong issuer",
            sign_rs256(&header(&kid), &with("iss", "evil".into()), &key),
        ),
        (
            "wrong audience",
            sign_rs256(&header(&kid), &with("aud", "billing".into()), &key),
        ),
        (
            "wrong typ",
            sign_rs256(
                &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
                &valid,
                &key,
            ),
        ),
        (
            "expired beyond leeway",
            sign_rs256(&header(&kid), &claims(&[], 400, 300), &key),
        ),
        (
            "not yet valid",
            sign_rs256(
                &header(&kid),
                &with("nbf", (chrono::Utc::now().timestamp() + 120).into()),
                &key,
            ),
        ),
        (
            "missing exp",
            sign_rs256(&header(&kid), &without("exp"), &key),
        ),
        (
            "missing sub",
            sign_rs256(&header(&kid), &without("sub"), &key),
        ),
        (
            "missing permissions",
            sign_rs256(&header(&kid), &without("permissions"), &key),
        ),
        ("oversized", "a".repeat(20_000)),
        // Signed by the service's own key, yet claims that cannot be sent as headers: a
        // header injection through the identity headers, or a claim silently dropped.
        (
            "a role with a line break",
            sign_rs256(
                &header(&kid),
                &with("role", "user\r\nx-user-role: admin".into()),
                &key,
            ),
        ),
        (
            "an email with a NUL",
            sign_rs256(
                &header(&kid),
                &with("email", "a\u{0}@example.com".into()),
                &key,
            ),
        ),
        (
            "a permission with a line break",
            sign_rs256(
                &header(&kid),
                &with("permissions", json!(["orders:read\n"])),
                &key,
            ),
        ),
    ];
    // The forged tokens with the real key and valid claims do work, so the cases above fail
    // for the reason they name.
    let genuine = sign_rs256(&header(&kid), &valid, &key);
    assert_eq!(stack.get("/anything", Some(&genuine)).await.status(), 200);
    let calls = stack.upstream_calls();
    // Twice each: a refused token is not remembered as verified either.
    for (case, token) in cases.iter().chain(&cases) {
        let response = stack.get("/anything", Some(token)).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#,
            "{case}"
        );
        expect_problem(response, 401).await;
    }
    let missing = stack.get("/anything", None).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    expect_problem(missing, 401).await;
    assert_eq!(
        stack.upstream_calls(),
        calls,
        "a refused request reached the upstream"
    );
    let metrics = reqwest::get(stack.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("iam_sidecar_token_rejections_total{reason=\"expired\"} 2"),
        "{metrics}"
    );
    // Tokens, good or bad, never reach the sidecar's log, even at debug level.
    let logs = stack.sidecar.logs();
    assert!(logs.contains("access token refused"), "debug logging is on");
    assert!(!logs.contains(&stack.token) && !logs.contains(&genuine));
}

#[tokio::test]
async fn rules_give_403_or_pass_as_configured() {
    let stack = stack().await;
    let (_, user_token) = stack.api.user_with_token("reader@example.com").await;
    // /orders needs orders:write for POST and DELETE only.
    let post = |token: String| {
        let stack = &stack;
        async move {
            stack
                .sidecar
                .client
                .post(stack.sidecar.url("/orders"))
                .bearer_auth(token)
                .send()
                .await
                .expect("send")
        }
    };
    assert_eq!(post(stack.token.clone()).await.status(), 200);
    let forbidden = post(user_token.clone()).await;
    assert_eq!(
        forbidden.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope""#
    );
    expect_problem(forbidden, 403).await;
    assert_eq!(stack.get("/orders", Some(&user_token)).await.status(), 200);
    assert_eq!(
        stack
            .get("/orders-archive", Some(&user_token))
            .await
            .status(),
        200
    );
    // No token at all still needs one, whatever the rule.
    expect_problem(stack.get("/orders", None).await, 401).await;
    expect_problem(stack.get("/admin", Some(&stack.token)).await, 403).await;
}

#[tokio::test]
async fn path_tricks_do_not_bypass_a_rule() {
    let stack = stack().await;
    let calls = stack.upstream_calls();
    for path in [
        "/admin",
        "/admin/",
        "//admin",
        "/public/../admin",
        "/orders/../admin/x",
        "/admin.",
        "/%61dmin",
        "/./admin",
        "/admin%2e",
    ] {
        let response = stack
            .sidecar
            .client
            .get(format!("{}{path}", stack.sidecar.base_url))
            .bearer_auth(&stack.token)
            .send()
            .await
            .expect("send");
        assert!(
            response.status() == 403 || response.status() == 400,
            "{path}: {}",
            response.status()
        );
    }
    for path in [
        "/public/..%2fadmin",
        "/public/%2e%2e/%2e%2e/admin",
        "/public/..;/admin",
    ] {
        let response = stack
            .sidecar
            .client
            .get(format!("{}{path}", stack.sidecar.base_url))
            .send()
            .await
            .expect("send");
        assert!(
            response.status() == 401 || response.status() == 400,
            "{path}: {}",
            response.status()
        );
    }
    assert_eq!(stack.upstream_calls(), calls);
    // What is forwarded is the normalised path that was checked.
    stack.get("/public//a/./b/../c", None).await;
    assert_eq!(
        stack
            .upstream
            .requests()
            .last()
            .expect("one")
            .path_and_query,
        "/public/a/c"
    );
}

#[tokio::test]
async fn a_key_rotated_in_the_api_is_accepted_within_seconds() {
    let stack = stack().await;
    let output = ServiceProcess::builder(&stack.db)
        .env("KEY_ROTATION_GRACE", "1")
        .args(&["--config=local", "keys", "rotate"])
        .run(None)
        .await;
    assert!(output.status.success());
    let old_kid = stack.token.split('.').next().expect("header").to_owned();
    let new_token = eventually_some(Duration::from_secs(10), "the api rotates", || async {
        let token = access_token(
            &stack
                .api
                .login("clerk@example.com", "user-password-1")
                .await,
        );
        (token.split('.').next() != Some(old_kid.as_str())).then_some(token)
    })
    .await;
    // The sidecar refreshes only every 30 s; the unknown kid triggers the refetch.
    assert_eq!(stack.get("/orders", Some(&new_token)).await.status(), 200);
    assert_eq!(stack.get("/orders", Some(&stack.token)).await.status(), 200);
}

#[tokio::test]
async fn verification_continues_when_the_jwks_service_goes_away() {
    // Refresh every second, so that the outage is met by a real refresh, not 30 s away.
    let mut stack = stack_with(|builder| builder.env("JWKS_REFRESH_INTERVAL", "1")).await;
    assert_eq!(stack.get("/x", Some(&stack.token)).await.status(), 200);
    let metrics_url = stack.admin_url("/metrics");
    let failures = || async {
        let metrics = reqwest::get(metrics_url.as_str())
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("iam_sidecar_jwks_refresh_failures_total "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = failures().await;
    stack.jwks.terminate();
    stack.jwks.wait(Duration::from_secs(10)).await;
    eventually(
        Duration::from_secs(10),
        "the sidecar has failed to refresh the JWKS twice",
        || async { failures().await >= before + 2 },
    )
    .await;
    // A token the sidecar has never seen (not in its verified-token memory) still verifies
    // against the last good key set, and so does the remembered one.
    let fresh = access_token(&stack.api.login(CLERK_EMAIL, "user-password-1").await);
    assert_ne!(fresh, stack.token);
    assert_eq!(stack.get("/x", Some(&fresh)).await.status(), 200);
    assert_eq!(stack.get("/x", Some(&stack.token)).await.status(), 200);
    assert_eq!(
        reqwest::get(stack.admin_url("/healthcheck"))
            .await
            .expect("health")
            .status(),
        200
    );
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_and_a_slow_one_504() {
    let stack = stack_with(|builder| builder.env("UPSTREAM_TIMEOUT", "1")).await;
    let slow = stack.get("/slow", Some(&stack.token)).await;
    expect_problem(slow, 504).await;

    let db = &stack.db;
    let _ = db;
    let dead_upstream = format!("http://127.0.0.1:{}", free_port());
    let sidecar =
        ServiceProcess::sidecar_builder(&dead_upstream, &stack.jwks.url("/.well-known/jwks.json"))
            .start()
            .await;
    let response = sidecar.get("/anything", Some(&stack.token)).await;
    expect_problem(response, 502).await;
    let metrics = reqwest::get(sidecar.health_url.replace("/healthcheck", "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("iam_sidecar_upstream_errors_total{kind=\"unreachable\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn before_any_key_loads_protected_paths_get_503_and_the_sidecar_is_not_ready() {
    let upstream = EchoUpstream::start().await;
    let nowhere = format!("http://127.0.0.1:{}/.well-known/jwks.json", free_port());
    let sidecar = ServiceProcess::sidecar_builder(&upstream.url, &nowhere)
        .env("PUBLIC_PATHS", "/public")
        .spawn();
    let health = eventually_some(Duration::from_secs(20), "the admin port opens", || async {
        reqwest::get(&sidecar.health_url).await.ok()
    })
    .await;
    assert_eq!(health.status(), 503);
    let protected = sidecar.get("/orders", Some("any.token.at-all")).await;
    assert!(protected.headers().contains_key("retry-after"));
    expect_problem(protected, 503).await;
    assert_eq!(sidecar.get("/public/page", None).await.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_problem() {
    let dir =
        std::env::temp_dir().join(format!("iam-sidecar-bad-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\npath = \"/ok\"\n\n[[rule]]\npath = \"orders\"\n",
    )
    .expect("write");
    let output = ServiceProcess::sidecar_builder("http://127.0.0.1:9", "http://127.0.0.1:9/jwks")
        .without_env("UPSTREAM_URL")
        .env("SIDECAR_RULES_FILE", rules.to_str().expect("path"))
        .run(None)
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UPSTREAM_URL"), "{stderr}");
    assert!(stderr.contains("rule 2"), "{stderr}");
}

#[tokio::test]
async fn an_authenticated_websocket_upgrade_passes_through() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = stack().await;
    let upstream =
        upgrading_upstream(&["upgrade: websocket", "x-user-email: clerk@example.com"]).await;
    let sidecar =
        ServiceProcess::sidecar_builder(&upstream, &stack.jwks.url("/.well-known/jwks.json"))
            .start()
            .await;
    let address = sidecar.base_url.trim_start_matches("http://").to_owned();

    upgrade_and_echo(&address, "Upgrade", "", &stack.token).await;

    // Without a token the upgrade is refused before the upstream is contacted.
    let mut anonymous = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!(
        "GET /socket HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    anonymous
        .write_all(request.as_bytes())
        .await
        .expect("write");
    let mut buffer = [0u8; 1024];
    let read = anonymous.read(&mut buffer).await.expect("read");
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn large_bodies_stream_through_in_both_directions() {
    let stack = stack().await;
    let upload = vec![b'x'; 24 * 1024 * 1024];
    let response = stack
        .sidecar
        .client
        .put(stack.sidecar.url("/files/big"))
        .bearer_auth(&stack.token)
        .body(upload)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.expect("json");
    assert_eq!(seen["body_len"], 24 * 1024 * 1024);

    let download = stack.get("/download", Some(&stack.token)).await;
    assert_eq!(download.status(), 200);
    let body = download.bytes().await.expect("body");
    assert_eq!(body.len(), integration_tests::upstream::DOWNLOAD_BYTES);
}

#[tokio::test]
async fn a_remembered_token_is_still_refused_once_it_expires() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::builder(&db)
        .env("ACCESS_TOKEN_TTL", "4")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let upstream = EchoUpstream::start().await;
    let sidecar =
        ServiceProcess::sidecar_builder(&upstream.url, &jwks.url("/.well-known/jwks.json"))
            .env("JWT_LEEWAY", "0")
            .start()
            .await;
    let (_, token) = api.user_with_token("ada@example.com").await;
    let issued = Instant::now();
    // Verified once, then answered from memory until the token expires; then 401, although
    // the memory still holds it. Polled, so a slow machine cannot make it flaky.
    let mut accepted = 0;
    loop {
        match sidecar.get("/x", Some(&token)).await.status().as_u16() {
            200 => accepted += 1,
            401 => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(
            issued.elapsed() < Duration::from_secs(10),
            "a token of 4 s was still accepted after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        accepted >= 3,
        "the token was refused early, after {accepted} uses"
    );
    assert_eq!(upstream.requests().len(), accepted);
    expect_problem(sidecar.get("/x", Some(&token)).await, 401).await;
}

#[tokio::test]
async fn the_api_and_the_sidecar_refuse_a_token_with_the_same_answer() {
    let stack = stack().await;
    let (_, user_token) = stack.api.user_with_token("reader@example.com").await;
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("challenge")
            .to_owned();
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        let body: Value = response.json().await.expect("problem");
        (status, challenge, content_type, body)
    };
    for (case, token, challenge) in [
        ("no token", None, "Bearer"),
        (
            "not a token",
            Some("not-a-token"),
            r#"Bearer error="invalid_token""#,
        ),
    ] {
        let from_api = answer(stack.api.get("/api/v1/me", token).await).await;
        let from_sidecar = answer(stack.get("/anything", token).await).await;
        assert_eq!(from_api, from_sidecar, "{case}");
        assert_eq!(from_api.0, 401, "{case}");
        assert_eq!(from_api.1, challenge, "{case}");
        assert_eq!(from_api.2, "application/problem+json", "{case}");
        assert_eq!(
            from_api.3["type"], "urn:iam:problem:unauthenticated",
            "{case}"
        );
    }
    // Lacking a permission: the same answer, naming the permission each one needed.
    let (status, challenge, content_type, mut from_api) =
        answer(stack.api.get("/api/v1/roles", Some(&user_token)).await).await;
    let forbidden = stack
        .sidecar
        .client
        .post(stack.sidecar.url("/orders"))
        .bearer_auth(&user_token)
        .send()
        .await
        .expect("send");
    let (sidecar_status, sidecar_challenge, sidecar_type, mut from_sidecar) =
        answer(forbidden).await;
    assert_eq!(
        (status, challenge.as_str(), content_type.as_str()),
        (
            403,
            r#"Bearer error="insufficient_scope""#,
            "application/problem+json"
        )
    );
    assert_eq!(
        (sidecar_status, sidecar_challenge, sidecar_type),
        (status, challenge, content_type)
    );
    assert_eq!(
        from_api["detail"].take(),
        "the permission iam:roles:read is required"
    );
    assert_eq!(
        from_sidecar["detail"].take(),
        "the permission orders:write is required"
    );
    assert_eq!(from_api, from_sidecar);
    assert_eq!(from_api["type"], "urn:iam:problem:forbidden");
}
