//! iam-jwks's Prometheus metrics: HTTP requests, key-set reloads, the published key count
//! and the revocation feed's builds and size.

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
    feed_builds: Family<ReloadLabels, Counter>,
    revoked_subjects: Gauge,
    revoked_tokens: Gauge,
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
        let feed_builds = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "iam_jwks_revocation_feed_builds",
            "Revocation feed rebuilds by outcome (ok, failed); unchanged checks are not counted",
            feed_builds.clone(),
        );
        let revoked_subjects = Gauge::default();
        registry.register(
            "iam_jwks_revoked_subjects",
            "Subject cut-offs in the revocation feed",
            revoked_subjects.clone(),
        );
        let revoked_tokens = Gauge::default();
        registry.register(
            "iam_jwks_revoked_tokens",
            "Single token ids in the revocation feed",
            revoked_tokens.clone(),
        );
        Arc::new(JwksMetrics {
            registry,
            http,
            reloads,
            keys,
            feed_builds,
            revoked_subjects,
            revoked_tokens,
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

    /// Records a rebuilt revocation feed and its size.
    pub fn revocation_feed(&self, subjects: usize, tokens: usize) {
        self.feed_builds
            .get_or_create(&ReloadLabels { outcome: "ok" })
            .inc();
        self.revoked_subjects
            .set(i64::try_from(subjects).unwrap_or(i64::MAX));
        self.revoked_tokens
            .set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }

    /// Records a check or rebuild of the revocation feed that failed.
    pub fn revocation_feed_failed(&self) {
        self.feed_builds
            .get_or_create(&ReloadLabels { outcome: "failed" })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
