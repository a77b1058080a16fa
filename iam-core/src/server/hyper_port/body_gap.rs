//! The body-gap timeout for request bodies a hyper port's answer streams on (the sidecar
//! forwards them to its upstream): a client may pause at most [`BODY_GAP_TIMEOUT`] between
//! two pieces, else the body ends with [`BodyGapElapsed`], so whatever reads it fails (the
//! upstream request is aborted) and the client's connection closes.
//!
//! The clock runs only while the reader waits for the client: a reader that is slow itself
//! (an upstream applying back-pressure) finds the next piece ready and is never cut off.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::super::BODY_GAP_TIMEOUT;

/// Boxed errors of a body: the client's (hyper's) or [`BodyGapElapsed`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a [`GapLimited`] body ends with when the client paused too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body paused for longer than {} s", .0.as_secs())]
pub struct BodyGapElapsed(pub Duration);

impl BodyGapElapsed {
    /// Whether `error` or one of its causes is a body-gap timeout (an HTTP client reports
    /// the body's error as the cause of its own).
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<BodyGapElapsed>() {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// A request body that fails with [`BodyGapElapsed`] when no piece arrives for `gap` while
/// it is being read.
#[derive(Debug)]
pub struct GapLimited<B> {
    inner: B,
    gap: Duration,
    /// Made on the first wait, then reset for each later one.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs for the current wait.
    waiting: bool,
}

impl<B> GapLimited<B> {
    /// `inner` with the port's [`BODY_GAP_TIMEOUT`].
    pub fn new(inner: B) -> Self {
        Self::with_gap(inner, BODY_GAP_TIMEOUT)
    }

    /// `inner` with a gap of its own (tests).
    pub fn with_gap(inner: B, gap: Duration) -> Self {
        GapLimited {
            inner,
            gap,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> Body for GapLimited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.gap;
            match &mut this.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if let Some(timer) = &mut this.timer {
            ready!(timer.as_mut().poll(cx));
        }
        Poll::Ready(Some(Err(BodyGapElapsed(this.gap).into())))
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
    use http_body_util::BodyExt as _;
    use http_body_util::StreamBody;
    use tokio::sync::mpsc;

    use super::*;

    type Sent = Result<Frame<Bytes>, std::convert::Infallible>;

    /// A body fed by the returned sender.
    fn channel_body() -> (
        mpsc::Sender<Sent>,
        StreamBody<tokio_stream_shim::Receiver<Sent>>,
    ) {
        let (sender, receiver) = mpsc::channel(4);
        (
            sender,
            StreamBody::new(tokio_stream_shim::Receiver(receiver)),
        )
    }

    /// Just enough of a receiver stream for a test body (no extra dependency).
    mod tokio_stream_shim {
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub struct Receiver<T>(pub tokio::sync::mpsc::Receiver<T>);

        impl<T> futures_util::Stream for Receiver<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }

    const GAP: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn pieces_within_the_gap_pass_and_a_longer_pause_ends_the_body() {
        let (sender, body) = channel_body();
        let mut body = GapLimited::with_gap(body, GAP);
        let feeder = tokio::spawn(async move {
            for piece in ["a", "b", "c"] {
                tokio::time::sleep(GAP / 3).await;
                sender
                    .send(Ok(Frame::data(Bytes::from(piece))))
                    .await
                    .expect("send");
            }
            // Then silence, with the sender kept open.
            std::future::pending::<()>().await;
            drop(sender);
        });
        for piece in ["a", "b", "c"] {
            let frame = body.frame().await.expect("a frame").expect("data");
            assert_eq!(frame.data_ref().expect("data"), piece);
        }
        let last_piece = Instant::now();
        let error = tokio::time::timeout(GAP * 20, body.frame())
            .await
            .expect("the body ends within the test's deadline")
            .expect("an error")
            .expect_err("timeout");
        assert!(BodyGapElapsed::caused(error.as_ref()), "{error}");
        assert!(last_piece.elapsed() >= GAP, "{:?}", last_piece.elapsed());
        feeder.abort();
    }

    #[tokio::test]
    async fn a_slow_reader_is_not_the_clients_pause() {
        let (sender, body) = channel_body();
        let mut body = GapLimited::with_gap(body, GAP);
        sender
            .send(Ok(Frame::data(Bytes::from("a"))))
            .await
            .expect("send");
        let frame = body.frame().await.expect("frame").expect("data");
        assert_eq!(frame.data_ref().expect("data"), "a");
        sender
            .send(Ok(Frame::data(Bytes::from("b"))))
            .await
            .expect("send");
        drop(sender);
        // The reader comes back long after the gap; the piece was there all along.
        tokio::time::sleep(GAP * 2).await;
        let frame = body.frame().await.expect("frame").expect("data");
        assert_eq!(frame.data_ref().expect("data"), "b");
        assert!(body.frame().await.is_none(), "the body ends as sent");
    }

    #[test]
    fn the_timeout_is_found_among_an_errors_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("upstream request failed")]
        struct Outer(#[source] BoxError);
        let outer = Outer(Box::new(BodyGapElapsed(GAP)));
        assert!(BodyGapElapsed::caused(&outer));
        let other = Outer("reset".into());
        assert!(!BodyGapElapsed::caused(&other));
    }
}
