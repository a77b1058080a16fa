//! `GET /metrics`: the Prometheus exposition every process serves.

use std::sync::Arc;

use salvo::http::header::{CONTENT_TYPE, HeaderValue};
use salvo::prelude::*;

/// Answers with the process's metrics in the OpenMetrics text format, rendered at each
/// scrape by the function it was made with.
#[derive(Clone)]
pub struct MetricsEndpoint {
    render: Arc<dyn Fn() -> String + Send + Sync>,
}

impl MetricsEndpoint {
    /// An endpoint serving what `render` returns (see [`crate::metrics::render`]).
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        MetricsEndpoint {
            render: Arc::new(render),
        }
    }
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint").finish_non_exhaustive()
    }
}

#[async_trait]
impl Handler for MetricsEndpoint {
    async fn handle(&self, _: &mut Request, _: &mut Depot, res: &mut Response, _: &mut FlowCtrl) {
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        res.body((self.render)());
    }
}
