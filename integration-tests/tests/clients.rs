//! OAuth 2.0 clients (contract §3, issue 16): creating and listing them (a secret is shown
//! once), secret rotation with overlap, the delegation ceiling, and the command line. The
//! client-credentials grant itself is in `client_credentials.rs`.

use base64::Engine as _;
use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, claims_of, expect_problem, string};
use integration_tests::clients::{
    basic_grant, client_token, create_client, create_role, expect_oauth_error, new_client,
    patch_client, status_of,
};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn clients_are_created_listed_and_their_secret_is_shown_only_once() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    create_role(&api, &admin, "billing", &["orders:read", "orders:write"]).await;

    let response = create_client(&api, &admin, "  billing worker ", "billing").await;
    assert_eq!(response.status(), 201);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("Location")
        .to_owned();
    let created: Value = response.json().await.expect("json");
    let id = string(&created["client_id"]);
    assert_eq!(location, format!("/api/v1/clients/{id}"));
    assert!(id.starts_with("svc-"), "{id}");
    assert_eq!(created["name"], "billing worker");
    assert_eq!(created["role"], "billing");
    assert_eq!(created["disabled"], false);
    let secret = string(&created["client_secret"]);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&secret)
        .expect("URL-safe base64");
    assert_eq!(raw.len(), 32, "256 bits");
    assert_eq!(created["secrets"].as_array().map(Vec::len), Some(1));

    // Never again: not in the listing, not in the client, not in the audit trail.
    let listing = api.get("/api/v1/clients", Some(&admin)).await;
    assert_eq!(listing.status(), 200);
    let listing = listing.text().await.expect("text");
    assert!(
        listing.contains(&id) && !listing.contains(&secret),
        "{listing}"
    );
    assert!(!listing.contains("client_secret"));
    let one: Value = api
        .get(&location, Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["client_id"], id.as_str());
    assert_eq!(
        one["secrets"][0]["secret_id"],
        created["secrets"][0]["secret_id"]
    );
    assert!(one.get("client_secret").is_none());
    let audit = api
        .get("/api/v1/audit-events?type=client.created", Some(&admin))
        .await
        .text()
        .await
        .expect("text");
    assert!(audit.contains(&id) && !audit.contains(&secret), "{audit}");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM client_secrets WHERE position(convert_to($1, 'UTF8') in secret_hash) > 0",
    )
    .bind(&secret)
    .fetch_one(&db.pool().await)
    .await
    .expect("query");
    assert_eq!(stored, 0, "only a hash is stored");

    // Refusals.
    expect_problem(
        create_client(&api, &admin, "billing worker", "billing").await,
        409,
    )
    .await;
    for (name, role) in [("x", "no-such-role"), ("y", "Bad Role"), ("", "billing")] {
        expect_problem(create_client(&api, &admin, name, role).await, 422).await;
    }
    expect_problem(
        api.post_json(
            "/api/v1/clients",
            Some(&admin),
            &json!({"name": 1, "role": "user"}),
        )
        .await,
        422,
    )
    .await;
    for missing in [
        "/api/v1/clients/svc-nosuchclient0000000",
        "/api/v1/clients/x",
    ] {
        expect_problem(api.get(missing, Some(&admin)).await, 404).await;
    }
    let (_, user) = api.user_with_token("plain@example.com").await;
    expect_problem(api.get("/api/v1/clients", Some(&user)).await, 403).await;
    expect_problem(create_client(&api, &user, "mine", "user").await, 403).await;
    expect_problem(api.get("/api/v1/clients", None).await, 401).await;

    // A role held by a client cannot be deleted.
    let deleted = api.delete("/api/v1/roles/billing", Some(&admin)).await;
    expect_problem(deleted, 409).await;
}

