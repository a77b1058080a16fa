//! What the handlers' attributes cannot say in the OpenAPI document, added in one pass over
//! the generated document: servers, which operations are public, the form bodies of the
//! token endpoints, parameter constraints the extractors do not know, the headers that
//! errors carry, problem bodies with examples, and enums the response types leave open.
//! Every value here is taken from the code that enforces it (page sizes, event types,
//! problem documents), so the document cannot promise what the server does not do.

use salvo_oapi::schema::{AnyOf, Array, ArrayItems, BasicType, KnownFormat, Object, SchemaFormat};
use salvo_oapi::security::SecurityRequirement;
use salvo_oapi::{
    Content, Header, OpenApi, Operation, ParameterIn, PathItemType, Ref, RefOr, Schema, Server,
};
use serde_json::{Value, json};

use super::error::{PROBLEM_JSON, problem_example};
use crate::domain::audit::EventType;
use crate::domain::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::{AppError, BearerFailure, FieldError};

/// The media type of an OAuth 2.0 token request (RFC 6749 §4).
const FORM: &str = "application/x-www-form-urlencoded";
/// The operations that take a form as well as JSON (`Accepts::JsonOrForm`).
const FORM_BODIES: [&str; 2] = ["/api/v1/tokens", "/api/v1/tokens/revoke"];
/// The token endpoint, whose errors carry the OAuth `error` member.
const TOKENS: &str = "/api/v1/tokens";
/// Registration: public with `REGISTRATION=open`, a Bearer token with `closed`.
const REGISTRATION: (&str, PathItemType) = ("/api/v1/users", PathItemType::Post);
/// A role name (`RoleName::parse`).
const ROLE_NAME: &str = "^[a-z][a-z0-9_.-]{1,62}$";
/// A permission (`iam_core::permission::Permission::parse`).
const PERMISSION: &str = "^[A-Za-z0-9_.:*-]{1,128}$";
/// A client id (`domain::clients::is_client_id`).
const CLIENT_ID: &str = "^[A-Za-z0-9_-]{16,64}$";

/// Adds to `document` what the attributes cannot say (see the module comment).
pub fn complete(document: &mut OpenApi) {
    // `/` first: tools that fetch the document (schemathesis, Swagger UI) resolve it against
    // where they fetched it from; generators take the second as the local default.
    document
        .servers
        .insert(Server::new("/").description("The server this document was fetched from"));
    document.servers.insert(
        Server::new("http://localhost:8000")
            .description("A local iam-api (`iam-api --config=local`, default port)"),
    );
    for (path, item) in document.paths.iter_mut() {
        for (method, operation) in item.operations.iter_mut() {
            declare_security(path, method, operation);
            if FORM_BODIES.contains(&path.as_str()) {
                accept_forms(operation);
            }
            constrain_parameters(operation);
            declare_headers(path, operation);
            document_problems(path, operation);
        }
    }
    refine_schemas(document);
}

/// Operations without a declared requirement are public: say so with `security: []`, so
/// that generated clients send no credentials. Registration takes either. (A protected
/// handler that forgot its `security(...)` fails the test that lists the public ones.)
fn declare_security(path: &str, method: &PathItemType, operation: &mut Operation) {
    if operation.securities.is_some() {
        return;
    }
    operation.securities = Some(if (path, method) == (REGISTRATION.0, &REGISTRATION.1) {
        vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]
    } else {
        Vec::new()
    });
}

/// The token endpoints also take OAuth's form encoding, with the same fields and examples.
fn accept_forms(operation: &mut Operation) {
    if let Some(body) = operation.request_body.as_mut()
        && let Some(json) = body.contents.get("application/json").cloned()
    {
        body.contents.insert(FORM.to_owned(), json);
    }
}

