//! The HTTP layer: one module per resource, each owning its routes; handlers are thin and
//! call into `domain`.

pub mod audit;
pub mod auth;
pub mod client_auth;
pub mod clients;
pub mod error;
pub mod health;
pub mod me;
pub mod openapi;
pub mod rate_limit;
pub mod roles;
pub mod tokens;
pub mod users;

use salvo::http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use salvo::http::{ParseError, StatusCode};
use salvo::prelude::*;
use salvo_oapi::{Components, EndpointOutRegister, Operation, ToSchema};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{AppError, FieldError};
use crate::state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a whole request body may take to arrive; a client dripping a byte at a time
/// stays under the server's gap timeout but not under this (then 408).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shared state, injected into the depot by the root router.
pub fn app_state(depot: &Depot) -> Result<&AppState, AppError> {
    depot
        .get_typed::<AppState>()
        .map_err(|_| AppError::Internal("application state missing from depot".to_owned()))
}

/// A listing's `limit` query parameter: an integer (its range is the domain's to judge).
pub fn query_limit(raw: Option<String>) -> Result<Option<i64>, AppError> {
    raw.map(|raw| {
        raw.parse::<i64>()
            .map_err(|_| AppError::invalid_field("limit", "must be an integer between 1 and 200"))
    })
    .transpose()
}

/// A listing's `after` query parameter: the id a previous page gave as `next`.
pub fn query_cursor(raw: Option<String>, what: &str) -> Result<Option<uuid::Uuid>, AppError> {
    raw.map(|raw| {
        uuid::Uuid::parse_str(&raw)
            .map_err(|_| AppError::invalid_field("after", format!("must be {what} id from `next`")))
    })
    .transpose()
}

/// The body formats an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    Json,
    JsonOrForm,
}

/// A request body's top-level fields, read leniently so that every missing or mistyped field
/// can be reported at once as a 422 instead of failing on the first.
#[derive(Debug)]
pub struct BodyFields {
    fields: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl BodyFields {
    /// Reads and parses the body (at most [`MAX_BODY_BYTES`]): malformed JSON is a 400, a
    /// body that is not a JSON object a 422.
    pub async fn read(req: &mut Request, accepts: Accepts) -> Result<Self, AppError> {
        let is_form = match content_type(req).as_deref() {
            None | Some("application/json") => false,
            Some(other) if other.starts_with("application/") && other.ends_with("+json") => false,
            Some("application/x-www-form-urlencoded") if accepts == Accepts::JsonOrForm => true,
            Some(_) => return Err(AppError::UnsupportedMediaType),
        };
        let bytes =
            tokio::time::timeout(BODY_READ_TIMEOUT, req.payload_with_max_size(MAX_BODY_BYTES))
                .await
                .map_err(|_| AppError::BodyTimeout)?
                .map_err(|error| match error {
                    ParseError::PayloadTooLarge => AppError::PayloadTooLarge {
                        limit: MAX_BODY_BYTES,
                    },
                    _ => AppError::BadRequest("the request body could not be read".to_owned()),
                })?;
        if bytes.is_empty() {
            return Err(AppError::BadRequest(
                "a request body is required".to_owned(),
            ));
        }
        let fields = if is_form {
            parse_form(bytes)?
        } else {
            match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(fields)) => fields,
                Ok(_) => {
                    return Err(AppError::invalid_field("body", "must be a JSON object"));
                }
                Err(error) => {
                    return Err(AppError::BadRequest(format!("malformed JSON: {error}")));
                }
            }
        };
        Ok(BodyFields {
            fields,
            errors: Vec::new(),
        })
    }

    /// A string field that must be present.
    pub fn required_string(&mut self, name: &str) -> String {
        match self.fields.remove(name) {
            Some(Value::String(value)) => value,
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(name, "is required"));
                String::new()
            }
            Some(_) => {
                self.errors.push(FieldError::new(name, "must be a string"));
                String::new()
            }
        }
    }

    /// A string field that may be absent or null.
    pub fn optional_string(&mut self, name: &str) -> Option<String> {
        match self.fields.remove(name) {
            Some(Value::String(value)) => Some(value),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.errors.push(FieldError::new(name, "must be a string"));
                None
            }
        }
    }

    /// A boolean field that must be present.
    pub fn required_bool(&mut self, name: &str) -> bool {
        match self.fields.remove(name) {
            Some(Value::Bool(value)) => value,
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(name, "is required"));
                false
            }
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "must be true or false"));
                false
            }
        }
    }

    /// An array-of-strings field; absent means empty unless `required`.
    pub fn string_list(&mut self, name: &str, required: bool) -> Vec<String> {
        match self.fields.remove(name) {
            Some(Value::Array(items)) => {
                let mut values = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(value) => values.push(value),
                        _ => self.errors.push(FieldError::new(
                            format!("{name}[{index}]"),
                            "must be a string",
                        )),
                    }
                }
                values
            }
            None | Some(Value::Null) if !required => Vec::new(),
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(name, "is required"));
                Vec::new()
            }
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, "must be an array of strings"));
                Vec::new()
            }
        }
    }

    /// 422 with every recorded field problem, if there is any.
    pub fn finish(self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.errors))
        }
    }
}

