//! Token verification against a locally cached JWKS, over the one verifier in iam-core.
//!
//! Keys are fetched at start (retrying with back-off) and every refresh interval (sooner if
//! the JWKS's `Cache-Control: max-age` says so); an unknown `kid` triggers one refetch, at most
//! one in flight and at most once per 5 s. A JWKS larger than [`MAX_FETCHED_DOCUMENT_BYTES`]
//! is refused while it is read. When a fetch fails the last good set is kept.
//! Tokens that verified are remembered (up to 10,000, until a key leaves the set), so a
//! client's repeated requests with one token cost a look-up plus the expiry check; a
//! remembered token is judged against the revocations in force at every recall.
//! Revocations come from the revocation feed ([`revocation_feed`]); until its first copy
//! arrives, tokens are not judged at all (503), as before the first key set.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use iam_core::revocation::Revocations;
use iam_core::{
    KeySet, PublicJwks, Reason, Recall, VerificationRules, VerifiedTokens, verify_access_token,
};
use tokio::sync::Mutex;

use crate::identity::VerifiedIdentity;
use crate::metrics::Metrics;

pub mod document;
pub mod revocation_feed;

use document::{DocumentError, MAX_FETCHED_DOCUMENT_BYTES, read_capped};

/// How often an unknown `kid` may trigger a refetch.
const UNKNOWN_KID_REFETCH_SPACING: Duration = Duration::from_secs(5);
/// How many verified tokens are remembered; when full, a newly verified token takes the place
/// of one that expired or went unused (see [`VerifiedTokens`]), or is not remembered.
const MAX_REMEMBERED_TOKENS: usize = 10_000;
/// The longest back-off between attempts while no key set has loaded yet.
const MAX_START_BACKOFF: Duration = Duration::from_secs(5);

/// Why a request's token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No key set or no revocation feed has loaded yet: the sidecar cannot judge tokens.
    NotReady,
    /// The token was refused.
    Rejected(Reason),
}

/// Why a JWKS fetch did not install a key set (the current set stays).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The JWKS service did not answer.
    #[error("cannot fetch {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// It answered with a status other than success.
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    /// Its body was over the size cap or could not be read.
    #[error("{url}: {source}")]
    Document { url: String, source: DocumentError },
    /// Its body is not a JWKS.
    #[error("{url} is not a JWKS: {source}")]
    NotJwks {
        url: String,
        source: serde_json::Error,
    },
    /// A key in it is not an RS256 verification key.
    #[error(transparent)]
    UnusableKey(#[from] iam_core::jwk::JwkError),
}

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the JWKS client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Verifies access tokens with the cached key set.
#[derive(Debug)]
pub struct TokenVerifier {
    keys: RwLock<Option<Arc<KeySet>>>,
    /// What has been revoked (`None` until the feed's first copy); consulted after the
    /// signature, on every verification and every recall.
    revoked: RwLock<Option<Arc<Revocations>>>,
    rules: VerificationRules,
    jwks_url: String,
    refresh_interval: Duration,
    client: reqwest::Client,
    /// Single-flight gate for refetches caused by unknown key ids, with the last attempt.
    refetch_gate: Mutex<Option<Instant>>,
    /// Tokens that verified with the current key set (forgotten when a key leaves it), with
    /// their identity headers.
    verified: VerifiedTokens<VerifiedIdentity>,
    metrics: Arc<Metrics>,
}

impl TokenVerifier {
    /// A verifier with no keys yet; call [`Self::spawn_refresher`] to load them.
    pub fn new(
        jwks_url: String,
        refresh_interval: Duration,
        rules: VerificationRules,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(TokenVerifier {
            keys: RwLock::new(None),
            revoked: RwLock::new(None),
            rules,
            jwks_url,
            refresh_interval,
            client,
            refetch_gate: Mutex::new(None),
            verified: VerifiedTokens::new(MAX_REMEMBERED_TOKENS),
            metrics,
        })
    }

