//! Audit events (contract §3): one row per security event, written with the change it
//! records (a refused change leaves none), one log line each, never a password or token;
//! the listing pages, filters and needs `iam:audit:read`; old events are purged.

use std::time::Duration;

use integration_tests::api::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ServiceProcess, access_token, claims_of, expect_problem, string,
};
use integration_tests::{TestDatabase, eventually};
use reqwest::Method;
use serde_json::{Value, json};

/// Every event the listing shows (newest first), read page by page as `token`.
async fn all_events(api: &ServiceProcess, token: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after.map(|id| format!("&after={id}")).unwrap_or_default();
        let response = api
            .get(
                &format!("/api/v1/audit-events?limit=3{query}{cursor}"),
                Some(token),
            )
            .await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.expect("page");
        events.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return events,
        }
    }
}

fn find<'a>(events: &'a [Value], kind: &str, outcome: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind && event["outcome"] == outcome)
        .collect()
}

#[tokio::test]
async fn every_security_event_is_recorded_once_with_its_change_and_without_secrets() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let mut secrets = vec![ADMIN_PASSWORD.to_owned()];
    let admin_pair = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin = access_token(&admin_pair);
    let admin_id = string(&claims_of(&admin)["sub"]);
    let user = api
        .register("audited@example.com", "first-password-1")
        .await;
    let user_id = string(&user["id"]);
    let pair = api.login("audited@example.com", "first-password-1").await;
    assert_eq!(
        api.login_attempt("audited@example.com", "wrong-password-1")
            .await
            .status(),
        401
    );
    assert_eq!(
        api.login_attempt("nobody@example.com", "wrong-password-2")
            .await
            .status(),
        401
    );
    let renewed: Value = api
        .refresh(&string(&pair["refresh_token"]))
        .await
        .json()
        .await
        .expect("pair");
    assert_eq!(
        api.refresh(&string(&pair["refresh_token"])).await.status(),
        401
    );
    let second = api.login("audited@example.com", "first-password-1").await;
    let revoke = |token: String| {
        let api = &api;
        async move {
            let body = json!({ "token": token });
            let response = api.post_json("/api/v1/tokens/revoke", None, &body).await;
            assert_eq!(response.status(), 204);
        }
    };
    revoke(string(&second["refresh_token"])).await;
    revoke(access_token(&second)).await;
    let role = json!({"name": "auditor", "permissions": ["iam:audit:read"]});
    let created = api.post_json("/api/v1/roles", Some(&admin), &role).await;
    assert_eq!(created.status(), 201);
    let replaced = api
        .send_json(
            Method::PUT,
            "/api/v1/roles/auditor",
            Some(&admin),
            &json!({"permissions": ["iam:audit:read", "iam:users:read"]}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let user_path = format!("/api/v1/users/{user_id}");
    let assigned = api
        .send_json(
            Method::PUT,
            &format!("{user_path}/role"),
            Some(&admin),
            &json!({"role": "auditor"}),
        )
        .await;
    assert_eq!(assigned.status(), 200);
    let own = access_token(&api.login("audited@example.com", "first-password-1").await);
    let change = |current: &'static str, new: &'static str| {
        let api = &api;
        let own = own.clone();
        async move {
            let body = json!({"current_password": current, "new_password": new});
            api.send_json(Method::PUT, "/api/v1/me/password", Some(&own), &body)
                .await
        }
    };
    assert_eq!(
        change("not-the-password", "second-password-1")
            .await
            .status(),
        403
    );
    let changed: Value = change("first-password-1", "second-password-1")
        .await
        .json()
        .await
        .expect("pair");
    let signed_out = api
        .delete("/api/v1/me/sessions", Some(&access_token(&changed)))
        .await;
    assert_eq!(signed_out.status(), 204);
    let set = api
        .send_json(
            Method::PUT,
            &format!("{user_path}/password"),
            Some(&admin),
            &json!({"password": "third-password-1"}),
        )
        .await;
    assert_eq!(set.status(), 204);
    for disabled in [true, false] {
        let body = json!({ "disabled": disabled });
        let response = api
            .send_json(Method::PATCH, &user_path, Some(&admin), &body)
            .await;
        assert_eq!(response.status(), 200);
    }
    // A refused change records nothing: the last admin stays, and no event says otherwise.
    let refused = api
        .send_json(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            &json!({"disabled": true}),
        )
        .await;
    expect_problem(refused, 409).await;
    let deleted = api.delete(&user_path, Some(&admin)).await;
    assert_eq!(deleted.status(), 204);
    let role_deleted = api.delete("/api/v1/roles/auditor", Some(&admin)).await;
    assert_eq!(role_deleted.status(), 204);
    let rotated = ServiceProcess::builder(&db)
        .args(&["keys", "rotate"])
        .run(None)
        .await;
    assert!(rotated.status.success());
    secrets.extend(
        [
            "first-password-1",
            "second-password-1",
            "third-password-1",
            "wrong-password-1",
            "wrong-password-2",
            "not-the-password",
        ]
        .map(str::to_owned),
    );
    for token_pair in [&admin_pair, &pair, &renewed, &second, &changed] {
        secrets.push(access_token(token_pair));
        secrets.push(string(&token_pair["refresh_token"]));
    }

    let events = all_events(&api, &admin, "").await;
    let by_admin = |kind: &str, subject: &str| {
        let matching = find(&events, kind, "success");
        assert_eq!(matching.len(), 1, "{kind}: {matching:?}");
        assert_eq!(matching[0]["actor"], admin_id.as_str(), "{kind}");
        assert_eq!(matching[0]["subject"], subject, "{kind}");
        assert_eq!(matching[0]["ip"], "127.0.0.1", "{kind}");
    };
    by_admin("role.created", "auditor");
    by_admin("role.updated", "auditor");
    by_admin("role.deleted", "auditor");
    by_admin("user.role_changed", &user_id);
    by_admin("user.password_set", &user_id);
    by_admin("user.disabled", &user_id);
    by_admin("user.enabled", &user_id);
    by_admin("user.deleted", &user_id);
    let registered = find(&events, "user.registered", "success");
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["actor"], Value::Null);
    assert_eq!(registered[0]["subject"], user_id.as_str());
    assert_eq!(registered[0]["detail"]["email"], "audited@example.com");
    let bootstrap = find(&events, "admin.created", "success");
    assert_eq!(bootstrap.len(), 1);
    assert_eq!(bootstrap[0]["actor"], "system");
    let rotation = find(&events, "key.rotated", "success");
    assert_eq!(rotation.len(), 1);
    assert_eq!(rotation[0]["actor"], "operator");
    // Logins: the admin's and the user's three successes, and two failures.
    let logins = find(&events, "login", "success");
    assert_eq!(logins.len(), 4, "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|event| event["actor"] == event["subject"])
    );
    let failures = find(&events, "login", "failure");
    assert_eq!(failures.len(), 2, "{failures:?}");
    let reasons: Vec<&Value> = failures
        .iter()
        .map(|event| &event["detail"]["reason"])
        .collect();
    assert!(reasons.contains(&&json!("wrong_password")), "{reasons:?}");
    assert!(reasons.contains(&&json!("unknown_email")), "{reasons:?}");
    let unknown = failures
        .iter()
        .find(|event| event["detail"]["reason"] == "unknown_email")
        .expect("unknown");
    assert_eq!(unknown["subject"], Value::Null);
    assert_eq!(unknown["actor"], Value::Null);
    assert_eq!(find(&events, "refresh_token.replayed", "failure").len(), 1);
    let revocations = find(&events, "token.revoked", "success");
    assert_eq!(revocations.len(), 2);
    assert!(
        revocations
            .iter()
            .all(|event| event["subject"] == user_id.as_str())
    );
    let own_changes = find(&events, "user.password_changed", "success");
    assert_eq!(own_changes.len(), 1);
    assert_eq!(own_changes[0]["actor"], user_id.as_str());
    assert_eq!(find(&events, "user.password_changed", "failure").len(), 1);
    assert_eq!(find(&events, "user.signed_out", "success").len(), 1);
    assert!(
        events
            .iter()
            .all(|event| event["subject"] != admin_id.as_str()
                || event["type"] == "login"
                || event["type"] == "admin.created"),
        "no event about the refused disabling of the last admin"
    );

    // Each event is also logged, once, after its transaction committed (the key rotation by
    // the CLI process, not this one). Lines are written by a thread of their own: poll.
    let logged_here: Vec<String> = events
        .iter()
        .filter(|event| event["type"] != "key.rotated")
        .map(|event| string(&event["id"]))
        .collect();
    eventually(Duration::from_secs(5), "every event is logged", || async {
        let logs = api.logs();
        logged_here.iter().all(|id| logs.contains(id.as_str()))
    })
    .await;
    let logs = api.logs();
    for id in &logged_here {
        assert_eq!(logs.matches(id.as_str()).count(), 1, "{id}");
    }
    let listed = serde_json::to_string(&events).expect("json");
    for secret in &secrets {
        assert!(
            !listed.contains(secret.as_str()),
            "a secret in the audit trail: {secret}"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the api's log: {secret}"
        );
    }
}

