//! RFC 9457 problem documents: the one error body every process answers with, and the one
//! way to write it into a response (`application/problem+json`).

use salvo::http::StatusCode;
use salvo::http::header::{
    CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::refusal::{PROBLEM_TYPE_PREFIX, Refusal};

/// The media type of every problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The `type` of a problem that means no more than its status code (RFC 9457 §4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

/// An RFC 9457 problem document.
// (Doc comments here become the OpenAPI schema's descriptions.) Serialised as `type`,
// `title`, `status`, `detail`, then `errors` when there are any, then the extension members
// (such as the OAuth `error` code) in the order they were added.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[salvo(schema(name = "Problem"))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[salvo(schema(rename = "type"))]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Per-field problems of a rejected request body.
    #[salvo(schema(required = false))]
    pub errors: Vec<ProblemFieldError>,
    /// Extension members (RFC 9457 §3.2); a name already used above is never written twice.
    #[salvo(schema(skip))]
    pub extra: Map<String, Value>,
}

/// One field's problem.
// `field` names the member of the request body, `message` says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
#[salvo(schema(name = "ProblemFieldError"))]
pub struct ProblemFieldError {
    pub field: String,
    pub message: String,
}

/// The members a problem document always has, which extension members cannot replace.
const STANDARD_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "errors"];

