//! The accepted TCP stream as a hyper port serves it: which protocol the client speaks (told
//! by the HTTP/2 connection preface), the bytes read to tell it given back to hyper, and the
//! time of the last byte moved either way, for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Reads until the first bytes tell the protocol: all of the HTTP/2 preface, or a byte that
/// differs from it (every HTTP/1.1 request does at its first or second byte). Returns the
/// protocol and the bytes read; `None` when the client closed first.
pub(super) async fn read_protocol(
    stream: &mut TcpStream,
) -> io::Result<Option<(Protocol, Vec<u8>)>> {
    let mut read = Vec::with_capacity(HTTP2_PREFACE.len());
    loop {
        if let Some(protocol) = protocol_of(&read) {
            return Ok(Some((protocol, read)));
        }
        let mut byte_budget = [0_u8; HTTP2_PREFACE.len()];
        let wanted = HTTP2_PREFACE.len() - read.len();
        let count = stream.read(&mut byte_budget[..wanted]).await?;
        if count == 0 {
            return Ok(None);
        }
        read.extend_from_slice(&byte_budget[..count]);
    }
}

/// The protocol the bytes read so far show, if they show one yet.
fn protocol_of(read: &[u8]) -> Option<Protocol> {
    if read.len() >= HTTP2_PREFACE.len() && read.starts_with(HTTP2_PREFACE) {
        Some(Protocol::Http2)
    } else if !HTTP2_PREFACE.starts_with(read) {
        Some(Protocol::Http1)
    } else {
        None
    }
}

/// Whether a connection moved a byte since the connection's idle watch last looked; shared
/// between the stream and that watch. A flag rather than a time: reading the clock on every
/// read and write would cost each request more than the whole watch does.
#[derive(Debug, Default)]
pub(super) struct Activity {
    moved: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Whether bytes moved since the last call.
    pub(super) fn take_moved(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }
}

/// The TCP stream handed to hyper: first the bytes [`read_protocol`] took, then the socket;
/// every read or write that moves bytes marks the [`Activity`].
#[derive(Debug)]
pub(super) struct ServedStream {
    already_read: Vec<u8>,
    replayed: usize,
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl ServedStream {
    pub(super) fn new(already_read: Vec<u8>, stream: TcpStream, activity: Arc<Activity>) -> Self {
        ServedStream {
            already_read,
            replayed: 0,
            stream,
            activity,
        }
    }
}

impl AsyncRead for ServedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let unreplayed = &this.already_read[this.replayed..];
        if !unreplayed.is_empty() {
            let count = unreplayed.len().min(buf.remaining());
            buf.put_slice(&unreplayed[..count]);
            this.replayed += count;
            if this.replayed == this.already_read.len() {
                this.already_read = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for ServedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(count)) if count > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(poll, Poll::Ready(Ok(count)) if count > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_preface_tells_http2_and_any_other_byte_http1() {
        assert_eq!(protocol_of(b""), None);
        assert_eq!(protocol_of(b"P"), None);
        assert_eq!(protocol_of(&HTTP2_PREFACE[..23]), None);
        assert_eq!(protocol_of(HTTP2_PREFACE), Some(Protocol::Http2));
        assert_eq!(protocol_of(b"G"), Some(Protocol::Http1));
        assert_eq!(protocol_of(b"PO"), Some(Protocol::Http1));
        assert_eq!(protocol_of(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
    }

    /// A connected pair: the client's end and the server's accepted end.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn the_bytes_read_to_tell_the_protocol_are_read_again_first() {
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (protocol, read) = read_protocol(&mut server)
            .await
            .expect("read")
            .expect("protocol");
        assert_eq!(protocol, Protocol::Http1);
        // As much as one read brought, at most the preface's length.
        assert!(b"GET / HTTP/1.1\r\n\r\n".starts_with(&read), "{read:?}");
        assert!(!read.is_empty() && read.len() <= HTTP2_PREFACE.len());
        let mut served = ServedStream::new(read, server, Arc::default());
        let mut request = vec![0_u8; 18];
        served.read_exact(&mut request).await.expect("read");
        assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");

        let (mut client, mut server) = pair().await;
        client.write_all(HTTP2_PREFACE).await.expect("write");
        client.write_all(b"rest").await.expect("write");
        let (protocol, read) = read_protocol(&mut server)
            .await
            .expect("read")
            .expect("protocol");
        assert_eq!(protocol, Protocol::Http2);
        let mut served = ServedStream::new(read, server, Arc::default());
        let mut all = vec![0_u8; HTTP2_PREFACE.len() + 4];
        served.read_exact(&mut all).await.expect("read");
        assert_eq!(&all[..HTTP2_PREFACE.len()], HTTP2_PREFACE);
        assert_eq!(&all[HTTP2_PREFACE.len()..], b"rest");
    }

    #[tokio::test]
    async fn a_client_that_closes_before_telling_gives_none() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"PRI * ").await.expect("write");
        drop(client);
        assert!(read_protocol(&mut server).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn moving_bytes_either_way_is_noticed_once() {
        let (mut client, server) = pair().await;
        let activity = Arc::new(Activity::default());
        let mut served = ServedStream::new(b"G".to_vec(), server, Arc::clone(&activity));
        assert!(!activity.take_moved());
        // Replaying what was read to tell the protocol is not traffic.
        let mut byte = [0_u8; 1];
        served.read_exact(&mut byte).await.expect("read");
        assert!(!activity.take_moved());
        client.write_all(b"x").await.expect("write");
        served.read_exact(&mut byte).await.expect("read");
        assert!(activity.take_moved());
        assert!(!activity.take_moved());
        served.write_all(b"y").await.expect("write");
        assert!(activity.take_moved());
    }
}
