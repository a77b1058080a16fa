//! OTLP over gRPC. tonic needs a tokio runtime to run on, but the SDK's batch span processor
//! exports from a plain thread of its own, and the application's runtime is gone by the time
//! the last spans are flushed at shutdown. So this exporter owns a one-thread runtime that
//! lives exactly as long as it does.

use std::time::Duration;

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// The tonic exporter plus the runtime it runs on.
#[derive(Debug)]
pub(super) struct GrpcSpanExporter {
    inner: opentelemetry_otlp::SpanExporter,
    /// Always `Some` until dropped; an `Option` so `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrpcSpanExporter {
    /// An exporter configured from the standard `OTEL_EXPORTER_OTLP_*` variables (endpoint,
    /// headers, timeout). Only plaintext `http://` endpoints are supported: no TLS stack is
    /// built in for gRPC; use `http/protobuf` for an `https://` collector.
    pub(super) fn from_env() -> Result<Self, String> {
        let endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        });
        if let Some(endpoint) = &endpoint
            && !endpoint.trim().starts_with("http://")
        {
            return Err(format!(
                "OTLP over grpc needs an http:// endpoint (no TLS for gRPC); got {endpoint}"
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-grpc")
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the OTLP export runtime: {error}"))?;
        // tonic spawns the channel's background task on the runtime it is built in.
        let inner = {
            let _entered = runtime.enter();
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint.trim()),
                None => builder,
            }
            .build()
            .map_err(|error| error.to_string())?
        };
        Ok(GrpcSpanExporter {
            inner,
            runtime: Some(runtime),
        })
    }
}

impl SpanExporter for GrpcSpanExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // The batch processor's thread is not a runtime thread, so blocking here is allowed:
        // it waits for the export, as it would for the HTTP exporter's blocking client.
        let result = match &self.runtime {
            Some(runtime) => runtime.block_on(self.inner.export(batch)),
            None => Ok(()),
        };
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.runtime {
            Some(runtime) => {
                let _entered = runtime.enter();
                self.inner.shutdown_with_timeout(timeout)
            }
            None => Ok(()),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for GrpcSpanExporter {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside another runtime; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