/// The listing parameters are read as strings and judged in the domain; state their rules.
fn constrain_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_inline_mut() {
        let schema = match (&parameter.parameter_in, parameter.name.as_str()) {
            (ParameterIn::Query, "limit") => Object::new()
                .schema_type(BasicType::Integer)
                .minimum(1)
                .maximum(MAX_PAGE_SIZE as f64)
                .default_value(json!(DEFAULT_PAGE_SIZE)),
            (ParameterIn::Query, "after") | (ParameterIn::Path, "id" | "secret_id") => {
                string().format(SchemaFormat::KnownFormat(KnownFormat::Uuid))
            }
            (ParameterIn::Query, "email") => string()
                .format(SchemaFormat::KnownFormat(KnownFormat::Email))
                .max_length(254),
            (ParameterIn::Query, "type") => {
                string().enum_values(EventType::ALL.iter().map(|kind| kind.as_str()))
            }
            (ParameterIn::Path, "name") => string().pattern(ROLE_NAME),
            (ParameterIn::Path, "client_id") => string().pattern(CLIENT_ID),
            _ => continue,
        };
        parameter.schema = Some(schema.into());
    }
    // The extractors' generic "Get parameter `x` from request url query" says nothing.
    for parameter in operation.parameters.iter_inline_mut() {
        let description = match parameter.name.as_str() {
            "limit" => "Page size",
            "after" => "The `next` of the previous page",
            "email" => "Only the user with this email (compared after trimming and lowercasing)",
            "actor" => "Only events with this actor",
            "subject" => "Only events with this subject",
            "id" => "The user's id",
            "name" => "The role's name",
            "client_id" => "The client's id",
            "secret_id" => "The secret's id",
            _ => continue,
        };
        parameter.description = Some(description.to_owned());
    }
}

fn string() -> Object {
    Object::new().schema_type(BasicType::String)
}

/// The headers `http::error` adds to error answers, on the statuses that carry them here.
fn declare_headers(path: &str, operation: &mut Operation) {
    let bearer = operation
        .securities
        .as_ref()
        .is_some_and(|requirements| requirements.iter().any(|r| !r.is_empty()));
    for (status, response) in operation.responses.iter_mut() {
        let RefOr::Type(response) = response else {
            continue;
        };
        let (name, header) = match status.as_str() {
            // Every 201 is a `Created`, which always sets it.
            "201" => (
                "Location",
                Header::new(string().format(SchemaFormat::Custom("uri-reference".to_owned())))
                    .description("The path of the new resource")
                    .required(true),
            ),
            "401" if bearer => (
                "WWW-Authenticate",
                Header::new(string())
                    .description("`Bearer`, or `Bearer error=\"invalid_token\"` when a token was sent (RFC 6750)")
                    .required(true),
            ),
            "401" if path == TOKENS => (
                "WWW-Authenticate",
                Header::new(string())
                    .description("`Basic realm=\"iam\", charset=\"UTF-8\"` when client authentication failed (invalid_client)")
                    .required(false),
            ),
            // `/me` needs no permission, so its 403 (a wrong current password) has no challenge.
            "403" if bearer && !path.starts_with("/api/v1/me") => (
                "WWW-Authenticate",
                Header::new(string())
                    .description("`Bearer error=\"insufficient_scope\"` when a permission is missing; absent when the refusal is the delegation ceiling")
                    .required(false),
            ),
            "429" => ("Retry-After", retry_after()),
            // The healthcheck's 503 is a state to watch, not a request to retry.
            "503" if !path.ends_with("/healthcheck") => ("Retry-After", retry_after()),
            _ => continue,
        };
        response.headers.insert(name.to_owned(), header);
    }
}

fn retry_after() -> Header {
    Header::new(Object::new().schema_type(BasicType::Integer).minimum(0))
        .description("Seconds to wait before trying again")
        .required(true)
}