fn content_type(req: &Request) -> Option<String> {
    let value = req.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// `application/x-www-form-urlencoded`; a parameter given twice is refused (RFC 6749 §3.2).
fn parse_form(bytes: &[u8]) -> Result<Map<String, Value>, AppError> {
    let mut fields = Map::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        if fields
            .insert(name.to_string(), Value::String(value.into_owned()))
            .is_some()
        {
            return Err(AppError::BadRequest(format!(
                "parameter {name} is repeated"
            )));
        }
    }
    Ok(fields)
}

/// Serialises `body` as JSON with `status`.
pub fn write_json<T: Serialize>(res: &mut Response, status: StatusCode, body: &T) {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            res.status_code(status);
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res.body(bytes);
        }
        Err(error) => {
            AppError::Internal(format!("cannot serialise a response: {error}")).render(res)
        }
    }
}

/// 200 with a JSON body.
#[derive(Debug)]
pub struct Ok200<T>(pub T);

impl<T: Serialize + Send> Scribe for Ok200<T> {
    fn render(self, res: &mut Response) {
        write_json(res, StatusCode::OK, &self.0);
    }
}

impl<T: ToSchema> EndpointOutRegister for Ok200<T> {
    fn register(components: &mut Components, operation: &mut Operation) {
        let response = salvo_oapi::Response::new("Success").add_content(
            "application/json",
            salvo_oapi::Content::new(T::to_schema(components)),
        );
        operation.responses.insert("200", response);
    }
}

/// 201 with a `Location` header and a JSON body.
#[derive(Debug)]
pub struct Created<T> {
    pub location: String,
    pub body: T,
}

impl<T: Serialize + Send> Scribe for Created<T> {
    fn render(self, res: &mut Response) {
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            res.headers_mut().insert(LOCATION, location);
        }
        write_json(res, StatusCode::CREATED, &self.body);
    }
}

impl<T: ToSchema> EndpointOutRegister for Created<T> {
    fn register(components: &mut Components, operation: &mut Operation) {
        let response = salvo_oapi::Response::new("Created").add_content(
            "application/json",
            salvo_oapi::Content::new(T::to_schema(components)),
        );
        operation.responses.insert("201", response);
    }
}

/// 204 with no body.
#[derive(Debug)]
pub struct NoContent;

impl Scribe for NoContent {
    fn render(self, res: &mut Response) {
        res.status_code(StatusCode::NO_CONTENT);
    }
}

impl EndpointOutRegister for NoContent {
    fn register(_: &mut Components, operation: &mut Operation) {
        operation
            .responses
            .insert("204", salvo_oapi::Response::new("No content"));
    }
}
