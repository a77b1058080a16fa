//! The revocation feed end to end: a revoking change in iam-api, the feed iam-jwks builds
//! from the database, and a running sidecar that polls it.

use std::time::{Duration, Instant};

use integration_tests::api::{ServiceProcess, access_token, claims_of, string};
use integration_tests::database::TestDatabase;
use integration_tests::sidecar::{
    CLERK_EMAIL, PROPAGATION_LIMIT, Stack, metric_value, polling_stack,
};
use integration_tests::{eventually, eventually_some};
use serde_json::{Value, json};

/// Gives the stack's clerk the role `role`, as the admin.
async fn set_role(stack: &Stack, role: &str) {
    let admin = stack.api.admin_token().await;
    let response = stack.api.set_role(&admin, &stack.clerk_id, role).await;
    assert_eq!(response.status(), 200, "role change");
}

/// The feed as iam-jwks serves it, with its ETag.
async fn feed(jwks: &ServiceProcess) -> (Value, String) {
    let response = jwks
        .client
        .get(jwks.url("/api/v1/revocations"))
        .send()
        .await
        .expect("feed");
    assert_eq!(response.status(), 200);
    let etag = response
        .headers()
        .get("etag")
        .and_then(|value| value.to_str().ok())
        .expect("an ETag")
        .to_owned();
    (response.json().await.expect("feed json"), etag)
}

