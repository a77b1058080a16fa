//! iam-proxy-ceiling: the fastest reverse proxy our HTTP stack allows, as a reference for the
//! `sidecar` scenario. It is iam-sidecar's stack (hyper's HTTP/1 server, hyper-util's pooled
//! client, tokio as `iam_core::process::run` builds it for the same worker count, mimalloc)
//! and nothing else: no routing, no token check, no header rewriting, no telemetry. The
//! sidecar's distance to it is what our own code costs; its distance to nginx is what the
//! stack costs.
//!
//!   iam-proxy-ceiling LISTEN_ADDRESS UPSTREAM_ORIGIN [WORKERS]
//!   iam-proxy-ceiling 127.0.0.1:18092 http://127.0.0.1:18090 2

use std::net::SocketAddr;
use std::process::ExitCode;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use iam_core::process::ProcessError;
use tokio::net::TcpListener;

type UpstreamClient = Client<HttpConnector, Incoming>;

/// The sidecar's allocator, so that the ceiling stays the sidecar's stack.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: iam-proxy-ceiling LISTEN_ADDRESS UPSTREAM_ORIGIN [WORKERS]");
        return ExitCode::from(2);
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(address) => address,
        Err(error) => {
            eprintln!("invalid listen address {listen}: {error}");
            return ExitCode::from(2);
        }
    };
    let workers = match args.next().map(|text| text.parse::<usize>()) {
        None => std::thread::available_parallelism().map_or(1, |count| count.get()),
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            eprintln!("WORKERS must be a positive number");
            return ExitCode::from(2);
        }
    };
    // The sidecar's runtime for the same worker count (iam_core::process::run).
    iam_core::process::run("iam-proxy-ceiling", workers, async move {
        serve(listen, upstream.trim_end_matches('/').to_owned())
            .await
            .map_err(|error| ProcessError::runtime(error.to_string()))
    })
}

async fn serve(listen: SocketAddr, upstream: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: UpstreamClient = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let upstream: std::sync::Arc<str> = upstream.as_str().into();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                forward(client.clone(), std::sync::Arc::clone(&upstream), request)
            });
            // A client that hangs up mid-request is not an error of the proxy.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why a request could not be forwarded; hyper then closes the client's connection, which
/// the load generator counts as an error.
#[derive(Debug)]
enum ForwardError {
    Path,
    Upstream(hyper_util::client::legacy::Error),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Path => formatter.write_str("the request path is not a valid URI"),
            ForwardError::Upstream(error) => write!(formatter, "upstream request failed: {error}"),
        }
    }
}

impl std::error::Error for ForwardError {}

async fn forward(
    client: UpstreamClient,
    upstream: std::sync::Arc<str>,
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, ForwardError> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let uri = format!("{upstream}{path}")
        .parse::<Uri>()
        .map_err(|_| ForwardError::Path)?;
    *request.uri_mut() = uri;
    client
        .request(request)
        .await
        .map_err(ForwardError::Upstream)
}
