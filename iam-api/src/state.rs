//! The shared state every request handler and command works with.

use iam_core::database::connections::Database;
use std::sync::Arc;

use crate::config::ApiConfig;
use crate::domain::keys::KeyRing;
use crate::domain::password::PasswordHasherPool;
use crate::http::rate_limit::ClientRateLimit;
use crate::metrics::ApiMetrics;

/// Database pool, configuration, password hashing pool, signing keys and metrics. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Database,
    /// Where the read-only listings read (users, roles, audit events), where replication
    /// lag is harmless: the read replica, or `db` when none is configured. Never for
    /// authentication, tokens or anything that checks a revocation.
    pub read_db: Database,
    pub config: Arc<ApiConfig>,
    pub hasher: PasswordHasherPool,
    pub keys: KeyRing,
    pub metrics: Arc<ApiMetrics>,
    /// The per-client limit of the hashing endpoints; `None` when `RATE_LIMIT_PER_MINUTE=0`.
    pub client_limit: Option<Arc<ClientRateLimit>>,
    /// Set on the stop signal: readiness answers 503 while requests are still served.
    pub drain: iam_core::shutdown::Drain,
}

impl AppState {
    /// What account changes (`domain::accounts`) work with.
    pub fn accounts(&self) -> crate::domain::accounts::Accounts<'_> {
        crate::domain::accounts::Accounts {
            db: &self.db,
            config: &self.config,
            hasher: &self.hasher,
        }
    }
}
