//! Helpers of the OAuth client tests: creating clients and asking for their tokens.

use serde_json::{Value, json};

use crate::api::{ServiceProcess, access_token, expect_problem, string};

/// Creates a role as `token`'s holder.
pub async fn create_role(api: &ServiceProcess, token: &str, name: &str, permissions: &[&str]) {
    let response = api
        .post_json(
            "/api/v1/roles",
            Some(token),
            &json!({"name": name, "permissions": permissions}),
        )
        .await;
    assert_eq!(response.status(), 201, "role {name}");
}

/// `POST /api/v1/clients`, answered however it is.
pub async fn create_client(
    api: &ServiceProcess,
    token: &str,
    name: &str,
    role: &str,
) -> reqwest::Response {
    api.post_json(
        "/api/v1/clients",
        Some(token),
        &json!({"name": name, "role": role}),
    )
    .await
}

/// A new client's id and secret.
pub async fn new_client(
    api: &ServiceProcess,
    token: &str,
    name: &str,
    role: &str,
) -> (String, String) {
    let response = create_client(api, token, name, role).await;
    assert_eq!(response.status(), 201, "client {name}");
    let body: Value = response.json().await.expect("json");
    (string(&body["client_id"]), string(&body["client_secret"]))
}

/// The client-credentials grant with HTTP Basic, answered however it is.
pub async fn basic_grant(
    api: &ServiceProcess,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    api.client
        .post(api.url("/api/v1/tokens"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token request")
}

/// The client-credentials grant with the credentials in a form body.
pub async fn form_grant(api: &ServiceProcess, fields: &[(&str, &str)]) -> reqwest::Response {
    api.client
        .post(api.url("/api/v1/tokens"))
        .form(fields)
        .send()
        .await
        .expect("token request")
}

/// An access token for the client.
pub async fn client_token(api: &ServiceProcess, id: &str, secret: &str) -> String {
    let response = basic_grant(api, id, secret, None).await;
    assert_eq!(response.status(), 200, "client token");
    access_token(&response.json().await.expect("json"))
}

/// Asserts a token endpoint error: a problem document with `status` and the OAuth `error`.
pub async fn expect_oauth_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let problem = expect_problem(response, status).await;
    assert_eq!(problem["error"], error, "{problem}");
    if error == "invalid_client" && status == 401 {
        let challenge = challenge.expect("a challenge");
        assert!(challenge.starts_with("Basic realm=\"iam\""), "{challenge}");
    }
    problem
}

/// `PATCH /api/v1/clients/{id}` with `{"disabled"}`.
pub async fn patch_client(
    api: &ServiceProcess,
    token: &str,
    id: &str,
    disabled: bool,
) -> reqwest::Response {
    api.send_json(
        reqwest::Method::PATCH,
        &format!("/api/v1/clients/{id}"),
        Some(token),
        &json!({ "disabled": disabled }),
    )
    .await
}

pub async fn status_of(response: reqwest::Response) -> u16 {
    response.status().as_u16()
}
