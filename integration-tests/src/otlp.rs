//! An in-test OTLP/HTTP receiver (JSON encoding) that keeps every span it is sent.

use std::sync::{Arc, Mutex};

use salvo::conn::TcpListener;
use salvo::prelude::*;
use salvo::server::ServerHandle;
use serde_json::Value;

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

#[async_trait]
impl Handler for Collector {
    async fn handle(&self, req: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        let body: Value = match req.payload_with_max_size(64 * 1024 * 1024).await {
            Ok(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let mut received = Vec::new();
        for resource_spans in body["resourceSpans"].as_array().into_iter().flatten() {
            let service =
                string_attribute(&resource_spans["resource"]["attributes"], "service.name")
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
        self.spans.lock().expect("lock").extend(received);
        res.render(Json(serde_json::json!({})));
    }
}

/// A running receiver on a free port; point `OTEL_EXPORTER_OTLP_ENDPOINT` at [`Self::url`]
/// with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`.
#[derive(Debug)]
pub struct OtlpReceiver {
    pub url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    handle: ServerHandle,
}

impl OtlpReceiver {
    /// Starts the receiver.
    pub async fn start() -> Self {
        let port = crate::free_port();
        let acceptor = TcpListener::new(("127.0.0.1", port)).bind().await;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::with_path("v1/traces").post(Collector {
            spans: Arc::clone(&spans),
        });
        let server = Server::new(acceptor);
        let handle = server.handle();
        tokio::spawn(server.serve(router));
        OtlpReceiver {
            url: format!("http://127.0.0.1:{port}"),
            spans,
            handle,
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
    }
}
