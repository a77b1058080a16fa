//! Token verification against a locally cached JWKS, over the one verifier in iam-core.
//!
//! Keys are fetched at start (retrying with back-off) and every refresh interval (sooner if
//! the JWKS's `Cache-Control: max-age` says so); an unknown `kid` triggers one refetch, at most
//! one in flight and at most once per 5 s. A JWKS larger than [`MAX_FETCHED_DOCUMENT_BYTES`]
//! is refused while it is read. When a fetch fails the last good set is kept.
//! Tokens that verified are remembered (until the next key set or 10,000 of them), so a
//! client's repeated requests with one token cost a look-up plus the expiry check.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use iam_core::revocation::Revocations;
use iam_core::{
    AccessTokenClaims, KeySet, PublicJwks, Reason, VerificationRules, VerifiedTokens,
    verify_access_token,
};
use tokio::sync::Mutex;

use crate::metrics::Metrics;

pub mod document;

use document::{DocumentError, MAX_FETCHED_DOCUMENT_BYTES, read_capped};

/// How often an unknown `kid` may trigger a refetch.
const UNKNOWN_KID_REFETCH_SPACING: Duration = Duration::from_secs(5);
/// How many verified tokens are remembered; beyond it the memory is cleared and refilled.
const MAX_REMEMBERED_TOKENS: usize = 10_000;
/// The longest back-off between attempts while no key set has loaded yet.
const MAX_START_BACKOFF: Duration = Duration::from_secs(5);

