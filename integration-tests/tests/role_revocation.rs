//! A role that loses a permission revokes the access tokens of everyone holding it, users
//! and clients, since those tokens carry the permission and verifiers other than the api
//! trust them; renewals then carry what the role holds now. Also the races: tokens issued
//! while the change commits, and role assignments meeting it.

use std::time::Duration;

use futures::future::join_all;
use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, claims_of, string};
use integration_tests::clients::{client_token, create_role, new_client};
use integration_tests::database::{FeedVersionHold, lock_waiters};
use integration_tests::eventually;
use integration_tests::sidecar::{CLERK_EMAIL, PROPAGATION_LIMIT, polling_stack};
use serde_json::{Value, json};

const PASSWORD: &str = "user-password-1";

/// `PUT /api/v1/roles/{name}` with these permissions; the status.
async fn replace_role(api: &ServiceProcess, admin: &str, name: &str, permissions: &[&str]) -> u16 {
    api.send_status(
        reqwest::Method::PUT,
        &format!("/api/v1/roles/{name}"),
        admin,
        &json!({"description": "edited", "permissions": permissions}),
    )
    .await
}

/// `PUT /api/v1/users/{id}/role`; the status.
async fn assign_role(api: &ServiceProcess, admin: &str, id: &str, role: &str) -> u16 {
    api.send_status(
        reqwest::Method::PUT,
        &format!("/api/v1/users/{id}/role"),
        admin,
        &json!({ "role": role }),
    )
    .await
}

/// The subject's cut-off second in the revocation feed's table, if it is listed.
async fn cutoff_of(pool: &sqlx::PgPool, subject: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT ceil(extract(epoch FROM revoked_at))::int8 FROM revoked_subjects
         WHERE subject = $1",
    )
    .bind(subject)
    .fetch_optional(pool)
    .await
    .expect("revoked_subjects")
}

/// The detail of the latest `role.updated` audit event.
async fn last_role_update(pool: &sqlx::PgPool) -> Value {
    sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE type = 'role.updated' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .expect("a role.updated event")
}

fn permissions_of(token: &str) -> Value {
    claims_of(token)["permissions"].clone()
}

/// A user with `role` (assigned by `admin`) and a token pair of it.
async fn user_with_role(
    api: &ServiceProcess,
    admin: &str,
    email: &str,
    role: &str,
) -> (String, Value) {
    let id = string(&api.register(email, PASSWORD).await["id"]);
    assert_eq!(assign_role(api, admin, &id, role).await, 200);
    (id, api.login(email, PASSWORD).await)
}

#[tokio::test]
async fn losing_a_permission_revokes_the_tokens_of_every_user_and_client_of_the_role() {
    let stack = polling_stack().await;
    let api = &stack.api;
    let admin = api.admin_token().await;
    let pool = stack.db.pool().await;
    let pair = api.login(CLERK_EMAIL, PASSWORD).await;
    let user_token = access_token(&pair);
    let (client_id, secret) = new_client(api, &admin, "till", "clerk").await;
    let till_token = client_token(api, &client_id, &secret).await;
    let (bystander_id, bystander_token) = api.user_with_token("bystander@example.com").await;
    for token in [&user_token, &till_token, &bystander_token] {
        assert_eq!(stack.get("/x", Some(token)).await.status(), 200);
    }

    assert_eq!(
        replace_role(api, &admin, "clerk", &["orders:read"]).await,
        200
    );
    assert_eq!(
        api.me_status(&user_token).await,
        401,
        "the api refuses at once"
    );
    for token in [&user_token, &till_token, &stack.token] {
        eventually(
            PROPAGATION_LIMIT,
            "the sidecar refuses a token of the role",
            || async { stack.get("/x", Some(token)).await.status() == 401 },
        )
        .await;
    }
    assert_eq!(
        last_role_update(&pool).await["revoked_holders"],
        json!({"users": 1, "clients": 1})
    );
    // Holders of other roles keep their tokens.
    assert_eq!(cutoff_of(&pool, &bystander_id).await, None);
    assert_eq!(api.me_status(&bystander_token).await, 200);
    assert_eq!(stack.get("/x", Some(&bystander_token)).await.status(), 200);

    // Renewals carry what the role holds now, and pass.
    let renewed = api.refresh(&string(&pair["refresh_token"])).await;
    assert_eq!(renewed.status(), 200);
    let renewed = access_token(&renewed.json().await.expect("pair"));
    assert_eq!(permissions_of(&renewed), json!(["orders:read"]));
    assert_eq!(api.me_status(&renewed).await, 200);
    assert_eq!(stack.get("/x", Some(&renewed)).await.status(), 200);
    let order = stack
        .sidecar
        .client
        .post(stack.sidecar.url("/orders"))
        .bearer_auth(&renewed)
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(order.status(), 403, "the lost permission is gone");
    let regranted = client_token(api, &client_id, &secret).await;
    assert_eq!(permissions_of(&regranted), json!(["orders:read"]));
    assert_eq!(stack.get("/x", Some(&regranted)).await.status(), 200);
}