/// Every error status answers with a problem document: say so once here rather than on
/// each `responses(...)` line, with an example rendered by `http::error` itself.
fn document_problems(path: &str, operation: &mut Operation) {
    let token_endpoint = path == TOKENS;
    let schema = if token_endpoint {
        "OAuthProblem"
    } else {
        "Problem"
    };
    for (status, response) in operation.responses.iter_mut() {
        let RefOr::Type(response) = response else {
            continue;
        };
        let is_error = status.starts_with('4') || status.starts_with('5') || status == "default";
        if !is_error {
            continue;
        }
        let example = typical_error(path, status, &response.description)
            .map(|error| problem_example(error, token_endpoint));
        // 5xx answers of the token endpoint have no OAuth code (RFC 6749 defines none).
        let schema = if status.starts_with('4') {
            schema
        } else {
            "Problem"
        };
        // A response that declares its own body (the healthcheck's 503) keeps it.
        if response.contents.is_empty() {
            response.contents.insert(
                PROBLEM_JSON.to_owned(),
                Content::new(RefOr::Ref(Ref::from_schema_name(schema))),
            );
        }
        if let (Some(content), Some(example)) = (response.contents.get_mut(PROBLEM_JSON), example) {
            content.example = Some(example);
        }
    }
}

/// The error a typical request gets with `status` from the operation at `path`.
fn typical_error(path: &str, status: &str, description: &str) -> Option<AppError> {
    let tokens = path == TOKENS;
    Some(match status {
        "400" if tokens => AppError::UnsupportedGrantType(
            "\"implicit\": use password, refresh_token or client_credentials".to_owned(),
        ),
        "400" if path.ends_with("/healthcheck") => {
            AppError::DuplicateAuthorization(iam_core::bearer::DuplicateAuthorization)
        }
        "400" => AppError::BadRequest("malformed JSON: EOF while parsing an object".to_owned()),
        "401" if tokens => AppError::InvalidCredentials,
        "401" => AppError::Unauthenticated(BearerFailure::Missing),
        "403" if path.starts_with("/api/v1/me") => AppError::WrongCurrentPassword,
        "403" => AppError::Forbidden(permission_of(path)),
        "404" => AppError::NotFound(resource_of(path)),
        "409" => AppError::Conflict(description.to_lowercase()),
        "413" => AppError::PayloadTooLarge {
            limit: super::MAX_BODY_BYTES,
        },
        "415" => AppError::UnsupportedMediaType,
        "422" if tokens => AppError::invalid_field("password", "must be a string"),
        "422" => AppError::Validation(vec![invalid_field_of(path)]),
        "429" if path == REGISTRATION.0 => AppError::RateLimited {
            retry_after_seconds: 1,
        },
        "429" => AppError::Throttled {
            retry_after_seconds: 30,
        },
        "503" if path.ends_with("/healthcheck") => return None,
        "503" => AppError::Busy {
            retry_after_seconds: 1,
        },
        "default" => AppError::Internal(String::new()),
        _ => return None,
    })
}

/// The first path segment after `/api/v1/`.
fn resource(path: &str) -> &str {
    let rest = path.trim_start_matches("/api/v1/");
    rest.split('/').next().unwrap_or(rest)
}

fn resource_of(path: &str) -> &'static str {
    match resource(path) {
        "roles" => "role",
        "clients" if path.contains("{secret_id}") => "secret",
        "clients" => "client",
        _ => "user",
    }
}

fn permission_of(path: &str) -> &'static str {
    match resource(path) {
        "roles" => "iam:roles:write",
        "clients" => "iam:clients:write",
        "audit-events" => "iam:audit:read",
        _ => "iam:users:write",
    }
}

fn invalid_field_of(path: &str) -> FieldError {
    match resource(path) {
        "roles" => FieldError::new("name", "must match ^[a-z][a-z0-9_.-]{1,62}$"),
        "clients" => FieldError::new("name", "must be 1 to 200 characters"),
        "audit-events" => FieldError::new("limit", "must be between 1 and 200"),
        "me" => FieldError::new("new_password", "must be at least 8 characters"),
        _ => FieldError::new("email", "must look like name@example.com"),
    }
}

