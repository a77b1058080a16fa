//! Refusals as gRPC clients read them (contract §6). A gRPC client takes a call's outcome
//! from `grpc-status`, not from the HTTP status: to most of them a 401 is an unknown
//! transport failure. So in proxy mode, when the sidecar itself refuses a request whose
//! `content-type` is `application/grpc…` (gRPC, gRPC-Web), the answer goes out as a gRPC
//! "trailers-only" response: HTTP 200, `content-type: application/grpc`, `grpc-status` and a
//! percent-encoded `grpc-message` (the problem's `detail`), no body. `WWW-Authenticate`
//! stays. Answers the upstream wrote pass as they are.
//!
//! Never in decision mode: there the asking proxy reads any 200 as "let it through".

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use iam_core::server::hyper_port::LoggedStatus;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::forward::{Answered, ResBody};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// What `grpc-message` must percent-encode besides non-ASCII: controls and `%` itself.
const GRPC_MESSAGE_ESCAPED: &AsciiSet = &CONTROLS.add(b'%');

/// gRPC status codes the sidecar answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GrpcCode {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The gRPC status for a refusal the sidecar gives with HTTP `status`.
pub fn grpc_code(status: StatusCode) -> GrpcCode {
    match status {
        StatusCode::UNAUTHORIZED => GrpcCode::Unauthenticated,
        StatusCode::FORBIDDEN => GrpcCode::PermissionDenied,
        StatusCode::BAD_REQUEST => GrpcCode::InvalidArgument,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            GrpcCode::ResourceExhausted
        }
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            GrpcCode::Unavailable
        }
        _ => GrpcCode::Internal,
    }
}

/// Whether a request is a gRPC (or gRPC-Web) call, by its `content-type`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// Rewrites the sidecar's refusal in `res` as a trailers-only gRPC response.
pub fn into_grpc_refusal(res: &mut Response<ResBody>) {
    let status = res.status();
    let detail = res
        .body()
        .whole()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_owned());
    let message = utf8_percent_encode(&detail, GRPC_MESSAGE_ESCAPED).to_string();
    *res.status_mut() = StatusCode::OK;
    // Counted and logged as the refusal it is.
    res.extensions_mut().insert(LoggedStatus(status));
    *res.body_mut() = ResBody::empty();
    let headers = res.headers_mut();
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        GRPC_STATUS,
        HeaderValue::from(u16::from(grpc_code(status) as u8)),
    );
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

/// In proxy mode, sends the sidecar's own refusal of a gRPC call (`grpc`: the request was
/// one) as gRPC status; the upstream's answers and anything not a refusal pass as they are.
pub fn refusals_as_grpc(grpc: bool, answered: Answered, res: &mut Response<ResBody>) {
    let refused = res.status().as_u16() >= 400;
    if grpc && refused && answered == Answered::BySidecar {
        into_grpc_refusal(res);
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use iam_core::problem::{Problem, write_hyper_refusal};
    use iam_core::refusal::Refusal;

    use super::*;
    use crate::proxy::test_support::headers;

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-web+proto",
        ] {
            assert!(
                is_grpc(&headers(&[("content-type", grpc.as_bytes())])),
                "{grpc}"
            );
        }
        for other in ["application/json", "application/grp", "text/grpc"] {
            assert!(
                !is_grpc(&headers(&[("content-type", other.as_bytes())])),
                "{other}"
            );
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn each_refusal_has_its_grpc_code() {
        for (status, code) in [
            (StatusCode::UNAUTHORIZED, 16),
            (StatusCode::FORBIDDEN, 7),
            (StatusCode::SERVICE_UNAVAILABLE, 14),
            (StatusCode::BAD_GATEWAY, 14),
            (StatusCode::GATEWAY_TIMEOUT, 14),
            (StatusCode::BAD_REQUEST, 3),
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, 8),
            (StatusCode::TOO_MANY_REQUESTS, 8),
            (StatusCode::INTERNAL_SERVER_ERROR, 13),
        ] {
            assert_eq!(grpc_code(status) as u8, code, "{status}");
        }
    }

    #[test]
    fn a_refusal_becomes_a_trailers_only_response() {
        let mut res = Response::new(ResBody::empty());
        write_hyper_refusal(&mut res, &Refusal::InvalidToken);
        into_grpc_refusal(&mut res);
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.body().whole().is_none());
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(
            res.extensions().get::<LoggedStatus>(),
            Some(&LoggedStatus(StatusCode::UNAUTHORIZED))
        );
        assert!(res.headers().contains_key("www-authenticate"));
        assert!(!res.headers().contains_key("content-length"));
        // The problem's detail; spaces need no escape in grpc-message.
        assert_eq!(
            res.headers()["grpc-message"],
            "the access token is invalid or expired"
        );
    }

    /// What proxy mode makes of `answer`'s response (written by `answered`) to a request
    /// with `content_type`.
    fn as_sent(
        content_type: &str,
        answered: Answered,
        answer: fn(&mut Response<ResBody>),
    ) -> Response<ResBody> {
        let mut res = Response::new(ResBody::empty());
        answer(&mut res);
        let request = headers(&[("content-type", content_type.as_bytes())]);
        refusals_as_grpc(is_grpc(&request), answered, &mut res);
        res
    }

    fn refuse_401(res: &mut Response<ResBody>) {
        write_hyper_refusal(res, &Refusal::InvalidToken);
    }

    fn refuse_400(res: &mut Response<ResBody>) {
        Problem::about_blank(StatusCode::BAD_REQUEST, "bad path").write_to_hyper(res);
    }

    fn status_403(res: &mut Response<ResBody>) {
        *res.status_mut() = StatusCode::FORBIDDEN;
    }

    fn ok_200(res: &mut Response<ResBody>) {
        *res.body_mut() = ResBody::from(b"ok".to_vec());
    }

    #[test]
    fn only_the_sidecars_refusals_of_grpc_calls_are_rewritten() {
        let sidecar = Answered::BySidecar;
        let res = as_sent("application/grpc", sidecar, refuse_401);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
        let res = as_sent("application/grpc", sidecar, refuse_400);
        assert_eq!(res.headers()["grpc-status"], "3");
        // Not a gRPC call: the HTTP refusal stands.
        let res = as_sent("application/json", sidecar, refuse_401);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(!res.headers().contains_key("grpc-status"));
        // The upstream's answer passes as it is.
        let res = as_sent("application/grpc", Answered::ByUpstream, status_403);
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!res.headers().contains_key("grpc-status"));
        // Not a refusal.
        let res = as_sent("application/grpc", sidecar, ok_200);
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("grpc-status"));
    }

    #[test]
    fn the_message_is_percent_encoded() {
        let mut res = Response::new(ResBody::empty());
        Problem::about_blank(StatusCode::FORBIDDEN, "100% need \"orders:write\"\né")
            .write_to_hyper(&mut res);
        into_grpc_refusal(&mut res);
        assert_eq!(res.headers()["grpc-status"], "7");
        assert_eq!(
            res.headers()["grpc-message"],
            "100%25 need \"orders:write\"%0A%C3%A9"
        );
    }
}