/// Why a request's token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No key set has ever loaded: the sidecar cannot judge tokens yet.
    KeysUnavailable,
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
    /// What has been revoked; consulted after the signature, on every verification and
    /// every recall. Nothing yet: the revocation feed will fill it.
    revoked: RwLock<Arc<Revocations>>,
    rules: VerificationRules,
    jwks_url: String,
    refresh_interval: Duration,
    client: reqwest::Client,
    /// Single-flight gate for refetches caused by unknown key ids, with the last attempt.
    refetch_gate: Mutex<Option<Instant>>,
    /// Tokens that verified with the current key set (cleared whenever a set is installed).
    verified: VerifiedTokens,
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
            revoked: RwLock::new(Arc::new(Revocations::NONE)),
            rules,
            jwks_url,
            refresh_interval,
            client,
            refetch_gate: Mutex::new(None),
            verified: VerifiedTokens::new(MAX_REMEMBERED_TOKENS),
            metrics,
        })
    }

    /// Whether a key set has loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        match self.keys.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn current_revocations(&self) -> Arc<Revocations> {
        match self.revoked.read() {
            Ok(slot) => Arc::clone(&slot),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Verifies `token` now; an unknown `kid` gets one refetch before it is refused.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessTokenClaims>, VerifyError> {
        let now = chrono::Utc::now().timestamp();
        let revoked = self.current_revocations();
        if let Some(recalled) = self.verified.recall(token, &self.rules, &revoked, now) {
            return recalled.map_err(VerifyError::Rejected);
        }
        let keys = self.current().ok_or(VerifyError::KeysUnavailable)?;
        let claims = match verify_access_token(token, &keys, &self.rules, &revoked, now) {
            Err(Reason::UnknownKeyId) => {
                self.refetch_for_unknown_kid().await;
                let keys = self.current().ok_or(VerifyError::KeysUnavailable)?;
                verify_access_token(token, &keys, &self.rules, &revoked, now)
                    .map_err(VerifyError::Rejected)?
            }
            result => result.map_err(VerifyError::Rejected)?,
        };
        let claims = Arc::new(claims);
        self.verified.remember(token, Arc::clone(&claims));
        Ok(claims)
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
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(Arc::new(set));
                }
                // Tokens verified with the previous set are verified again with this one.
                self.verified.forget_all();
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
                    Err(error) if verifier.is_ready() => {
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
#[allow(clippy::expect_used, clippy::unwrap_used)] // test helpers report failure by panicking
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("Max-Age=5"), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    /// The RFC 7638 §3.1 example key, published under each of `kids`.
    fn jwks(kids: &[&str]) -> String {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|kid| {
                serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": "AQAB"})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// A valid JWKS of `kids` padded with leading whitespace to exactly `len` bytes: it
    /// parses at any size, so only the cap can refuse it.
    fn padded_jwks(kids: &[&str], len: usize) -> String {
        let document = jwks(kids);
        format!("{}{document}", " ".repeat(len - document.len()))
    }

    /// How a test JWKS server frames a body.
    #[derive(Clone, Copy)]
    enum Framing {
        ContentLength,
        Chunked,
    }

    /// Answers one connection per body, in turn, with `Connection: close`.
    async fn serve(bodies: Vec<(String, Framing)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for (body, framing) in bodies {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    let read = socket.read(&mut buffer).await.unwrap();
                    assert!(read > 0, "the client closed early");
                    head.extend_from_slice(&buffer[..read]);
                }
                let mut response =
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                        .to_vec();
                match framing {
                    Framing::ContentLength => {
                        response.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes());
                        response.extend(body.bytes());
                    }
                    Framing::Chunked => {
                        response.extend(b"transfer-encoding: chunked\r\n\r\n");
                        for chunk in body.as_bytes().chunks(64 * 1024) {
                            response.extend(format!("{:x}\r\n", chunk.len()).bytes());
                            response.extend(chunk);
                            response.extend(b"\r\n");
                        }
                        response.extend(b"0\r\n\r\n");
                    }
                }
                // The client may hang up once it has seen enough; that is the point.
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
        });
        url
    }

    fn verifier(url: String, metrics: &Arc<Metrics>) -> TokenVerifier {
        let rules = VerificationRules {
            issuer: "iam".into(),
            audience: "iam".into(),
            leeway_seconds: 0,
        };
        TokenVerifier::new(url, Duration::from_secs(30), rules, Arc::clone(metrics)).unwrap()
    }

    fn kids(verifier: &TokenVerifier) -> (bool, bool, usize) {
        let keys = verifier.current().expect("a key set");
        (keys.contains("first"), keys.contains("second"), keys.len())
    }

    #[tokio::test]
    async fn a_jwks_over_the_cap_is_a_failed_refresh_and_the_last_good_set_stays() {
        let cap = MAX_FETCHED_DOCUMENT_BYTES;
        let url = serve(vec![
            (jwks(&["first"]), Framing::ContentLength),
            (
                padded_jwks(&["first", "second"], cap + 1),
                Framing::ContentLength,
            ),
            (padded_jwks(&["first", "second"], cap + 1), Framing::Chunked),
            (padded_jwks(&["first", "second"], 8 * cap), Framing::Chunked),
            // Exactly the cap is still read: the refusals above are the cap's doing.
            (padded_jwks(&["first", "second"], cap), Framing::Chunked),
        ])
        .await;
        let metrics = Arc::new(Metrics::default());
        let verifier = verifier(url, &metrics);
        verifier.fetch().await.expect("the first set loads");
        assert_eq!(kids(&verifier), (true, false, 1));
        for attempt in ["declared", "chunked", "far over"] {
            let error = verifier.fetch().await.expect_err(attempt);
            assert!(
                matches!(
                    error,
                    FetchError::Document {
                        source: DocumentError::TooLarge { cap: 1_048_576 },
                        ..
                    }
                ),
                "{attempt}: {error:?}"
            );
            assert!(
                error
                    .to_string()
                    .contains("the document is larger than 1048576 bytes"),
                "{attempt}: {error}"
            );
            assert_eq!(kids(&verifier), (true, false, 1), "{attempt}");
        }
        verifier
            .fetch()
            .await
            .expect("a set of exactly the cap loads");
        assert_eq!(kids(&verifier), (true, true, 2));
        let text = metrics.render();
        assert!(
            text.contains("iam_sidecar_jwks_refresh_failures_total 3"),
            "{text}"
        );
        assert!(
            text.contains("iam_sidecar_jwks_refreshes_total 2"),
            "{text}"
        );
        assert!(text.contains("iam_sidecar_jwks_keys 2"), "{text}");
    }
}
