//! A test upstream for the sidecar: records every request it receives and echoes it back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt as _;
use salvo::conn::TcpListener;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use serde::Serialize;

/// One request as the upstream saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SeenRequest {
    pub method: String,
    pub path_and_query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The request's trailer fields, names lowercased.
    pub trailers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The value of `name` (lowercase), if the upstream received it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Size of the body `GET /download` answers with.
pub const DOWNLOAD_BYTES: usize = 24 * 1024 * 1024;

/// `(name, value)` of each field, in order.
fn pairs(headers: &salvo::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let body = http_body_util::Limited::new(req.take_body(), 256 * 1024 * 1024)
            .collect()
            .await
            .ok();
        let trailers = body
            .as_ref()
            .and_then(|body| body.trailers())
            .map(pairs)
            .unwrap_or_default();
        let body_len = body.map_or(0, |body| body.to_bytes().len());
        let seen = SeenRequest {
            method: req.method().to_string(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), ToString::to_string),
            headers: pairs(req.headers()),
            body_len,
            trailers,
        };
        self.seen.lock().expect("lock").push(seen.clone());
        match req.uri().path() {
            "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
            "/download" => {
                res.body(vec![b'y'; DOWNLOAD_BYTES]);
                return;
            }
            _ => {}
        }
        res.render(Json(seen));
    }
}

/// A running echo upstream on a free port, stopped when dropped.
#[derive(Debug)]
pub struct EchoUpstream {
    pub url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    handle: ServerHandle,
}

impl EchoUpstream {
    /// Starts the upstream.
    pub async fn start() -> Self {
        let port = crate::free_port();
        let acceptor = TcpListener::new(("127.0.0.1", port)).bind().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::with_path("{**rest}").goal(Recorder {
            seen: Arc::clone(&seen),
        });
        let server = Server::new(acceptor);
        let handle = server.handle();
        tokio::spawn(server.serve(router));
        EchoUpstream {
            url: format!("http://127.0.0.1:{port}"),
            seen,
            handle,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.handle.stop_forceful();
    }
}
