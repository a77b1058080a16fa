//! Polling the revocation feed (contract §5) into the verifier: at start until the first
//! copy arrives (protected requests get 503 until then, as before the first key set), then
//! every `REVOCATION_REFRESH_INTERVAL`, revalidating with `If-None-Match`. A failed poll
//! keeps the last good copy; the time since the last successful poll is the feed's age,
//! shown by the healthcheck and the metrics.

use std::sync::Arc;
use std::time::Duration;

use iam_core::revocation::Revocations;
use iam_core::revocation::feed::parse_revocations;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};

use super::TokenVerifier;
use super::document::{DocumentError, read_capped};

/// The largest feed the sidecar reads: about 400,000 entries, far more than one token
/// lifetime's revocations in any deployment we know of.
pub const MAX_FEED_BYTES: usize = 32 * 1024 * 1024;
/// The longest back-off between attempts while no copy has arrived yet.
const MAX_START_BACKOFF: Duration = Duration::from_secs(5);

/// Why a poll did not bring a usable feed (the current copy stays).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot fetch {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: {source}")]
    Document { url: String, source: DocumentError },
    #[error("{url} is not a revocation feed: {source}")]
    NotAFeed {
        url: String,
        source: serde_json::Error,
    },
}

/// What a successful poll brought.
#[derive(Debug)]
enum Polled {
    /// A new copy, with its entity tag.
    Changed(Revocations, Option<String>),
    /// The copy held is still current (304).
    Unchanged,
}

/// Polls `url` into `verifier`.
#[derive(Debug)]
pub struct FeedPoller {
    url: String,
    interval: Duration,
    client: reqwest::Client,
    verifier: Arc<TokenVerifier>,
}

impl FeedPoller {
    /// A poller of `url` every `interval`.
    pub fn new(url: String, interval: Duration, verifier: Arc<TokenVerifier>) -> Self {
        FeedPoller {
            url,
            interval,
            client: verifier.client.clone(),
            verifier,
        }
    }

    #[tracing::instrument(name = "revocation feed fetch", skip_all, fields(otel.kind = "client", url.full = %self.url))]
    async fn poll(&self, etag: Option<&str>) -> Result<Polled, FeedError> {
        let url = || self.url.clone();
        let mut request = self.client.get(&self.url);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|source| FeedError::Unreachable { url: url(), source })?;
        if response.status() == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Polled::Unchanged);
        }
        if !response.status().is_success() {
            return Err(FeedError::Status {
                url: url(),
                status: response.status(),
            });
        }
        let new_etag = response
            .headers()
            .get(ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(response, MAX_FEED_BYTES)
            .await
            .map_err(|source| FeedError::Document { url: url(), source })?;
        let revocations = parse_revocations(&body)
            .map_err(|source| FeedError::NotAFeed { url: url(), source })?;
        // Freed before the new entries replace the old ones, so the document and both sets
        // of entries are never held at once.
        drop(body);
        Ok(Polled::Changed(revocations, new_etag))
    }

    /// Polls until the process ends.
    pub fn spawn(self) {
        tokio::spawn(async move {
            let mut etag: Option<String> = None;
            let mut backoff = Duration::from_millis(100);
            let mut failing = false;
            loop {
                let wait = match self.poll(etag.as_deref()).await {
                    Ok(polled) => {
                        if let Polled::Changed(revocations, new_etag) = polled {
                            self.verifier.install_revocations(revocations);
                            etag = new_etag;
                        }
                        self.verifier.metrics.revocation_feed_checked();
                        if std::mem::take(&mut failing) {
                            tracing::info!("revocation feed reachable again");
                        }
                        backoff = Duration::from_millis(100);
                        self.interval
                    }
                    Err(error) => {
                        self.verifier.metrics.revocation_feed_failed();
                        if self.verifier.revocations_loaded() {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(%error, "revocation feed poll failed; keeping the last copy");
                            }
                            self.interval
                        } else {
                            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "no revocation feed yet");
                            let wait = backoff;
                            backoff = (backoff * 2).min(MAX_START_BACKOFF);
                            wait
                        }
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}
