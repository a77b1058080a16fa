//! iam-jwks's Prometheus metrics: HTTP requests, key-set reloads and the published key count.

use std::sync::Arc;

use iam_core::metrics::{HttpMetrics, Registry, render};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels of the reload series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

/// Every series iam-jwks exports.
#[derive(Debug)]
pub struct JwksMetrics {
    registry: Registry,
    pub http: HttpMetrics,
    reloads: Family<ReloadLabels, Counter>,
    keys: Gauge,
}

impl JwksMetrics {
    /// Creates and registers every series.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "iam_jwks_reloads",
            "Key-set reloads from the database by outcome (ok, failed)",
            reloads.clone(),
        );
        let keys = Gauge::default();
        registry.register("iam_jwks_keys", "Keys in the published set", keys.clone());
        Arc::new(JwksMetrics {
            registry,
            http,
            reloads,
            keys,
        })
    }

    /// Records a reload: the number of keys on success, `None` on failure.
    pub fn reload(&self, keys: Option<usize>) {
        let outcome = if keys.is_some() { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
        if let Some(count) = keys {
            self.keys.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
