//! The accepted TCP stream as a hyper port serves it: which protocol the client speaks (told
//! by the HTTP/2 connection preface), and the bytes read to tell it given back to hyper.

use std::io;
use std::pin::Pin;
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

/// The TCP stream handed to hyper: first the bytes [`read_protocol`] took, then the socket.
#[derive(Debug)]
pub(super) struct ServedStream {
    already_read: Vec<u8>,
    replayed: usize,
    stream: TcpStream,
}

impl ServedStream {
    pub(super) fn new(already_read: Vec<u8>, stream: TcpStream) -> Self {
        ServedStream {
            already_read,
            replayed: 0,
            stream,
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
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
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
        let mut served = ServedStream::new(read, server);
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
        let mut served = ServedStream::new(read, server);
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
}
