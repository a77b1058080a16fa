//! A JWKS endpoint under the test's control: it serves whatever document the test sets, with
//! a `Content-Length` or chunked, so that a sidecar can be shown a broken key service; and
//! an empty revocation feed, which the sidecar needs before it judges tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use iam_core::PublicJwk;

/// How the server frames the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// With a `Content-Length` header.
    ContentLength,
    /// `Transfer-Encoding: chunked`, in 64 KiB chunks, no length announced.
    Chunked,
}

#[derive(Debug)]
struct Served {
    body: Vec<u8>,
    framing: Framing,
}

/// A running JWKS server on a free port; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct JwksServer {
    /// The URL of the document.
    pub url: String,
    served: Arc<Mutex<Served>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Starts serving `document`.
    pub async fn start(document: &str) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("address")
        );
        let served = Arc::new(Mutex::new(Served {
            body: document.as_bytes().to_vec(),
            framing: Framing::ContentLength,
        }));
        let requests = Arc::new(AtomicUsize::new(0));
        let server = JwksServer {
            url,
            served: Arc::clone(&served),
            requests: Arc::clone(&requests),
        };
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let served = Arc::clone(&served);
                let requests = Arc::clone(&requests);
                tokio::spawn(answer(socket, served, requests));
            }
        });
        server
    }

    /// Serves `document` from now on, framed as `framing`.
    pub fn serve(&self, document: &str, framing: Framing) {
        let mut served = self.served.lock().expect("lock");
        served.body = document.as_bytes().to_vec();
        served.framing = framing;
    }

    /// How many requests have been answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    mut socket: tokio::net::TcpStream,
    served: Arc<Mutex<Served>>,
    requests: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    // The sidecar polls the revocation feed on the same origin: nothing is revoked here.
    if head.starts_with(b"GET /api/v1/revocations") {
        let feed = br#"{"subjects":{},"tokens":{},"generated_at":0}"#;
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            feed.len()
        )
        .into_bytes();
        response.extend_from_slice(feed);
        let _ = socket.write_all(&response).await;
        let _ = socket.shutdown().await;
        return;
    }
    let response = {
        let served = served.lock().expect("lock");
        let mut response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
            cache-control: public, max-age=1\r\nconnection: close\r\n"
            .to_vec();
        match served.framing {
            Framing::ContentLength => {
                response.extend(format!("content-length: {}\r\n\r\n", served.body.len()).bytes());
                response.extend(&served.body);
            }
            Framing::Chunked => {
                response.extend(b"transfer-encoding: chunked\r\n\r\n");
                for chunk in served.body.chunks(64 * 1024) {
                    response.extend(format!("{:x}\r\n", chunk.len()).bytes());
                    response.extend(chunk);
                    response.extend(b"\r\n");
                }
                response.extend(b"0\r\n\r\n");
            }
        }
        response
    };
    requests.fetch_add(1, Ordering::SeqCst);
    // A client that refuses the document hangs up early; that is what is being tested.
    let _ = socket.write_all(&response).await;
    let _ = socket.shutdown().await;
}

/// An RSA key a test signs with, and its public JWK (kid = RFC 7638 thumbprint).
#[derive(Debug)]
pub struct TestSigningKey {
    pub private: PKey<Private>,
    pub jwk: PublicJwk,
}

impl TestSigningKey {
    /// A fresh 2048-bit key.
    pub fn generate() -> TestSigningKey {
        let rsa = Rsa::generate(2048).expect("rsa");
        let jwk = PublicJwk::from_rsa_components(&rsa.n().to_vec(), &rsa.e().to_vec());
        TestSigningKey {
            private: PKey::from_rsa(rsa).expect("pkey"),
            jwk,
        }
    }

    /// A valid access token (issuer and audience `iam`) with `permissions`, signed by this key.
    pub fn token(&self, permissions: &[&str]) -> String {
        crate::forge::sign_rs256(
            &crate::forge::header(&self.jwk.kid),
            &crate::forge::claims(permissions, 0, 300),
            &self.private,
        )
    }
}

/// The JWKS document of `keys`.
pub fn jwks_of(keys: &[&TestSigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| &key.jwk).collect::<Vec<_>>() })
}

/// The JWKS document of `keys`, preceded by whitespace to exactly `len` bytes: valid JSON
/// at any size, so only a size cap can refuse it.
pub fn padded_jwks_of(keys: &[&TestSigningKey], len: usize) -> String {
    let document = jwks_of(keys).to_string();
    assert!(
        document.len() <= len,
        "the document alone is longer than {len}"
    );
    format!("{}{document}", " ".repeat(len - document.len()))
}
