//! Builds the salvo service: routes, OpenAPI document, docs page, state and error catcher.
//! Used by `main` and by tests.

use salvo::catcher::Catcher;
use salvo::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderValue};
use salvo::prelude::*;
use salvo_oapi::security::{Http, HttpAuthScheme};
use salvo_oapi::swagger_ui::SwaggerUi;
use salvo_oapi::{OpenApi, SecurityScheme};

use std::sync::Arc;

use iam_core::server::{MetricsEndpoint, NoSniff, RequestHeadLimit, RequestLog, RouteLabel};

use crate::error::AppError;
use crate::http::{audit, clients, health, me, roles, tokens, users};
use crate::state::AppState;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The `/api/v1` routes.
fn api_router() -> Router {
    Router::with_path("api/v1")
        .hoop(no_store)
        .push(health::router())
        .push(users::router())
        .push(tokens::router())
        .push(me::router())
        .push(roles::router())
        .push(clients::router())
        .push(audit::router())
}

/// The OpenAPI 3.1 document, generated from the handlers so it cannot drift.
pub fn openapi_document() -> OpenApi {
    // Schemas are named by type name alone, not by module path.
    salvo_oapi::naming::set_namer(salvo_oapi::naming::FlexNamer::new().short_mode(true));
    let info = salvo_oapi::Info::new("IAM API", env!("CARGO_PKG_VERSION"))
        .description("Users, roles, permissions and OAuth 2.0 tokens; see the README.")
        .license(
            salvo_oapi::License::new(env!("CARGO_PKG_LICENSE"))
                .identifier(env!("CARGO_PKG_LICENSE")),
        );
    let mut document = OpenApi::with_info(info)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer).bearer_format("JWT")),
        )
        .merge_router(&api_router());
    crate::http::openapi::complete(&mut document);
    document
}

/// The whole service with its state.
pub fn service(state: AppState) -> Service {
    let request_log = RequestLog::new(state.metrics.http.clone(), RouteLabel::Matched)
        .with_env(state.config.common.env_label.clone())
        .with_path()
        .logging(state.config.common.log_requests);
    let metrics = Arc::clone(&state.metrics);
    let db = state.db.clone();
    let metrics_endpoint = MetricsEndpoint::new(move || metrics.render(&db));
    let router = Router::new()
        .hoop(affix_state::inject(state))
        .push(openapi_document().into_router(OPENAPI_PATH))
        .push(
            SwaggerUi::new(OPENAPI_PATH)
                .title("IAM API")
                .into_router("/docs"),
        )
        .push(Router::with_path("metrics").get(metrics_endpoint))
        .push(api_router());
    // Service-level hoops also run for requests no route matches.
    Service::new(router)
        .hoop(request_log)
        .hoop(NoSniff)
        .hoop(RequestHeadLimit)
        .hoop(one_authorization_header)
        .catcher(Catcher::new(iam_core::problem::catcher))
}

/// A request with more than one `Authorization` header is refused with 400 on every route,
/// those that ignore credentials too: which header a proxy in front judged is unknowable.
#[handler]
async fn one_authorization_header(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let values = req.headers().get_all(AUTHORIZATION);
    if let Err(duplicate) = iam_core::bearer::bearer_token(values.iter().map(|v| v.as_bytes())) {
        AppError::from(duplicate).render(res);
        ctrl.skip_rest();
        return;
    }
    ctrl.call_next(req, depot, res).await;
}

/// API answers are per-user and often secret: no shared cache may keep them.
#[handler]
async fn no_store(req: &mut Request, depot: &mut Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
    ctrl.call_next(req, depot, res).await;
    if !res.headers().contains_key(CACHE_CONTROL) {
        res.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    /// The committed `openapi.json` is the reviewed contract: an API change must show up as
    /// a diff of it. Regenerate with `UPDATE_OPENAPI=1 cargo test -p iam-api openapi`.
    #[test]
    fn openapi_document_matches_the_committed_copy() {
        let generated = openapi_document().to_pretty_json().expect("json") + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test -p iam-api openapi"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi_document().to_json().expect("json")).expect("parse");
        assert!(
            document["openapi"]
                .as_str()
                .expect("version")
                .starts_with("3.1")
        );
        for path in [
            "/api/v1/healthcheck",
            "/api/v1/users",
            "/api/v1/users/{id}",
            "/api/v1/users/{id}/role",
            "/api/v1/tokens",
            "/api/v1/tokens/revoke",
            "/api/v1/me",
            "/api/v1/roles",
            "/api/v1/roles/{name}",
        ] {
            assert!(document["paths"][path].is_object(), "{path} missing");
        }
    }

    fn document_json() -> serde_json::Value {
        serde_json::from_str(&openapi_document().to_json().expect("json")).expect("parse")
    }

    /// Every (method, path, operation) of the document.
    fn operations(document: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut found = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                found.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        found
    }

    #[test]
    fn only_health_tokens_and_open_registration_are_public() {
        let document = document_json();
        let bearer = serde_json::json!([{"bearer": []}]);
        for (method, path, operation) in operations(&document) {
            let expected = match (method.as_str(), path.as_str()) {
                ("get", "/api/v1/healthcheck")
                | ("post", "/api/v1/tokens")
                | ("post", "/api/v1/tokens/revoke") => serde_json::json!([]),
                ("post", "/api/v1/users") => serde_json::json!([{}, {"bearer": []}]),
                _ => bearer.clone(),
            };
            assert_eq!(operation["security"], expected, "{method} {path}");
        }
    }

    /// A media type has an example of its own, or its schema (a component) has one.
    fn has_example(document: &serde_json::Value, media: &serde_json::Value) -> bool {
        if media.get("example").is_some() || media.get("examples").is_some() {
            return true;
        }
        let schema = &media["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &document["components"]["schemas"][name]
            }
            None => schema,
        };
        let items = &schema["items"]["$ref"];
        schema.get("examples").is_some()
            || items.as_str().is_some_and(|reference| {
                let name = reference.trim_start_matches("#/components/schemas/");
                document["components"]["schemas"][name]
                    .get("examples")
                    .is_some()
            })
    }

    #[test]
    fn every_body_has_an_example() {
        let document = document_json();
        for (method, path, operation) in operations(&document) {
            let bodies = operation["requestBody"]["content"].as_object().cloned();
            for (media_type, media) in bodies.unwrap_or_default() {
                assert!(
                    has_example(&document, &media),
                    "{method} {path} {media_type}"
                );
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                for (media_type, media) in
                    response["content"].as_object().cloned().unwrap_or_default()
                {
                    assert!(
                        has_example(&document, &media),
                        "{method} {path} {status} {media_type}"
                    );
                }
            }
        }
    }

    #[test]
    fn retries_and_creations_say_where_and_when() {
        let document = document_json();
        for (method, path, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let headers = &response["headers"];
                let expected = match status.as_str() {
                    "201" => Some("Location"),
                    "429" => Some("Retry-After"),
                    "503" if path != "/api/v1/healthcheck" => Some("Retry-After"),
                    _ => None,
                };
                if let Some(header) = expected {
                    assert_eq!(
                        headers[header]["required"], true,
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_token_endpoints_take_forms_too() {
        let document = document_json();
        for path in ["/api/v1/tokens", "/api/v1/tokens/revoke"] {
            let content = &document["paths"][path]["post"]["requestBody"]["content"];
            assert_eq!(
                content["application/json"], content["application/x-www-form-urlencoded"],
                "{path}"
            );
        }
    }
}