#[tokio::test]
async fn a_secret_is_rotated_with_overlap_and_the_last_one_cannot_be_deleted() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let (id, old) = new_client(&api, &admin, "rotating", "user").await;
    let path = format!("/api/v1/clients/{id}/secrets");

    let added = api.post_json(&path, Some(&admin), &json!({})).await;
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.expect("json");
    let new = string(&added["client_secret"]);
    assert_ne!(new, old);
    // Both work during the overlap.
    client_token(&api, &id, &old).await;
    client_token(&api, &id, &new).await;
    let client: Value = api
        .get(&format!("/api/v1/clients/{id}"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let secrets = client["secrets"].as_array().expect("secrets").clone();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[1]["secret_id"], added["secret_id"]);
    let old_id = string(&secrets[0]["secret_id"]);

    let delete = |secret_id: String| {
        let url = api.url(&format!("{path}/{secret_id}"));
        let request = api.client.delete(url).bearer_auth(&admin);
        async move { request.send().await.expect("delete").status().as_u16() }
    };
    assert_eq!(delete(old_id.clone()).await, 204);
    expect_oauth_error(
        basic_grant(&api, &id, &old, None).await,
        401,
        "invalid_client",
    )
    .await;
    client_token(&api, &id, &new).await;
    assert_eq!(delete(old_id).await, 404, "gone already");
    assert_eq!(delete(uuid::Uuid::now_v7().to_string()).await, 404);
    assert_eq!(delete("not-a-uuid".to_owned()).await, 404);
    assert_eq!(
        delete(string(&added["secret_id"])).await,
        409,
        "the last secret"
    );
    client_token(&api, &id, &new).await;
    // Another client's secret id is not this client's.
    let (other, _) = new_client(&api, &admin, "other", "user").await;
    let other: Value = api
        .get(&format!("/api/v1/clients/{other}"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(delete(string(&other["secrets"][0]["secret_id"])).await, 404);
}

#[tokio::test]
async fn nobody_creates_or_takes_over_a_client_with_more_than_they_hold() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    create_role(&api, &admin, "billing", &["orders:read", "orders:write"]).await;
    create_role(&api, &admin, "reader", &["orders:read"]).await;
    create_role(
        &api,
        &admin,
        "clientmgr",
        &["iam:clients:read", "iam:clients:write", "orders:read"],
    )
    .await;
    let (manager_id, _) = api.user_with_token("manager@example.com").await;
    let assigned = api
        .send_json(
            Method::PUT,
            &format!("/api/v1/users/{manager_id}/role"),
            Some(&admin),
            &json!({"role": "clientmgr"}),
        )
        .await;
    assert_eq!(assigned.status(), 200);
    let manager = access_token(&api.login("manager@example.com", "user-password-1").await);
    let (billing, billing_secret) = new_client(&api, &admin, "billing", "billing").await;

    let problem = expect_problem(create_client(&api, &manager, "mine", "billing").await, 403).await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("orders:write")),
        "{problem}"
    );
    expect_problem(
        create_client(&api, &manager, "admin-ish", "admin").await,
        403,
    )
    .await;
    let (reader, _) = new_client(&api, &manager, "mine", "reader").await;

    // A new secret is the client: no taking over one that holds more.
    let path = format!("/api/v1/clients/{billing}/secrets");
    expect_problem(api.post_json(&path, Some(&manager), &json!({})).await, 403).await;
    expect_problem(patch_client(&api, &manager, &billing, true).await, 403).await;
    let deleted = api
        .delete(&format!("/api/v1/clients/{billing}"), Some(&manager))
        .await;
    expect_problem(deleted, 403).await;
    client_token(&api, &billing, &billing_secret).await;
    // Within the ceiling, it may.
    assert_eq!(
        status_of(patch_client(&api, &manager, &reader, true).await).await,
        200
    );
    assert_eq!(
        status_of(
            api.post_json(
                &format!("/api/v1/clients/{reader}/secrets"),
                Some(&manager),
                &json!({})
            )
            .await
        )
        .await,
        201
    );
}

#[tokio::test]
async fn the_command_line_creates_lists_and_deletes_clients() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let run = |args: &'static [&'static str]| {
        let cli = ServiceProcess::builder(&db).args(args);
        async move { cli.run(None).await }
    };
    let output = run(&[
        "clients",
        "create",
        "--name",
        "deploy bot",
        "--role",
        "user",
    ])
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .to_owned()
    };
    let (id, secret) = (value("client_id"), value("client_secret"));
    let token = client_token(&api, &id, &secret).await;
    assert_eq!(claims_of(&token)["sub"], id.as_str());

    let listed = run(&["clients", "list"]).await;
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&id) && listed.contains("deploy bot"),
        "{listed}"
    );
    assert!(!listed.contains(&secret));

    for refused in [
        &[
            "clients",
            "create",
            "--name",
            "deploy bot",
            "--role",
            "user",
        ][..],
        &["clients", "create", "--name", "x", "--role", "no-such-role"][..],
        &["clients", "delete", "--client-id", "svc-nosuchclient000000"][..],
    ] {
        let output = run(refused).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{refused:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let cli = ServiceProcess::builder(&db).args(&["clients", "delete", "--client-id", &id]);
    let output = cli.run(None).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    expect_oauth_error(
        basic_grant(&api, &id, &secret, None).await,
        401,
        "invalid_client",
    )
    .await;
}
