//! HTTP/1.1 over a plain TCP socket, for requests an HTTP client would normalise away
//! (path spellings, duplicate or oddly spelled headers, bodies that never arrive).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A response as it came off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The head (status line and headers) as text.
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// The `host:port` of a base URL such as `http://127.0.0.1:8000`.
pub fn authority(base_url: &str) -> &str {
    base_url.trim_start_matches("http://").trim_end_matches('/')
}

/// Sends `request` (bytes as given, so it should carry `Connection: close`) and reads the
/// whole answer until the server closes, within 20 s.
pub async fn exchange(authority: &str, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(authority).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 20 s")
        .expect("read answer");
    parse(&answer)
}

/// A `Connection: close` request with `method`, `target`, extra header lines and a body.
pub fn request(method: &str, target: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut text =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// Splits an answer into status, head and (de-chunked) body.
pub fn parse(answer: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResponse {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