impl Problem {
    /// A problem of kind `problem_type` with `status`, `title` and `detail`.
    pub fn new(
        status: StatusCode,
        problem_type: impl Into<String>,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            problem_type: problem_type.into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: Map::new(),
        }
    }

    /// A problem of one of the IAM's own kinds: its `type` is `urn:iam:problem:{slug}`.
    pub fn iam(
        status: StatusCode,
        slug: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Problem::new(
            status,
            format!("{PROBLEM_TYPE_PREFIX}{slug}"),
            title,
            detail,
        )
    }

    /// The problem document of a refused Bearer token.
    pub fn refusal(refusal: &Refusal<'_>) -> Self {
        Problem::iam(
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED),
            refusal.problem_slug(),
            refusal.title(),
            refusal.detail(),
        )
    }

    /// An `about:blank` problem: its title is the status's reason phrase.
    pub fn about_blank(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem::new(
            status,
            ABOUT_BLANK,
            status.canonical_reason().unwrap_or("Error"),
            detail,
        )
    }

    /// The same problem with per-field errors.
    pub fn with_errors(mut self, errors: Vec<ProblemFieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// The same problem with an extension member, such as the OAuth `error` code.
    pub fn with_member(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// The status code, or 500 when `status` is not one.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The serialised document.
    pub fn to_body(&self) -> Vec<u8> {
        match serde_json::to_vec(self) {
            Ok(body) => body,
            // Strings and numbers always serialise; this is never reached.
            Err(error) => {
                tracing::error!(%error, "cannot serialise a problem document");
                Vec::new()
            }
        }
    }

    /// Writes the status, `Content-Type: application/problem+json`,
    /// `X-Content-Type-Options: nosniff` and the body.
    pub fn write_to(&self, res: &mut Response) {
        res.status_code(self.status_code());
        own_document_headers(res.headers_mut());
        res.body(self.to_body());
    }

    /// The same answer as a bare hyper response, for code that answers outside a salvo
    /// `Response` (the sidecar's upstream client, a [`crate::server::hyper_port`]).
    pub fn to_hyper_response<B: From<Vec<u8>>>(&self) -> salvo::hyper::Response<B> {
        let mut response = salvo::hyper::Response::new(B::from(Vec::new()));
        self.write_to_hyper(&mut response);
        response
    }

    /// [`Problem::write_to`] for a bare hyper response: replaces its status, content type
    /// and body, keeping its other headers (a challenge, `Retry-After`).
    pub fn write_to_hyper<B: From<Vec<u8>>>(&self, res: &mut salvo::hyper::Response<B>) {
        *res.status_mut() = self.status_code();
        own_document_headers(res.headers_mut());
        *res.body_mut() = B::from(self.to_body());
    }
}

/// The content type of a problem document, and `nosniff` with it: the detail may echo what
/// the client sent, and a browser must never read it as anything but JSON. The servers add
/// `nosniff` to every answer of their own, but the sidecar's main port passes its upstream's
/// headers as they are and so adds none; its own refusals carry it from here.
fn own_document_headers(headers: &mut salvo::http::HeaderMap) {
    headers.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// Answers a refused Bearer token: its status, challenge and problem document.
pub fn write_refusal(res: &mut Response, refusal: &Refusal<'_>) {
    res.headers_mut()
        .insert(WWW_AUTHENTICATE, challenge(refusal));
    Problem::refusal(refusal).write_to(res);
}

/// [`write_refusal`] for a bare hyper response (the sidecar's main port).
pub fn write_hyper_refusal<B: From<Vec<u8>>>(
    res: &mut salvo::hyper::Response<B>,
    refusal: &Refusal<'_>,
) {
    res.headers_mut()
        .insert(WWW_AUTHENTICATE, challenge(refusal));
    Problem::refusal(refusal).write_to_hyper(res);
}

/// The `WWW-Authenticate` value of a refusal: one rule for both kinds of response.
fn challenge(refusal: &Refusal<'_>) -> HeaderValue {
    HeaderValue::from_static(refusal.challenge())
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.problem_type)?;
        map.serialize_entry("title", &self.title)?;
        map.serialize_entry("status", &self.status)?;
        map.serialize_entry("detail", &self.detail)?;
        if !self.errors.is_empty() {
            map.serialize_entry("errors", &self.errors)?;
        }
        for (name, value) in &self.extra {
            if !STANDARD_MEMBERS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// Catcher for errors salvo answers by itself (unknown route, wrong method, malformed
/// request line): an `about:blank` problem whose detail is the reason phrase in lower case.
#[handler]
pub async fn catcher(res: &mut Response, ctrl: &mut FlowCtrl) {
    let status = res.status_code.unwrap_or(StatusCode::NOT_FOUND);
    let title = status.canonical_reason().unwrap_or("Error");
    Problem::about_blank(status, title.to_lowercase()).write_to(res);
    ctrl.skip_rest();
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn members_are_written_in_the_documented_order() {
        let problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "urn:iam:problem:validation-error",
            "Validation failed",
            "one or more fields are invalid",
        )
        .with_errors(vec![ProblemFieldError {
            field: "email".to_owned(),
            message: "is not an email address".to_owned(),
        }])
        .with_member("error", "invalid_request");
        assert_eq!(
            std::str::from_utf8(&problem.to_body()).expect("utf-8"),
            r#"{"type":"urn:iam:problem:validation-error","title":"Validation failed","status":422,"detail":"one or more fields are invalid","errors":[{"field":"email","message":"is not an email address"}],"error":"invalid_request"}"#
        );
    }

    #[test]
    fn a_refusal_is_answered_with_its_challenge_and_problem() {
        let mut res = Response::new();
        write_refusal(&mut res, &Refusal::InsufficientScope { permission: "a:b" });
        assert_eq!(res.status_code, Some(StatusCode::FORBIDDEN));
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope""#
        );
        let problem = Problem::refusal(&Refusal::InsufficientScope { permission: "a:b" });
        assert_eq!(
            std::str::from_utf8(&problem.to_body()).expect("utf-8"),
            r#"{"type":"urn:iam:problem:forbidden","title":"Forbidden","status":403,"detail":"the permission a:b is required"}"#
        );
        assert_eq!(
            Problem::refusal(&Refusal::MissingToken).status_code(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_hyper_refusal_is_the_same_answer() {
        let refusal = Refusal::InsufficientScope { permission: "a:b" };
        let mut salvo_res = Response::new();
        write_refusal(&mut salvo_res, &refusal);
        let mut res = salvo::hyper::Response::new(Vec::new());
        res.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        write_hyper_refusal(&mut res, &refusal);
        assert_eq!(Some(res.status()), salvo_res.status_code);
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            salvo_res.headers()[WWW_AUTHENTICATE]
        );
        assert_eq!(res.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(res.headers()["retry-after"], "1", "other headers stay");
        assert_eq!(res.body()[..], Problem::refusal(&refusal).to_body()[..]);
    }

    #[test]
    fn without_errors_the_member_is_left_out() {
        let problem = Problem::about_blank(StatusCode::BAD_GATEWAY, "the upstream is away");
        assert_eq!(
            std::str::from_utf8(&problem.to_body()).expect("utf-8"),
            r#"{"type":"about:blank","title":"Bad Gateway","status":502,"detail":"the upstream is away"}"#
        );
    }

    #[test]
    fn an_extension_member_cannot_replace_a_standard_one() {
        let problem = Problem::about_blank(StatusCode::FORBIDDEN, "no")
            .with_member("status", 200)
            .with_member("type", "urn:other");
        let value: Value = serde_json::from_slice(&problem.to_body()).expect("json");
        assert_eq!(value["status"], 403);
        assert_eq!(value["type"], ABOUT_BLANK);
    }

    #[test]
    fn it_is_written_as_problem_json_with_its_status() {
        let mut res = Response::new();
        Problem::about_blank(StatusCode::GATEWAY_TIMEOUT, "slow").write_to(&mut res);
        assert_eq!(res.status_code, Some(StatusCode::GATEWAY_TIMEOUT));
        assert_eq!(res.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(res.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let problem = Problem::about_blank(StatusCode::BAD_GATEWAY, "away");
        let response = problem.to_hyper_response::<Vec<u8>>();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(response.body()[..], problem.to_body()[..]);
    }
}
