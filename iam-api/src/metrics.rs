//! iam-api's Prometheus metrics: HTTP requests, token grants by outcome, the password-hash
//! queue, and the database pool.

use iam_core::database::connections::Database;
use std::sync::Arc;

use iam_core::metrics::{HttpMetrics, Registry, latency_histogram, render};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of the token-endpoint series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant: &'static str,
    pub outcome: &'static str,
}

/// What the password-hashing pool reports.
#[derive(Debug, Clone, Default)]
pub struct HashPoolObserver {
    /// Jobs waiting for a hashing thread.
    pub queued: Gauge,
    /// Time from submission until a hashing thread took the job.
    pub wait: Option<Histogram>,
}

impl HashPoolObserver {
    /// Records that a job waited `seconds` before a thread took it.
    pub fn waited(&self, seconds: f64) {
        if let Some(wait) = &self.wait {
            wait.observe(seconds);
        }
    }
}

/// Every series iam-api exports, and the registry that renders them.
#[derive(Debug)]
pub struct ApiMetrics {
    registry: Registry,
    pub http: HttpMetrics,
    grants: Family<GrantLabels, Counter>,
    pub hash_pool: HashPoolObserver,
    db_connections: Gauge,
    db_idle_connections: Gauge,
}

impl ApiMetrics {
    /// Creates and registers every series.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let grants = Family::<GrantLabels, Counter>::default();
        registry.register(
            "iam_token_requests",
            "Token endpoint requests by grant (password, refresh_token, client_credentials) and outcome",
            grants.clone(),
        );
        let hash_pool = HashPoolObserver {
            queued: Gauge::default(),
            wait: Some(latency_histogram()),
        };
        registry.register(
            "iam_password_hash_queue_depth",
            "Password hashing jobs waiting for a hashing thread",
            hash_pool.queued.clone(),
        );
        if let Some(wait) = &hash_pool.wait {
            registry.register(
                "iam_password_hash_wait_seconds",
                "Time password hashing jobs waited for a hashing thread",
                wait.clone(),
            );
        }
        let db_connections = Gauge::default();
        let db_idle_connections = Gauge::default();
        registry.register(
            "iam_db_pool_connections",
            "Open database connections in the pool",
            db_connections.clone(),
        );
        registry.register(
            "iam_db_pool_idle_connections",
            "Idle database connections in the pool",
            db_idle_connections.clone(),
        );
        Arc::new(ApiMetrics {
            registry,
            http,
            grants,
            hash_pool,
            db_connections,
            db_idle_connections,
        })
    }

    /// Counts one token-endpoint request.
    pub fn grant(&self, grant: &'static str, outcome: &'static str) {
        self.grants
            .get_or_create(&GrantLabels { grant, outcome })
            .inc();
    }

    /// The text exposition, with the pool gauges read now.
    pub fn render(&self, db: &Database) -> String {
        self.db_connections.set(i64::from(db.size()));
        self.db_idle_connections
            .set(i64::try_from(db.num_idle()).unwrap_or(i64::MAX));
        render(&self.registry)
    }
}