/// Schema rules the Rust types cannot carry.
fn refine_schemas(document: &mut OpenApi) {
    let schemas = &mut document.components.schemas;
    // A token pair also has every member of a client's token, so the answer matches one or
    // both of them: `anyOf`, not `oneOf`.
    if let Some(RefOr::Type(Schema::OneOf(one_of))) = schemas.get("TokenResponse") {
        let any_of = one_of
            .items
            .iter()
            .cloned()
            .fold(AnyOf::new(), |any_of, item| any_of.item(item))
            .description("A token pair (password and refresh grants), or an access token alone (client credentials)")
            .examples(token_answers());
        schemas.insert("TokenResponse".to_owned(), Schema::AnyOf(any_of));
    }
    let enums: [(&str, &str, &[&str]); 6] = [
        ("TokenPairResponse", "token_type", &["Bearer"]),
        ("ClientTokenResponse", "token_type", &["Bearer"]),
        ("HealthResponse", "status", &["ok", "error", "draining"]),
        ("HealthResponse", "database", &["ok", "unreachable"]),
        ("AuditEventResponse", "outcome", &["success", "failure"]),
        ("AuditEventResponse", "type", &[]),
    ];
    for (schema, property, values) in enums {
        if let Some(property) = property_mut(schemas, schema, property) {
            let values: Vec<&str> = if values.is_empty() {
                EventType::ALL.iter().map(|kind| kind.as_str()).collect()
            } else {
                values.to_vec()
            };
            property.enum_values = Some(values.into_iter().map(Value::from).collect());
        }
    }
    for schema in ["CreateRoleRequest", "ReplaceRoleRequest"] {
        if let Some(RefOr::Type(Schema::Object(object))) = schemas.get_mut(schema)
            && let Some(RefOr::Type(Schema::Array(array))) =
                object.properties.get_mut("permissions")
        {
            set_items_pattern(array, PERMISSION);
        }
    }
    schemas.insert("OAuthProblem".to_owned(), oauth_problem());
}

/// A token pair, and a client's token.
fn token_answers() -> [Value; 2] {
    let jwt =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiI1ZjBjIn0.c2lnbmF0dXJl";
    [
        json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 86400,
            "refresh_token": "0e4lr5Sx1M8pJv3QpXb2Yc7Wq9Zt6Ha4Dk1Nf8Gm2Uo", "refresh_expires_in": 432000}),
        json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 86400, "scope": "orders:read"}),
    ]
}

/// A property of a component schema that is a plain (non-composed) schema.
fn property_mut<'a>(
    schemas: &'a mut salvo_oapi::schema::Schemas,
    schema: &str,
    property: &str,
) -> Option<&'a mut Object> {
    let Some(RefOr::Type(Schema::Object(object))) = schemas.get_mut(schema) else {
        return None;
    };
    match object.properties.get_mut(property)? {
        RefOr::Type(Schema::Object(property)) => Some(property),
        _ => None,
    }
}

fn set_items_pattern(array: &mut Array, pattern: &str) {
    if let ArrayItems::RefOrSchema(items) = &mut array.items
        && let RefOr::Type(Schema::Object(items)) = items.as_mut()
    {
        items.pattern = Some(pattern.to_owned());
    }
}

/// The token endpoint's client errors: a problem document with the RFC 6749 §5.2 `error`.
fn oauth_problem() -> RefOr<Schema> {
    let codes = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unsupported_grant_type",
        "invalid_scope",
    ];
    let error = string()
        .enum_values(codes)
        .description("The RFC 6749 §5.2 error code, for OAuth 2.0 client libraries");
    let member = Object::new().property("error", error).required("error");
    salvo_oapi::schema::AllOf::new()
        .item(RefOr::Ref(Ref::from_schema_name("Problem")))
        .item(member)
        .description("A problem document with the OAuth 2.0 `error` member")
        .into()
}