#[tokio::test]
async fn a_change_that_loses_no_permission_revokes_nothing() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let pool = db.pool().await;
    create_role(&api, &admin, "clerk", &["orders:write"]).await;
    let (id, pair) = user_with_role(&api, &admin, "clerk@example.com", "clerk").await;
    let (client_id, _) = new_client(&api, &admin, "till", "clerk").await;
    let token = access_token(&pair);
    // The assignment revoked the user's earlier tokens; this one is newer.
    let assigned = cutoff_of(&pool, &id).await;

    for permissions in [
        &["orders:write", "orders:read"][..],
        &["orders:read", "orders:write", "orders:write"][..],
    ] {
        assert_eq!(replace_role(&api, &admin, "clerk", permissions).await, 200);
        assert_eq!(
            last_role_update(&pool).await["revoked_holders"],
            json!({"users": 0, "clients": 0})
        );
    }
    assert_eq!(cutoff_of(&pool, &id).await, assigned);
    assert_eq!(cutoff_of(&pool, &client_id).await, None);
    assert_eq!(api.me_status(&token).await, 200);
}

#[tokio::test]
async fn tokens_requested_while_a_permission_loss_commits_wait_for_it_and_carry_the_new_set() {
    // The change is held between taking its cut-off and committing (this test holds the
    // feed's version row, which its trigger must update), across a second boundary. A
    // refresh, a login and a client grant meanwhile wait for the holders' rows it locked.
    // Each must then read the role as changed: a read joined into the locking statement
    // would keep the permissions it saw before waiting, in a token at or after the
    // cut-off, which no verifier other than the api would ever refuse.
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let pool = db.pool().await;
    create_role(&api, &admin, "clerk", &["orders:write", "orders:read"]).await;
    let (user_id, pair) = user_with_role(&api, &admin, "clerk@example.com", "clerk").await;
    let (client_id, secret) = new_client(&api, &admin, "till", "clerk").await;

    let hold = FeedVersionHold::take(&pool).await;
    let change = {
        let (api_client, url, admin) = (
            api.client.clone(),
            api.url("/api/v1/roles/clerk"),
            admin.clone(),
        );
        tokio::spawn(async move {
            let response = api_client
                .put(url)
                .bearer_auth(admin)
                .json(&json!({"permissions": ["orders:read"]}))
                .send()
                .await
                .expect("PUT role");
            response.status().as_u16()
        })
    };
    hold.wait_for_the_change(&pool, "the change waits for the feed version")
        .await;
    let token_requests: Vec<reqwest::RequestBuilder> = vec![
        api.client.post(api.url("/api/v1/tokens")).json(&json!({
            "grant_type": "refresh_token",
            "refresh_token": string(&pair["refresh_token"]),
        })),
        api.client.post(api.url("/api/v1/tokens")).json(&json!({
            "grant_type": "password",
            "username": "clerk@example.com",
            "password": PASSWORD,
        })),
        api.client
            .post(api.url("/api/v1/tokens"))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "client_credentials")]),
    ];
    let requests: Vec<_> = token_requests
        .into_iter()
        .map(|request| {
            tokio::spawn(async move {
                let response = request.send().await.expect("token request");
                let status = response.status().as_u16();
                (status, response.text().await.expect("body"))
            })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "the token requests wait for the change (or are answered)",
        || async {
            requests.iter().any(tokio::task::JoinHandle::is_finished)
                || lock_waiters(&pool).await == 4
        },
    )
    .await;
    hold.release().await;
    assert_eq!(change.await.expect("change"), 200);
    let user_cutoff = cutoff_of(&pool, &user_id)
        .await
        .expect("the user is revoked");
    let client_cutoff = cutoff_of(&pool, &client_id)
        .await
        .expect("the client is revoked");
    for request in requests {
        let (status, body) = request.await.expect("request");
        assert_eq!(status, 200, "{body}");
        let token = access_token(&serde_json::from_str(&body).expect("json"));
        let claims = claims_of(&token);
        assert_eq!(claims["permissions"], json!(["orders:read"]), "{claims}");
        let cutoff = if claims["sub"] == user_id.as_str() {
            user_cutoff
        } else {
            client_cutoff
        };
        assert!(claims["iat"].as_i64().expect("iat") >= cutoff, "{claims}");
    }
}