#[tokio::test]
async fn a_role_change_revokes_old_tokens_at_the_api_at_once_and_at_the_sidecar_within_the_interval()
 {
    let stack = polling_stack().await;
    let pair = stack.api.login(CLERK_EMAIL, "user-password-1").await;
    let old = access_token(&pair);
    assert_eq!(stack.get("/x", Some(&old)).await.status(), 200);
    assert_eq!(stack.get("/x", Some(&stack.token)).await.status(), 200);

    let changed = Instant::now();
    set_role(&stack, "user").await;
    assert_eq!(
        stack.api.me_status(&old).await,
        401,
        "the api refuses at once"
    );
    for token in [&old, &stack.token] {
        eventually(
            PROPAGATION_LIMIT,
            "the sidecar refuses the old token",
            || async { stack.get("/x", Some(token)).await.status() == 401 },
        )
        .await;
    }
    let refused = stack.get("/x", Some(&old)).await;
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert!(changed.elapsed() < PROPAGATION_LIMIT);

    // The refresh token still works, and gives a token with the new role that every
    // verifier accepts.
    let refreshed = stack
        .api
        .post_json(
            "/api/v1/tokens",
            None,
            &json!({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let new = access_token(&refreshed.json().await.expect("pair"));
    assert_eq!(claims_of(&new)["role"], "user");
    assert_eq!(claims_of(&new)["permissions"], json!([]));
    assert_eq!(stack.api.me_status(&new).await, 200);
    assert_eq!(stack.get("/x", Some(&new)).await.status(), 200);
    // It lacks orders:write now.
    let post = stack
        .sidecar
        .client
        .post(stack.sidecar.url("/orders"))
        .bearer_auth(&new)
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 403);
    let metrics = stack.metrics().await;
    assert_eq!(metric_value(&metrics, "iam_sidecar_revoked_subjects"), 1.0);
}

#[tokio::test]
async fn the_feed_lists_a_cutoff_revalidates_with_304_and_drops_it_after_the_token_lifetime() {
    let db = TestDatabase::create().await;
    // Tokens live 2 s (plus 1 s of leeway), so the entry lapses within the test.
    let api = ServiceProcess::builder(&db)
        .env("ACCESS_TOKEN_TTL", "2")
        .env("JWT_LEEWAY", "1")
        .start()
        .await;
    let jwks = ServiceProcess::jwks_builder(&db).start().await;
    let (empty, empty_etag) = feed(&jwks).await;
    assert_eq!(empty["subjects"], json!({}));
    assert_eq!(empty["tokens"], json!({}));
    assert!(empty["generated_at"].is_i64());

    let (user_id, token) = api.user_with_token("mover@example.com").await;
    let admin = api.admin_token().await;
    let response = api.set_role(&admin, &user_id, "admin").await;
    assert_eq!(response.status(), 200);
    // Listed within a second of the commit (plus slack), whatever JWKS_REFRESH_INTERVAL is.
    let (listed, etag) = eventually_some(Duration::from_secs(4), "the feed lists the user", || {
        let jwks = &jwks;
        let user_id = user_id.clone();
        async move {
            let (document, etag) = feed(jwks).await;
            document["subjects"]
                .get(&user_id)
                .is_some()
                .then_some((document, etag))
        }
    })
    .await;
    assert_ne!(etag, empty_etag);
    let cutoff = listed["subjects"][&user_id]
        .as_i64()
        .expect("a cut-off second");
    assert!(
        claims_of(&token)["iat"].as_i64().expect("iat") < cutoff,
        "the token issued before the change falls under the cut-off"
    );
    let revalidated = jwks
        .client
        .get(jwks.url("/api/v1/revocations"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("feed");
    assert_eq!(revalidated.status(), 304);
    assert_eq!(
        revalidated
            .headers()
            .get("etag")
            .and_then(|value| value.to_str().ok()),
        Some(etag.as_str())
    );

    // Once no token from before the change can be valid (2 s + 1 s), the entry leaves.
    eventually(Duration::from_secs(8), "the entry lapses", || async {
        feed(&jwks).await.0["subjects"].get(&user_id).is_none()
    })
    .await;
    // The api's own check does not lapse: the old token has expired by now anyway.
    assert_eq!(api.me_status(&token).await, 401);
}

#[tokio::test]
async fn a_sidecar_keeps_the_last_feed_while_the_feed_is_unreachable() {
    let mut stack = polling_stack().await;
    set_role(&stack, "user").await;
    eventually(
        PROPAGATION_LIMIT,
        "the sidecar refuses the old token",
        || async { stack.get("/x", Some(&stack.token)).await.status() == 401 },
    )
    .await;
    stack.jwks.terminate();
    stack.jwks.wait(Duration::from_secs(10)).await;
    let failures = || async {
        metric_value(
            &stack.metrics().await,
            "iam_sidecar_revocation_feed_failures_total",
        )
    };
    eventually(
        Duration::from_secs(10),
        "a feed poll has failed",
        || async { failures().await >= 2.0 },
    )
    .await;
    // Still refused: the last copy stays in force.
    assert_eq!(stack.get("/x", Some(&stack.token)).await.status(), 401);
    let health: Value = reqwest::get(stack.admin_url("/healthcheck"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["revocations"], "loaded");
    let age = health["revocations_age_seconds"].as_f64().expect("an age");
    assert!(
        age >= 1.0,
        "the feed's age grows while it is away: {health}"
    );
    let metrics = stack.metrics().await;
    assert!(
        metric_value(&metrics, "iam_sidecar_revocation_feed_age_seconds") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_sidecar_without_a_feed_judges_no_token_and_is_not_ready() {
    let stack = polling_stack().await;
    // The same key service, but a feed URL where nothing answers.
    let nowhere = format!(
        "http://127.0.0.1:{}/api/v1/revocations",
        integration_tests::free_port()
    );
    let sidecar = ServiceProcess::sidecar_builder(
        &stack.upstream.url,
        &stack.jwks.url("/.well-known/jwks.json"),
    )
    .env("REVOCATIONS_URL", &nowhere)
    .env("PUBLIC_PATHS", "/public")
    .spawn();
    let health = eventually_some(
        Duration::from_secs(20),
        "the admin port answers",
        || async {
            let response = reqwest::get(&sidecar.health_url).await.ok()?;
            let status = response.status();
            let body: Value = response.json().await.ok()?;
            (body["keys"] == "loaded").then_some((status, body))
        },
    )
    .await;
    assert_eq!(health.0, 503, "{}", health.1);
    assert_eq!(health.1["revocations"], "not loaded");
    let response = sidecar.get("/x", Some(&stack.token)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(sidecar.get("/public/page", None).await.status(), 200);
}

#[tokio::test]
async fn refreshes_racing_a_role_change_never_yield_an_old_role_token_that_passes_the_feed() {
    let stack = polling_stack().await;
    // The stack's own role assignment already put the clerk in the feed: the race's cut-off
    // is the one above it (the feed may publish the first before the race starts).
    let clerk_cutoff = |document: &Value| document["subjects"][&stack.clerk_id].as_i64();
    let setup_cutoff = eventually_some(PROPAGATION_LIMIT, "the feed lists the clerk", || async {
        clerk_cutoff(&feed(&stack.jwks).await.0)
    })
    .await;
    let mut refresh_tokens = Vec::new();
    for _ in 0..8 {
        let pair = stack.api.login(CLERK_EMAIL, "user-password-1").await;
        refresh_tokens.push(string(&pair["refresh_token"]));
    }
    let refreshes = refresh_tokens.iter().map(|refresh_token| {
        let api = &stack.api;
        async move {
            api.post_json(
                "/api/v1/tokens",
                None,
                &json!({"grant_type": "refresh_token", "refresh_token": refresh_token}),
            )
            .await
        }
    });
    let (responses, ()) = tokio::join!(
        futures::future::join_all(refreshes),
        set_role(&stack, "user")
    );
    let cutoff = eventually_some(
        PROPAGATION_LIMIT,
        "the feed lists the role change's cut-off",
        || async {
            clerk_cutoff(&feed(&stack.jwks).await.0).filter(|cutoff| *cutoff > setup_cutoff)
        },
    )
    .await;
    for response in responses {
        assert_eq!(response.status(), 200);
        let token = access_token(&response.json().await.expect("pair"));
        let claims = claims_of(&token);
        if claims["role"] == "clerk" {
            assert!(
                claims["iat"].as_i64().expect("iat") < cutoff,
                "a token with the old role escapes the cut-off: {claims}"
            );
            assert_eq!(stack.api.me_status(&token).await, 401);
        } else {
            assert_eq!(stack.api.me_status(&token).await, 200);
        }
    }
}
