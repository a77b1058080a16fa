//! Request trailers: fields that arrive after the body (gRPC clients and chunked HTTP/1.1
//! may send them). The gate judges and strips the request's headers before the body is
//! read, so a field that only the sidecar may set (an identity header) could otherwise reach
//! the upstream as a trailer, where frameworks that merge trailers into headers would
//! believe it. [`FilteredTrailers`] passes the body through and removes such fields from its
//! trailers on the way.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::HeaderMap;

/// A request body whose trailers go through `filter` before they are forwarded.
#[derive(Debug)]
pub struct FilteredTrailers<B> {
    inner: B,
    filter: fn(&mut HeaderMap),
}

impl<B> FilteredTrailers<B> {
    /// Wraps `inner`; `filter` removes what must not pass from each trailer section.
    pub fn new(inner: B, filter: fn(&mut HeaderMap)) -> Self {
        FilteredTrailers { inner, filter }
    }
}

impl<B> Body for FilteredTrailers<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let filter = self.filter;
        Pin::new(&mut self.inner).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        filter(&mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(data) => data,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use hyper::header::{HeaderName, HeaderValue};

    use super::*;

    /// A body of the given frames, in order.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    #[test]
    fn the_inner_bodys_size_and_end_are_reported() {
        let empty = FilteredTrailers::new(http_body_util::Empty::<Bytes>::new(), drop_x_secret);
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
        let full = FilteredTrailers::new(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            drop_x_secret,
        );
        assert!(!full.is_end_stream());
        assert_eq!(full.size_hint().exact(), Some(5));
    }

    fn drop_x_secret(trailers: &mut HeaderMap) {
        trailers.remove("x-secret");
    }

    #[tokio::test]
    async fn data_passes_and_trailers_are_filtered() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-secret", HeaderValue::from_static("spoofed"));
        trailers.insert(
            HeaderName::from_static("grpc-status"),
            HeaderValue::from_static("0"),
        );
        let body = Frames(VecDeque::from([
            Frame::data(Bytes::from_static(b"hello")),
            Frame::trailers(trailers),
        ]));
        let mut body = FilteredTrailers::new(body, drop_x_secret);
        let mut frames = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            frames.push(frame.expect("frame"));
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data_ref().expect("data"), "hello");
        let trailers = frames[1].trailers_ref().expect("trailers");
        assert_eq!(trailers.len(), 1);
        assert_eq!(trailers["grpc-status"], "0");
    }
}
