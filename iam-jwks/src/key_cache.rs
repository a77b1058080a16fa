//! The published key set, loaded from the database's public view and kept as ready-to-send
//! bytes with a strong ETag; reloaded periodically, kept as it is while the database is away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use iam_core::database::lasting_failure;
use iam_core::jwk::JwkError;
use iam_core::{KeySet, PublicJwk, PublicJwks};
use sqlx::PgPool;
use sqlx::types::Json;

use crate::document::Served;
use crate::metrics::JwksMetrics;

/// Why a key set was not loaded: the reload loop tells an outage of the database (logged
/// once, until it answers again) from a published set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database did not answer the query.
    #[error("cannot read the published keys: {0}")]
    Database(#[from] sqlx::Error),
    /// A published key is not one a verifier could use; the set is not served.
    #[error("the published key set is unusable: {0}")]
    Unusable(#[from] JwkError),
    /// No key is published yet (the api creates the first one just after its migrations):
    /// the first load waits for one rather than serve an empty set.
    #[error("no signing key is published yet")]
    NothingPublished,
    /// The set could not be serialised.
    #[error("cannot serialise the key set: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// A serialised JWKS and its entity tag.
#[derive(Debug)]
pub struct JwksDocument {
    pub served: Served,
    pub key_count: usize,
}

impl JwksDocument {
    fn new(jwks: &PublicJwks) -> Result<Self, LoadError> {
        // Refuse to publish anything a verifier could not use.
        KeySet::from_jwks(jwks)?;
        Ok(JwksDocument {
            served: Served::of(jwks)?,
            key_count: jwks.keys.len(),
        })
    }
}

/// The current document, and whether the last reload reached the database (so that an
/// outage and the recovery are each logged once).
#[derive(Debug, Clone)]
pub struct KeyCache {
    document: Arc<RwLock<Arc<JwksDocument>>>,
    database_reachable: Arc<AtomicBool>,
    metrics: Arc<JwksMetrics>,
}

/// Reads the keys that may sign now or may have signed a still-valid token, from the view
/// that holds no private material and alone decides which keys are published.
async fn load_published(db: &PgPool) -> Result<PublicJwks, LoadError> {
    let keys: Vec<Json<PublicJwk>> = sqlx::query_scalar(
        "SELECT public_jwk FROM published_signing_keys ORDER BY activates_at, kid",
    )
    .fetch_all(db)
    .await?;
    Ok(PublicJwks {
        keys: keys.into_iter().map(|key| key.0).collect(),
    })
}

impl KeyCache {
    /// Loads the first document, retrying with back-off until it succeeds: the process does
    /// not serve before it has keys to publish. A failure waiting will not mend (a TLS
    /// certificate that does not verify, a refused login) is returned instead.
    pub async fn load_first(db: &PgPool, metrics: Arc<JwksMetrics>) -> Result<Self, String> {
        let mut delay = Duration::from_millis(200);
        loop {
            match load_published(db).await.and_then(|jwks| {
                if jwks.keys.is_empty() {
                    return Err(LoadError::NothingPublished);
                }
                JwksDocument::new(&jwks)
            }) {
                Ok(document) => {
                    tracing::info!(keys = document.key_count, "loaded the signing keys");
                    metrics.reload(Some(document.key_count));
                    return Ok(KeyCache {
                        document: Arc::new(RwLock::new(Arc::new(document))),
                        database_reachable: Arc::new(AtomicBool::new(true)),
                        metrics,
                    });
                }
                Err(LoadError::Database(error)) if let Some(why) = lasting_failure(&error) => {
                    return Err(why);
                }
                Err(error) => {
                    metrics.reload(None);
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot load the signing keys yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The document to serve now.
    pub fn current(&self) -> Arc<JwksDocument> {
        Arc::clone(&self.document.read().unwrap_or_else(PoisonError::into_inner))
    }

    async fn reload(&self, db: &PgPool) {
        match load_published(db)
            .await
            .and_then(|jwks| JwksDocument::new(&jwks))
        {
            Ok(document) => {
                self.metrics.reload(Some(document.key_count));
                if document.served.etag != self.current().served.etag {
                    tracing::info!(keys = document.key_count, "published key set changed");
                }
                // A lock poisoned by a panic elsewhere still holds a whole `Arc`: replace it,
                // rather than serve the key set of before for good.
                *self
                    .document
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(document);
                self.database_answered();
            }
            Err(error @ LoadError::Database(_)) => {
                self.metrics.reload(None);
                if self.database_reachable.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "cannot reload the signing keys; serving the last good set");
                }
            }
            // The database answered: an unusable set is logged at each reload, and a later
            // outage is still reported once.
            Err(error) => {
                self.metrics.reload(None);
                self.database_answered();
                tracing::warn!(%error, "cannot reload the signing keys; serving the last good set");
            }
        }
    }

    /// Notes that the database answered, logging the recovery from an outage once.
    fn database_answered(&self) {
        if !self.database_reachable.swap(true, Ordering::Relaxed) {
            tracing::info!("database reachable again");
        }
    }

    /// Reloads every `interval` until the process ends.
    pub fn spawn_reloader(&self, db: PgPool, interval: Duration) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                cache.reload(&db).await;
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn a_key_a_verifier_cannot_use_is_not_published() {
        let mut key = PublicJwk::from_rsa_components(&[0xc5; 256], &[1, 0, 1]);
        key.alg = "HS256".to_owned();
        let error = JwksDocument::new(&PublicJwks { keys: vec![key] }).expect_err("refused");
        assert!(matches!(error, LoadError::Unusable(_)), "{error:?}");
    }

    #[test]
    fn the_etag_follows_the_key_set() {
        let empty = JwksDocument::new(&PublicJwks::default()).expect("document");
        assert_eq!(&empty.served.body[..], br#"{"keys":[]}"#);
        let key = PublicJwk::from_rsa_components(&[0xc5; 256], &[1, 0, 1]);
        let one = JwksDocument::new(&PublicJwks { keys: vec![key] }).expect("document");
        assert_eq!(one.key_count, 1);
        assert_ne!(one.served.etag, empty.served.etag);
    }
}
