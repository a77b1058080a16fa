//! The revocation feed (contract §5): every subject cut-off and revoked token id that a
//! still-valid token could fall under, as ready-to-send bytes with a strong ETag.
//!
//! Current within a quarter of a second of a commit (plus the rebuild), whatever
//! `JWKS_REFRESH_INTERVAL` is: four times a second the builder reads one row, the version that every change to the revocation tables bumps
//! in its own transaction, and rebuilds only when it moved or an entry lapsed. The version
//! is read before the entries, so a change committed in between is at worst loaded twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use iam_core::revocation::cutoff_second;
use iam_core::revocation::feed::RevocationFeed;
use sqlx::PgPool;

use crate::document::Served;
use crate::metrics::JwksMetrics;

/// How often the builder looks for changes. The contract gives a revocation
/// `REVOCATION_REFRESH_INTERVAL` + 1 s to reach every sidecar: that second holds this wait, the
/// rebuild (hundreds of milliseconds with 100,000 entries on a loaded machine) and the
/// sidecar's fetch. With a check once a second the bench measured 6,154 ms (bound 6,000);
/// a one-row read four times a second costs the database nothing.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// A serialised feed and its entity tag.
#[derive(Debug)]
pub struct FeedDocument {
    pub served: Served,
    /// The version of the revocation tables it was built from.
    version: i64,
    /// The earliest second at which one of its entries lapses (a rebuild drops it).
    next_lapse: Option<i64>,
}

impl FeedDocument {
    fn new(
        feed: &RevocationFeed,
        version: i64,
        next_lapse: Option<i64>,
    ) -> Result<Self, serde_json::Error> {
        Ok(FeedDocument {
            served: Served::of(feed)?,
            version,
            next_lapse,
        })
    }

    /// Whether the document no longer says what the database does at `now`.
    fn is_stale(&self, version: i64, now: i64) -> bool {
        version != self.version || self.next_lapse.is_some_and(|lapse| lapse <= now)
    }
}

/// Why the feed was not built.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    #[error("cannot read the revocations: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot serialise the revocation feed: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// One entry as read: its key, the instant it stands for (unix microseconds for a subject's
/// revocation, seconds for a token's expiry) and the second it lapses.
type Entry = (String, i64, i64);

async fn load_version(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM revocation_feed_version")
        .fetch_one(db)
        .await
}

async fn load_entries(db: &PgPool) -> Result<(Vec<Entry>, Vec<Entry>), sqlx::Error> {
    // Whole microseconds, exactly: `extract` gives a numeric, so nothing is rounded before
    // iam-core turns the instant into a cut-off second.
    let subjects = sqlx::query_as(
        "SELECT subject,
                (extract(epoch FROM revoked_at) * 1000000)::bigint,
                floor(extract(epoch FROM keep_until))::bigint
         FROM revoked_subjects WHERE keep_until > now()",
    )
    .fetch_all(db)
    .await?;
    let tokens = sqlx::query_as(
        "SELECT jti,
                floor(extract(epoch FROM expires_at))::bigint,
                floor(extract(epoch FROM keep_until))::bigint
         FROM revoked_access_tokens WHERE keep_until > now()",
    )
    .fetch_all(db)
    .await?;
    Ok((subjects, tokens))
}

/// The feed document of the entries read at version `version`, built at `now`.
fn build(
    subjects: Vec<Entry>,
    tokens: Vec<Entry>,
    version: i64,
    now: i64,
) -> Result<FeedDocument, serde_json::Error> {
    let next_lapse = subjects
        .iter()
        .chain(&tokens)
        .map(|(_, _, lapse)| *lapse)
        .min();
    let feed = RevocationFeed {
        subjects: subjects
            .into_iter()
            .map(|(subject, revoked_at_micros, _)| (subject, cutoff_second(revoked_at_micros)))
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|(jti, expires_at, _)| (jti, expires_at))
            .collect(),
        generated_at: now,
    };
    FeedDocument::new(&feed, version, next_lapse)
}