#[tokio::test]
async fn permission_losses_racing_assignments_and_renewals_neither_deadlock_nor_leak() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let pool = db.pool().await;
    create_role(&api, &admin, "clerk", &["orders:write", "orders:read"]).await;
    let mut clerks = Vec::new();
    for index in 0..4 {
        clerks.push(
            user_with_role(&api, &admin, &format!("clerk{index}@example.com"), "clerk").await,
        );
    }
    let mut others = Vec::new();
    for index in 0..2 {
        let id = string(
            &api.register(&format!("other{index}@example.com"), PASSWORD)
                .await["id"],
        );
        others.push(id);
    }
    let (client_id, secret) = new_client(&api, &admin, "till", "clerk").await;

    for round in 0..3 {
        assert_eq!(
            replace_role(&api, &admin, "clerk", &["orders:write", "orders:read"]).await,
            200
        );
        for id in &others {
            assert_eq!(assign_role(&api, &admin, id, "user").await, 200);
        }
        // Renewals, grants, assignments (to the role a user has already, and to it from
        // another) and the loss, all at once.
        let renewals = clerks.iter().map(|(_, pair)| {
            let refresh_token = string(&pair["refresh_token"]);
            let api = &api;
            async move {
                let mut tokens = Vec::new();
                let mut refresh_token = refresh_token;
                for _ in 0..4 {
                    let response = api.refresh(&refresh_token).await;
                    assert_eq!(response.status(), 200, "a refresh");
                    let renewed: Value = response.json().await.expect("pair");
                    refresh_token = string(&renewed["refresh_token"]);
                    tokens.push(access_token(&renewed));
                }
                (tokens, refresh_token)
            }
        });
        let grants = (0..4).map(|_| client_token(&api, &client_id, &secret));
        let assignments = clerks
            .iter()
            .map(|(id, _)| id)
            .chain(&others)
            .map(|id| assign_role(&api, &admin, id, "clerk"));
        let (renewed, granted, assigned, lost) = tokio::join!(
            join_all(renewals),
            join_all(grants),
            join_all(assignments),
            replace_role(&api, &admin, "clerk", &["orders:read"]),
        );
        assert_eq!(lost, 200, "round {round}: the loss");
        assert!(
            assigned.iter().all(|&status| status == 200),
            "round {round}: {assigned:?}"
        );
        let mut tokens = granted;
        for (clerk, (issued, refresh_token)) in clerks.iter_mut().zip(renewed) {
            clerk.1 = json!({ "refresh_token": refresh_token });
            tokens.extend(issued);
        }
        for token in tokens {
            let claims = claims_of(&token);
            if permissions_of(&token) != json!(["orders:read"]) {
                let subject = string(&claims["sub"]);
                let cutoff = cutoff_of(&pool, &subject).await;
                let iat = claims["iat"].as_i64().expect("iat");
                assert!(
                    cutoff.is_some_and(|cutoff| iat < cutoff),
                    "round {round}: a token with the lost permission escapes: {claims}"
                );
            }
        }
    }
}
