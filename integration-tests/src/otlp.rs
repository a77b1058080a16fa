//! An in-test OTLP receiver that keeps every span it is sent: OTLP/HTTP with JSON or protobuf
//! bodies on `/v1/traces`, and OTLP/gRPC on a second port.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message as _;
use salvo::conn::TcpListener;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use serde_json::{Value, json};

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// OTLP span kind: 2 server, 3 client, 1 internal.
    pub kind: i64,
    pub attributes: Value,
}

#[derive(Debug, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn string_attribute(attributes: &Value, key: &str) -> Option<String> {
    attributes.as_array()?.iter().find_map(|attribute| {
        (attribute["key"] == key).then(|| {
            attribute["value"]["stringValue"]
                .as_str()
                .map(str::to_owned)
        })?
    })
}

/// Attributes in the OTLP/JSON shape (`[{"key", "value": {"stringValue"}}]`), whatever the
/// encoding they arrived in, so assertions read them one way.
fn attributes_as_json(attributes: &[KeyValue]) -> Value {
    Value::Array(
        attributes
            .iter()
            .map(|attribute| {
                let value = match attribute
                    .value
                    .as_ref()
                    .and_then(|value| value.value.as_ref())
                {
                    Some(any_value::Value::StringValue(text)) => json!({"stringValue": text}),
                    Some(any_value::Value::IntValue(number)) => json!({"intValue": number}),
                    Some(any_value::Value::BoolValue(flag)) => json!({"boolValue": flag}),
                    Some(any_value::Value::DoubleValue(number)) => json!({"doubleValue": number}),
                    _ => Value::Null,
                };
                json!({"key": attribute.key, "value": value})
            })
            .collect(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The spans of a protobuf export request (OTLP/HTTP protobuf and OTLP/gRPC).
fn spans_from_protobuf(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource_attributes = resource_spans
            .resource
            .map(|resource| attributes_as_json(&resource.attributes))
            .unwrap_or(Value::Null);
        let service = string_attribute(&resource_attributes, "service.name").unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: i64::from(span.kind),
                    attributes: attributes_as_json(&span.attributes),
                });
            }
        }
    }
    received
}

/// The spans of an OTLP/JSON export request.
fn spans_from_json(body: &Value) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = string_attribute(&resource_spans["resource"]["attributes"], "service.name")
            .unwrap_or_default();
        for scope in resource_spans["scopeSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for span in scope["spans"].as_array().into_iter().flatten() {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: span["traceId"].as_str().unwrap_or("").to_lowercase(),
                    span_id: span["spanId"].as_str().unwrap_or("").to_lowercase(),
                    parent_span_id: span["parentSpanId"].as_str().unwrap_or("").to_lowercase(),
                    name: span["name"].as_str().unwrap_or("").to_owned(),
                    kind: span["kind"].as_i64().unwrap_or(0),
                    attributes: span["attributes"].clone(),
                });
            }
        }
    }
    received
}

#[async_trait]
impl Handler for Collector {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let protobuf = req
            .content_type()
            .is_some_and(|mime| mime.essence_str() == "application/x-protobuf");
        let Ok(body) = req.payload_with_max_size(64 * 1024 * 1024).await else {
            res.status_code(StatusCode::BAD_REQUEST);
            return;
        };
        let received = if protobuf {
            let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                res.status_code(StatusCode::BAD_REQUEST);
                return;
            };
            spans_from_protobuf(request)
        } else {
            spans_from_json(&serde_json::from_slice(body).unwrap_or(Value::Null))
        };
        self.spans.lock().expect("lock").extend(received);
        if protobuf {
            res.add_header("content-type", "application/x-protobuf", true)
                .expect("header");
            res.body(ExportTraceServiceResponse::default().encode_to_vec());
        } else {
            res.render(Json(json!({})));
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let received = spans_from_protobuf(request.into_inner());
        self.spans.lock().expect("lock").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running receiver on free ports: point `OTEL_EXPORTER_OTLP_ENDPOINT` at [`Self::url`]
/// (`http/json`, `http/protobuf`) or [`Self::grpc_url`] (`grpc`).
#[derive(Debug)]
pub struct OtlpReceiver {
    pub url: String,
    pub grpc_url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    handle: ServerHandle,
    grpc_server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts the receiver.
    pub async fn start() -> Self {
        let port = crate::free_port();
        let acceptor = TcpListener::new(("127.0.0.1", port)).bind().await;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector {
            spans: Arc::clone(&spans),
        };
        let router = Router::with_path("v1/traces").post(collector.clone());
        let server = Server::new(acceptor);
        let handle = server.handle();
        tokio::spawn(server.serve(router));

        let grpc_port = crate::free_port();
        let incoming =
            tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], grpc_port).into())
                .expect("bind the gRPC receiver");
        let grpc_server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming(incoming)
                .await
                .expect("gRPC receiver");
        });
        OtlpReceiver {
            url: format!("http://127.0.0.1:{port}"),
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
            spans,
            handle,
            grpc_server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("lock").clone()
    }
}

impl ReceivedSpan {
    /// A string attribute of the span.
    pub fn attribute(&self, key: &str) -> Option<String> {
        string_attribute(&self.attributes, key)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.handle.stop_forceful();
        self.grpc_server.abort();
    }
}
