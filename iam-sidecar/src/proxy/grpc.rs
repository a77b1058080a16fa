//! Refusals as gRPC clients read them (contract §6). A gRPC client takes a call's outcome
//! from `grpc-status`, not from the HTTP status: to most of them a 401 is an unknown
//! transport failure. So in proxy mode, when the sidecar itself refuses a request whose
//! `content-type` is `application/grpc…` (gRPC, gRPC-Web), the answer goes out as a gRPC
//! "trailers-only" response: HTTP 200, `content-type: application/grpc`, `grpc-status` and a
//! percent-encoded `grpc-message` (the problem's `detail`), no body. `WWW-Authenticate`
//! stays. Answers the upstream wrote pass as they are.
//!
//! Never in decision mode: there the asking proxy reads any 200 as "let it through".

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use salvo::http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use salvo::http::{ResBody, StatusCode};
use salvo::prelude::*;

use crate::forward::Answered;

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
pub fn into_grpc_refusal(res: &mut Response) {
    let status = res.status_code.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = match &res.body {
        ResBody::Once(body) => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned)),
        _ => None,
    }
    .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_owned());
    let message = utf8_percent_encode(&detail, GRPC_MESSAGE_ESCAPED).to_string();
    res.status_code(StatusCode::OK);
    res.body(ResBody::None);
    let headers = res.headers_mut();
    headers.remove(salvo::http::header::CONTENT_LENGTH);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        GRPC_STATUS,
        HeaderValue::from(u16::from(grpc_code(status) as u8)),
    );
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

/// The proxy-mode hoop that sends the sidecar's own refusals of gRPC calls as gRPC status.
#[derive(Debug, Clone, Copy)]
pub struct GrpcRefusals;

#[async_trait]
impl Handler for GrpcRefusals {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let grpc = is_grpc(req.headers());
        ctrl.call_next(req, depot, res).await;
        let by_upstream = depot.get_typed::<Answered>().is_ok();
        let refused = res.status_code.is_some_and(|status| status.as_u16() >= 400);
        if grpc && refused && !by_upstream {
            into_grpc_refusal(res);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use iam_core::problem::{Problem, write_refusal};
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
        let mut res = Response::new();
        write_refusal(&mut res, &Refusal::InvalidToken);
        into_grpc_refusal(&mut res);
        assert_eq!(res.status_code, Some(StatusCode::OK));
        assert!(matches!(res.body, ResBody::None));
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "16");
        assert!(res.headers().contains_key("www-authenticate"));
        assert!(!res.headers().contains_key("content-length"));
        // The problem's detail; spaces need no escape in grpc-message.
        assert_eq!(
            res.headers()["grpc-message"],
            "the access token is invalid or expired"
        );
    }

    /// What `GrpcRefusals` makes of `answer`'s response to a request with `content_type`.
    async fn through_the_hoop(content_type: &str, answer: impl Handler) -> Response {
        let mut req = Request::new();
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("value"),
        );
        let mut depot = Depot::new();
        let mut res = Response::new();
        let mut ctrl = FlowCtrl::new(vec![
            std::sync::Arc::new(GrpcRefusals),
            std::sync::Arc::new(answer),
        ]);
        ctrl.call_next(&mut req, &mut depot, &mut res).await;
        res
    }

    #[handler]
    async fn refuse_401(res: &mut Response) {
        write_refusal(res, &Refusal::InvalidToken);
    }

    #[handler]
    async fn refuse_400(res: &mut Response) {
        Problem::about_blank(StatusCode::BAD_REQUEST, "bad path").write_to(res);
    }

    #[handler]
    async fn upstream_403(depot: &mut Depot, res: &mut Response) {
        res.status_code(StatusCode::FORBIDDEN);
        depot.insert_typed(Answered::ByUpstream);
    }

    #[handler]
    async fn sidecar_200(res: &mut Response) {
        res.status_code(StatusCode::OK);
        res.render("ok");
    }

    #[tokio::test]
    async fn only_the_sidecars_refusals_of_grpc_calls_are_rewritten() {
        let res = through_the_hoop("application/grpc", refuse_401).await;
        assert_eq!(res.status_code, Some(StatusCode::OK));
        assert_eq!(res.headers()["grpc-status"], "16");
        let res = through_the_hoop("application/grpc", refuse_400).await;
        assert_eq!(res.headers()["grpc-status"], "3");
        // Not a gRPC call: the HTTP refusal stands.
        let res = through_the_hoop("application/json", refuse_401).await;
        assert_eq!(res.status_code, Some(StatusCode::UNAUTHORIZED));
        assert!(!res.headers().contains_key("grpc-status"));
        // The upstream's answer passes as it is.
        let res = through_the_hoop("application/grpc", upstream_403).await;
        assert_eq!(res.status_code, Some(StatusCode::FORBIDDEN));
        assert!(!res.headers().contains_key("grpc-status"));
        // Not a refusal.
        let res = through_the_hoop("application/grpc", sidecar_200).await;
        assert_eq!(res.status_code, Some(StatusCode::OK));
        assert!(!res.headers().contains_key("grpc-status"));
    }

    #[test]
    fn the_message_is_percent_encoded() {
        let mut res = Response::new();
        Problem::about_blank(StatusCode::FORBIDDEN, "100% need \"orders:write\"\né")
            .write_to(&mut res);
        into_grpc_refusal(&mut res);
        assert_eq!(res.headers()["grpc-status"], "7");
        assert_eq!(
            res.headers()["grpc-message"],
            "100%25 need \"orders:write\"%0A%C3%A9"
        );
    }
}