#[tokio::test]
async fn the_audit_trail_filters_pages_and_needs_its_permission() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (user_id, user) = api.user_with_token("reader@example.com").await;
    for _ in 0..3 {
        api.login_attempt("reader@example.com", "not-it-at-all")
            .await;
    }
    let failures = all_events(&api, &admin, "&type=login").await;
    assert_eq!(failures.len(), 5, "admin login, user login, three failures");
    assert!(
        failures
            .windows(2)
            .all(|pair| pair[0]["id"].as_str() > pair[1]["id"].as_str())
    );
    let about_user = all_events(&api, &admin, &format!("&subject={user_id}")).await;
    assert_eq!(about_user.len(), 5, "registered, logged in, three failures");
    let by_user = all_events(&api, &admin, &format!("&actor={user_id}&type=login")).await;
    assert_eq!(by_user.len(), 1);
    assert!(all_events(&api, &admin, "&actor=nobody").await.is_empty());

    expect_problem(api.get("/api/v1/audit-events", Some(&user)).await, 403).await;
    expect_problem(api.get("/api/v1/audit-events", None).await, 401).await;
    for query in [
        "type=nonsense",
        "limit=0",
        "limit=201",
        "limit=ten",
        "after=not-an-id",
    ] {
        let response = api
            .get(&format!("/api/v1/audit-events?{query}"), Some(&admin))
            .await;
        expect_problem(response, 422).await;
    }
    // The built-in admin role holds iam:audit:read and cannot lose it.
    let admin_role: Value = api
        .get("/api/v1/roles/admin", Some(&admin))
        .await
        .json()
        .await
        .expect("role");
    assert!(
        admin_role["permissions"]
            .as_array()
            .expect("permissions")
            .contains(&json!("iam:audit:read")),
        "{admin_role}"
    );
    let dropped = api
        .send_json(
            Method::PUT,
            "/api/v1/roles/admin",
            Some(&admin),
            &json!({"permissions": ["iam:users:read", "iam:users:write", "iam:roles:read", "iam:roles:write"]}),
        )
        .await;
    expect_problem(dropped, 422).await;
}

