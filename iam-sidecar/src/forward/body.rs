//! The body of every answer on the main port: the upstream's, streamed as it arrives, or a
//! whole document the sidecar wrote itself (a problem, or nothing).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use iam_core::server::hyper_port::BoxError;

/// An answer's body on the main port.
#[derive(Debug)]
pub enum ResBody {
    /// Written by the sidecar; taken when sent (`None` once sent, or for no body).
    Whole(Option<Bytes>),
    /// The upstream's body, passed on frame by frame (trailers included).
    Upstream(Incoming),
}

impl ResBody {
    /// No body at all (`Content-Length: 0`).
    pub fn empty() -> Self {
        ResBody::Whole(None)
    }

    /// The document the sidecar wrote, if it is one and not yet sent.
    pub fn whole(&self) -> Option<&Bytes> {
        match self {
            ResBody::Whole(body) => body.as_ref(),
            ResBody::Upstream(_) => None,
        }
    }
}

impl From<Vec<u8>> for ResBody {
    fn from(body: Vec<u8>) -> Self {
        ResBody::Whole(Some(Bytes::from(body)))
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResBody::Whole(body) => Poll::Ready(
                body.take()
                    .filter(|body| !body.is_empty())
                    .map(|body| Ok(Frame::data(body))),
            ),
            ResBody::Upstream(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Whole(body) => body.as_ref().is_none_or(Bytes::is_empty),
            ResBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Whole(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |body| body.len() as u64))
            }
            ResBody::Upstream(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn a_whole_body_is_sent_once_with_its_exact_size() {
        let body = ResBody::from(b"{}".to_vec());
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        assert_eq!(body.whole().map(|body| &body[..]), Some(&b"{}"[..]));
        let collected = body.collect().await.expect("body").to_bytes();
        assert_eq!(collected, "{}");
    }

    #[tokio::test]
    async fn an_empty_body_ends_at_once() {
        let body = ResBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.collect().await.expect("body").to_bytes().is_empty());
    }
}