    /// Whether a key set and the revocation feed have loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.keys_loaded() && self.revocations_loaded()
    }

    /// Whether a key set has loaded.
    pub fn keys_loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Whether a copy of the revocation feed has arrived.
    pub fn revocations_loaded(&self) -> bool {
        self.current_revocations().is_some()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn current_revocations(&self) -> Option<Arc<Revocations>> {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `revocations` in force for every verification and recall from now on.
    pub fn install_revocations(&self, revocations: Revocations) {
        let (subjects, tokens) = revocations.len();
        self.metrics.revoked_entries(subjects, tokens);
        // A lock poisoned by a panic elsewhere still holds a whole `Option<Arc>`: replace it,
        // rather than leave the revocations of before in force.
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(revocations));
    }

    /// Verifies `token` now; an unknown `kid` gets one refetch before it is refused.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedIdentity>, VerifyError> {
        let now = chrono::Utc::now().timestamp();
        let revoked = self.current_revocations().ok_or(VerifyError::NotReady)?;
        let epoch = match self.verified.recall(token, &self.rules, &revoked, now) {
            Recall::Known(recalled) => return recalled.map_err(VerifyError::Rejected),
            Recall::Unknown(epoch) => epoch,
        };
        let keys = self.current().ok_or(VerifyError::NotReady)?;
        let claims = match verify_access_token(token, &keys, &self.rules, &revoked, now) {
            Err(Reason::UnknownKeyId) => {
                self.refetch_for_unknown_kid().await;
                let keys = self.current().ok_or(VerifyError::NotReady)?;
                verify_access_token(token, &keys, &self.rules, &revoked, now)
                    .map_err(VerifyError::Rejected)?
            }
            result => result.map_err(VerifyError::Rejected)?,
        };
        // A token whose claims cannot be headers is refused here, and not remembered.
        let verified = VerifiedIdentity::new(claims)
            .map_err(|_| VerifyError::Rejected(Reason::InvalidClaims))?;
        let verified = Arc::new(verified);
        self.verified
            .remember(token, Arc::clone(&verified), &self.rules, now, epoch);
        Ok(verified)
    }

    async fn refetch_for_unknown_kid(&self) {
        // Requests arriving during a refetch wait for it rather than starting their own.
        let mut last_attempt = self.refetch_gate.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_SPACING) {
            return;
        }
        *last_attempt = Some(Instant::now());
        let _ = self.fetch().await;
    }

    /// Fetches the JWKS and installs it; returns the `max-age` it was served with. A failed
    /// fetch keeps the current set.
    async fn fetch(&self) -> Result<Option<Duration>, FetchError> {
        let result = self.fetch_key_set().await;
        match result {
            Ok((set, count, max_age)) => {
                let set = Arc::new(set);
                let previous = self
                    .keys
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .replace(Arc::clone(&set));
                if let Some(previous) = previous {
                    self.verified.key_set_replaced(&previous, &set);
                }
                self.metrics.jwks_refresh(Some(count));
                Ok(max_age)
            }
            Err(error) => {
                self.metrics.jwks_refresh(None);
                Err(error)
            }
        }
    }

    #[tracing::instrument(name = "JWKS fetch", skip_all, fields(otel.kind = "client", url.full = %self.jwks_url))]
    async fn fetch_key_set(&self) -> Result<(KeySet, usize, Option<Duration>), FetchError> {
        let url = || self.jwks_url.clone();
        let response = self
            .client
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|source| FetchError::Unreachable { url: url(), source })?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url(),
                status: response.status(),
            });
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age);
        let body = read_capped(response, MAX_FETCHED_DOCUMENT_BYTES)
            .await
            .map_err(|source| FetchError::Document { url: url(), source })?;
        let jwks: PublicJwks = serde_json::from_slice(&body)
            .map_err(|source| FetchError::NotJwks { url: url(), source })?;
        let count = jwks.keys.len();
        let set = KeySet::from_jwks(&jwks)?;
        Ok((set, count, max_age))
    }

    /// Loads the keys (retrying with back-off until the first success), then refreshes them
    /// every interval, or sooner when the JWKS's `max-age` is shorter.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let verifier = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let wait = match verifier.fetch().await {
                    Ok(max_age) => {
                        backoff = Duration::from_millis(100);
                        max_age
                            .map_or(verifier.refresh_interval, |age| {
                                age.min(verifier.refresh_interval)
                            })
                            .max(Duration::from_secs(1))
                    }
                    Err(error) if verifier.keys_loaded() => {
                        tracing::warn!(%error, "JWKS refresh failed; keeping the last good key set");
                        verifier.refresh_interval
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "no JWKS yet");
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_START_BACKOFF);
                        wait
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

/// The `max-age` directive of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests;