#[tokio::test]
async fn events_older_than_the_retention_are_purged() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let pool = db.pool().await;
    for (id, age_days) in [
        ("00000000-0000-7000-8000-000000000001", 400),
        ("00000000-0000-7000-8000-000000000002", 20),
    ] {
        sqlx::query(
            "INSERT INTO audit_events (id, at, type, outcome)
             VALUES ($1::uuid, now() - make_interval(days => $2), 'login', 'failure')",
        )
        .bind(id)
        .bind(age_days)
        .execute(&pool)
        .await
        .expect("old event");
    }
    drop(api);
    // The pruner runs at start: with 30 days, the 400-day-old event goes, the other stays.
    let _api = ServiceProcess::builder(&db)
        .env("AUDIT_RETENTION_DAYS", "30")
        .start()
        .await;
    eventually(
        Duration::from_secs(10),
        "the old event is purged",
        || async {
            let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE id = '00000000-0000-7000-8000-000000000001'",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
            left == 0
        },
    )
    .await;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE id = '00000000-0000-7000-8000-000000000002'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(kept, 1);

    for invalid in ["0", "36501", "a year"] {
        let output = ServiceProcess::builder(&db)
            .env("AUDIT_RETENTION_DAYS", invalid)
            .run(None)
            .await;
        assert_eq!(output.status.code(), Some(2), "{invalid}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("AUDIT_RETENTION_DAYS"));
    }
}