/// The current document (`None` until the first build succeeds), shared with the endpoint.
#[derive(Debug, Clone)]
pub struct FeedCache {
    document: Arc<RwLock<Option<Arc<FeedDocument>>>>,
    database_reachable: Arc<AtomicBool>,
    metrics: Arc<JwksMetrics>,
}

impl FeedCache {
    /// An empty cache; [`Self::spawn_builder`] fills it.
    pub fn new(metrics: Arc<JwksMetrics>) -> Self {
        FeedCache {
            document: Arc::new(RwLock::new(None)),
            database_reachable: Arc::new(AtomicBool::new(true)),
            metrics,
        }
    }

    /// The document to serve now, if one has been built.
    pub fn current(&self) -> Option<Arc<FeedDocument>> {
        self.document
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn install(&self, document: FeedDocument) {
        // A lock poisoned by a panic elsewhere still holds a whole `Option<Arc>`: replace it,
        // rather than serve the revocations of before for good.
        *self
            .document
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(document));
    }

    /// Rebuilds the document if the database says something else now.
    async fn refresh(&self, db: &PgPool) -> Result<(), BuildError> {
        let version = load_version(db).await?;
        let now = unix_now();
        if self
            .current()
            .is_some_and(|document| !document.is_stale(version, now))
        {
            return Ok(());
        }
        let (subjects, tokens) = load_entries(db).await?;
        let (subject_count, token_count) = (subjects.len(), tokens.len());
        let document = build(subjects, tokens, version, now)?;
        self.metrics.revocation_feed(subject_count, token_count);
        if self.current().is_none() {
            tracing::info!(
                subjects = subject_count,
                tokens = token_count,
                "revocation feed loaded"
            );
        }
        self.install(document);
        Ok(())
    }

    /// The first build, before the process serves; a failure is logged and left to the
    /// builder.
    pub async fn build_first(&self, db: &PgPool) {
        if let Err(error) = self.refresh(db).await {
            self.metrics.revocation_feed_failed();
            self.database_reachable.store(false, Ordering::Relaxed);
            tracing::warn!(%error, "cannot build the revocation feed yet");
        }
    }

    /// Checks for changes every [`CHECK_INTERVAL`] until the process ends; while the
    /// database is away the last document stays (an outage is logged once).
    pub fn spawn_builder(&self, db: PgPool) {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(CHECK_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match cache.refresh(&db).await {
                    Ok(()) => {
                        if !cache.database_reachable.swap(true, Ordering::Relaxed) {
                            tracing::info!("revocations readable again");
                        }
                    }
                    Err(error) => {
                        cache.metrics.revocation_feed_failed();
                        if cache.database_reachable.swap(false, Ordering::Relaxed) {
                            tracing::warn!(%error, "cannot rebuild the revocation feed; serving the last one");
                        }
                    }
                }
            }
        });
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn entries_become_cutoffs_and_expiries_and_the_earliest_lapse_is_kept() {
        let document = build(
            vec![
                ("u1".into(), 1_000_000_001, 2000),
                ("u2".into(), 900_000_000, 1900),
            ],
            vec![("j1".into(), 1500, 1530)],
            7,
            1200,
        )
        .expect("document");
        let feed: RevocationFeed = serde_json::from_slice(&document.served.body).expect("feed");
        assert_eq!(feed.subjects["u1"], 1001);
        assert_eq!(feed.subjects["u2"], 900);
        assert_eq!(feed.tokens["j1"], 1500);
        assert_eq!(feed.generated_at, 1200);
        assert_eq!(document.next_lapse, Some(1530));
    }

    #[test]
    fn a_document_is_stale_when_the_version_moves_or_an_entry_lapses() {
        let document = build(vec![("u".into(), 0, 100)], vec![], 3, 50).expect("document");
        assert!(!document.is_stale(3, 99));
        assert!(document.is_stale(4, 99));
        assert!(document.is_stale(3, 100));
        let empty = build(vec![], vec![], 3, 50).expect("document");
        assert_eq!(empty.next_lapse, None);
        assert!(!empty.is_stale(3, i64::MAX));
    }
}
