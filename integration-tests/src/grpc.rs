//! A real gRPC server and client (tonic) for the sidecar's gRPC tests, speaking raw bytes
//! (no protobuf: the sidecar never looks inside messages).
//!
//! The server, `test.Echo`, answers `Unary` with a JSON object of the request's message and
//! the identity metadata it received, and `Stream` with three messages followed by the
//! status ABORTED carrying trailing metadata (`x-trailer: kept`), so that a client can tell
//! whether messages and trailers crossed the sidecar intact.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use futures::Stream;
use serde_json::json;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Status};

/// Messages are bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The identity metadata the upstream received, as `name: value` (absent ones left out).
fn identity(metadata: &MetadataMap) -> serde_json::Value {
    let mut seen = serde_json::Map::new();
    for name in [
        "x-user-id",
        "x-user-role",
        "x-user-permissions",
        "authorization",
    ] {
        if let Some(value) = metadata.get(name).and_then(|value| value.to_str().ok()) {
            seen.insert(name.to_owned(), json!(value));
        }
    }
    serde_json::Value::Object(seen)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

struct Unary;

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let answer = json!({
            "message": String::from_utf8_lossy(request.get_ref()),
            "metadata": identity(request.metadata()),
        });
        Box::pin(async move { Ok(tonic::Response::new(Bytes::from(answer.to_string()))) })
    }
}

struct ThreeThenAborted;

impl tonic::server::ServerStreamingService<Bytes> for ThreeThenAborted {
    type Response = Bytes;
    type ResponseStream = MessageStream;
    type Future = BoxFuture<Result<tonic::Response<MessageStream>, Status>>;
    fn call(&mut self, _request: tonic::Request<Bytes>) -> Self::Future {
        let mut trailing = MetadataMap::new();
        trailing.insert("x-trailer", "kept".parse().expect("value"));
        let end = Status::with_metadata(Code::Aborted, "the end", trailing);
        let messages: Vec<Result<Bytes, Status>> = vec![
            Ok(Bytes::from_static(b"one")),
            Ok(Bytes::from_static(b"two")),
            Ok(Bytes::from_static(b"three")),
            Err(end),
        ];
        let stream: MessageStream = Box::pin(futures::stream::iter(messages));
        Box::pin(async move { Ok(tonic::Response::new(stream)) })
    }
}

/// The `test.Echo` service.
#[derive(Debug, Clone, Copy)]
pub struct EchoService;

impl NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec);
            Ok(match request.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, request).await,
                "/test.Echo/Stream" => grpc.server_streaming(ThreeThenAborted, request).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A running `test.Echo` server (HTTP/2 cleartext) on a free local port.
#[derive(Debug)]
pub struct GrpcUpstream {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcUpstream {
    pub async fn start() -> GrpcUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(EchoService)
                .serve_with_incoming(incoming)
                .await
                .expect("gRPC server");
        });
        GrpcUpstream { url, task }
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC client of `url` (HTTP/2 cleartext, prior knowledge).
pub async fn client(url: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic::client::Grpc::new(channel)
}

/// A request carrying `message`, with `Authorization: Bearer token` when given and the
/// extra metadata.
pub fn request(
    message: &str,
    token: Option<&str>,
    extra: &[(&'static str, &str)],
) -> tonic::Request<Bytes> {
    let mut request = tonic::Request::new(Bytes::copy_from_slice(message.as_bytes()));
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("value"),
        );
    }
    for (name, value) in extra {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("value"));
    }
    request
}
